#include "common/json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/stream_parser.hpp>

#include "common/error.hpp"
#include "common/fs.hpp"

namespace r1::json {

namespace bj = boost::json;

boost::json::value parse(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  bj::parse_options opt;
  opt.allow_invalid_utf8 = false;
  // Boost.JSON reports no offset, so parse incrementally to find where it failed.
  bj::stream_parser p({}, opt);
  size_t used = p.write_some(text.data(), text.size(), ec);
  if (!ec) p.finish(ec);
  if (ec) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < used && i < text.size(); ++i) {
      if (text[i] == '\n')
        ++line, col = 1;
      else
        ++col;
    }
    fail("{}:{}:{}: invalid JSON: {}", what, line, col, ec.message());
  }
  return p.release();
}

boost::json::value parse_file(const std::filesystem::path& path) { return parse(read_file(path), path.string()); }

const char* kind_name(const bj::value& v) {
  switch (v.kind()) {
    case bj::kind::null: return "null";
    case bj::kind::bool_: return "bool";
    case bj::kind::int64:
    case bj::kind::uint64: return "integer";
    case bj::kind::double_: return "float";
    case bj::kind::string: return "string";
    case bj::kind::array: return "array";
    case bj::kind::object: return "object";
  }
  return "?";
}

Object::Object(const bj::value& v, std::string where) : where_(std::move(where)) {
  R1_CHECK(v.is_object(), "{}: expected a JSON object, got {}", where_, kind_name(v));
  o_ = &v.get_object();
}

bool Object::has(std::string_view key) const {
  auto it = o_->find(key);
  return it != o_->end() && !it->value().is_null();
}

const bj::value& Object::at(std::string_view key) const {
  auto it = o_->find(key);
  R1_CHECK(it != o_->end() && !it->value().is_null(), "{}: required key '{}' is missing", where_, key);
  return it->value();
}

void Object::type_error(std::string_view key, const char* expected) const {
  fail("{}: key '{}': expected {}, got {}", where_, key, expected, kind_name(at(key)));
}

int64_t Object::integer(std::string_view key) const {
  const auto& v = at(key);
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v.get_uint64());
  type_error(key, "an integer");
}

double Object::number(std::string_view key) const {
  const auto& v = at(key);
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  type_error(key, "a number");
}

bool Object::boolean(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_bool()) type_error(key, "true or false");
  return v.get_bool();
}

std::string Object::string(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_string()) type_error(key, "a string");
  return std::string(v.get_string());
}

Object Object::object(std::string_view key) const {
  const auto& v = at(key);
  if (!v.is_object()) type_error(key, "an object");
  return Object(v.get_object(), where_ + "." + std::string(key));
}

std::vector<int64_t> Object::integers(std::string_view key) const {
  const auto& v = at(key);
  if (v.is_int64() || v.is_uint64()) return {integer(key)};
  if (!v.is_array()) type_error(key, "an integer or an array of integers");
  std::vector<int64_t> out;
  for (const auto& x : v.get_array()) {
    if (!x.is_int64()) type_error(key, "an array of integers");
    out.push_back(x.get_int64());
  }
  return out;
}

std::optional<int64_t> Object::integer_or(std::string_view key) const {
  return has(key) ? std::optional(integer(key)) : std::nullopt;
}
std::optional<double> Object::number_or(std::string_view key) const {
  return has(key) ? std::optional(number(key)) : std::nullopt;
}
std::optional<bool> Object::boolean_or(std::string_view key) const {
  return has(key) ? std::optional(boolean(key)) : std::nullopt;
}
std::optional<std::string> Object::string_or(std::string_view key) const {
  return has(key) ? std::optional(string(key)) : std::nullopt;
}

}  // namespace r1::json
