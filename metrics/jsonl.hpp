// Internal to metrics/: JSON Lines splitting and writing shared by the writer and the readers.
#pragma once
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace r1::metrics::jsonl {

struct Line {
  size_t number = 0;        // 1-based
  std::string_view text;    // without the newline
  size_t offset = 0;        // byte offset of the line in the file
  bool terminated = false;  // false only for a final line without its newline
};

// The non-blank lines of `text`.
std::vector<Line> split(std::string_view text);

// Appends `v` as compact JSON with readable numbers: 0.5 and 1719000000.25 rather than Boost's
// 5E-1 and 1.71900000025E9; non-finite numbers become null.
void append(const boost::json::value& v, std::string& out);

// The step of a line written by RunLog (`{"step":N,...`) without parsing the rest, or nullopt
// when the line does not start that way.
std::optional<int64_t> fast_step(std::string_view line);

// A JSON number (or boolean, as 0/1) as a double; nullopt otherwise.
std::optional<double> number(const boost::json::value& v);

}  // namespace r1::metrics::jsonl
