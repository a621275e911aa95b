#include "policy/tokenizer_jsonl.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <istream>
#include <ostream>

#include "common/error.hpp"
#include "common/json.hpp"

namespace r1 {

namespace bj = boost::json;

size_t tokenize_jsonl(std::istream& in, std::ostream& out, const Tokenizer& tokenizer,
                      const TokenizeJsonlOptions& options) {
  std::string line, buf;
  std::vector<TokenId> ids;
  size_t lineno = 0, written = 0;
  const char* key = options.decode ? "ids" : "text";
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", options.source, lineno);
    boost::system::error_code ec;
    bj::value v = bj::parse(line, ec);
    if (ec) fail("{}: invalid JSON: {}", where, ec.message());
    if (!v.is_object()) fail("{}: expected a JSON object with key '{}', got {}", where, key, json::kind_name(v));
    const bj::value* field = v.get_object().if_contains(key);
    if (!field) fail("{}: key '{}' is missing", where, key);
    buf.clear();
    if (!options.decode) {
      if (!field->is_string()) fail("{}: key 'text': expected a string, got {}", where, json::kind_name(*field));
      ids = tokenizer.encode(std::string_view(field->get_string()), options.special);
      buf += "{\"ids\":[";
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) buf += ',';
        fmt::format_to(std::back_inserter(buf), "{}", ids[i]);
      }
      buf += "]}\n";
    } else {
      if (!field->is_array())
        fail("{}: key 'ids': expected an array of integers, got {}", where, json::kind_name(*field));
      ids.clear();
      for (const bj::value& x : field->get_array()) {
        if (!x.is_int64() || x.get_int64() < 0 || x.get_int64() > INT32_MAX)
          fail("{}: key 'ids': expected non-negative integers, got {}", where, bj::serialize(x));
        ids.push_back(static_cast<TokenId>(x.get_int64()));
      }
      std::string text;
      try {
        text = tokenizer.decode(ids, options.skip_special);
      } catch (const Error& e) {
        fail("{}: {}", where, e.what());
      }
      buf += "{\"text\":";
      buf += bj::serialize(bj::value(text));
      buf += "}\n";
    }
    out << buf;
    ++written;
  }
  out.flush();
  return written;
}

}  // namespace r1
