#include "metrics/jsonl.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace r1::metrics::jsonl {

namespace bj = boost::json;

std::vector<Line> split(std::string_view text) {
  std::vector<Line> out;
  size_t pos = 0, number = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    bool terminated = nl != std::string_view::npos;
    size_t end = terminated ? nl : text.size();
    ++number;
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) out.push_back({number, line, pos, terminated});
    pos = terminated ? nl + 1 : text.size();
  }
  return out;
}

void append(const bj::value& v, std::string& out) {
  switch (v.kind()) {
    case bj::kind::null: out += "null"; return;
    case bj::kind::bool_: out += v.get_bool() ? "true" : "false"; return;
    case bj::kind::int64: fmt::format_to(std::back_inserter(out), "{}", v.get_int64()); return;
    case bj::kind::uint64: fmt::format_to(std::back_inserter(out), "{}", v.get_uint64()); return;
    case bj::kind::double_: {
      double d = v.get_double();
      if (!std::isfinite(d))
        out += "null";
      else
        fmt::format_to(std::back_inserter(out), "{}", d);  // shortest round-trip form
      return;
    }
    case bj::kind::string: out += bj::serialize(v); return;
    case bj::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append(e, out);
      }
      out += ']';
      return;
    }
    case bj::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += bj::serialize(bj::value(kv.key()));
        out += ':';
        append(kv.value(), out);
      }
      out += '}';
      return;
    }
  }
}

std::optional<int64_t> fast_step(std::string_view line) {
  constexpr std::string_view prefix = "{\"step\":";
  if (line.substr(0, prefix.size()) != prefix) return std::nullopt;
  const char* b = line.data() + prefix.size();
  const char* e = line.data() + line.size();
  int64_t step = 0;
  auto [p, ec] = std::from_chars(b, e, step);
  if (ec != std::errc() || p == e || (*p != ',' && *p != '}')) return std::nullopt;
  return step;
}

std::optional<double> number(const bj::value& v) {
  switch (v.kind()) {
    case bj::kind::int64: return static_cast<double>(v.get_int64());
    case bj::kind::uint64: return static_cast<double>(v.get_uint64());
    case bj::kind::double_: return v.get_double();
    case bj::kind::bool_: return v.get_bool() ? 1.0 : 0.0;
    default: return std::nullopt;
  }
}

}  // namespace r1::metrics::jsonl
