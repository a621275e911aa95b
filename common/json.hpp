// JSON on Boost.JSON: parsing with line:column errors, and typed field access whose errors name the
// key and the file ("config.json: key 'hidden_size': expected an integer, got string").
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace r1::json {

// Parses `text`; on error throws r1::Error naming `what` (a file name) and line:column.
boost::json::value parse(std::string_view text, std::string_view what);
boost::json::value parse_file(const std::filesystem::path& path);

// Read-only view of a JSON object with typed getters. `where` prefixes every error message.
class Object {
 public:
  Object(const boost::json::value& v, std::string where);
  Object(const boost::json::object& o, std::string where) : o_(&o), where_(std::move(where)) {}

  bool has(std::string_view key) const;                      // present and not null
  const boost::json::value& at(std::string_view key) const;  // required

  int64_t integer(std::string_view key) const;
  double number(std::string_view key) const;  // integer or float
  bool boolean(std::string_view key) const;
  std::string string(std::string_view key) const;
  Object object(std::string_view key) const;
  std::vector<int64_t> integers(std::string_view key) const;  // an integer or an array of them

  std::optional<int64_t> integer_or(std::string_view key) const;
  std::optional<double> number_or(std::string_view key) const;
  std::optional<bool> boolean_or(std::string_view key) const;
  std::optional<std::string> string_or(std::string_view key) const;

  const boost::json::object& raw() const { return *o_; }
  const std::string& where() const { return where_; }

 private:
  [[noreturn]] void type_error(std::string_view key, const char* expected) const;
  const boost::json::object* o_;
  std::string where_;
};

const char* kind_name(const boost::json::value& v);

}  // namespace r1::json
