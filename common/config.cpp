#include "common/config.hpp"

#include <algorithm>

#include "common/fs.hpp"
#include "common/utf8.hpp"

namespace r1::cfg {

// "file:line:column", "(--set a.b=c)", or "" for values that did not come from text.
static std::string location(const toml::source_region& where) {
  if (!where.path) return "";
  std::string file(*where.path);
  if (file.rfind("--set", 0) == 0) return "(" + file + ")";
  return fmt::format("{}:{}:{}", file, where.begin.line, where.begin.column);
}

void Errors::add(const toml::source_region& where, std::string_view key, std::string_view what) {
  msgs_.push_back({where.path ? std::string(*where.path) : std::string(), where.begin.line, where.begin.column,
                   location(where).empty() ? fmt::format("{}: {}", key, what)
                                           : fmt::format("{}: {}: {}", location(where), key, what)});
}

void Errors::throw_if_any() const {
  if (msgs_.empty()) return;
  auto sorted = msgs_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Msg& a, const Msg& b) {
    return std::tie(a.file, a.line, a.column) < std::tie(b.file, b.line, b.column);
  });
  std::string all = sorted.size() == 1 ? "config error: " : fmt::format("{} config errors:\n  ", sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) all += (i ? "\n  " : "") + sorted[i].text;
  throw ConfigError(all);
}

toml::table parse_string(std::string_view text, std::string_view source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("config error: {}: TOML syntax error: {}", location(e.source()), e.description()));
  }
}

toml::table parse_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path))
    throw ConfigError(fmt::format(
        "config error: {}: no such file (check the path; `r1 config show` prints the defaults)", path.string()));
  return parse_string(read_file(path), path.string());
}

void apply_override(toml::table& root, std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw ConfigError(fmt::format("config error: --set {}: expected section.key=value", assignment));
  std::string key(assignment.substr(0, eq));
  std::string value(assignment.substr(eq + 1));
  std::string source = "--set " + std::string(assignment);

  // The value as TOML if it parses, else as a plain (quoted) string. Either way the node keeps a
  // source region naming the override, so later errors point at it.
  toml::table holder;
  try {
    holder = toml::parse("v = " + value, source);
  } catch (const toml::parse_error&) {
    if (utf8::valid_prefix(value) != value.size())
      throw ConfigError(fmt::format("config error: {}: the value is not valid UTF-8", utf8::repair(source)));
    std::ostringstream quoted;
    quoted << toml::toml_formatter(toml::value<std::string>(value), detail::kValueFormat);
    holder = toml::parse("v = " + quoted.str(), source);
  }
  toml::table* t = &root;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw ConfigError(fmt::format("config error: --set {}: empty key segment", assignment));
    if (dot == std::string::npos) {
      t->insert_or_assign(part, std::move(*holder.get("v")));
      break;
    }
    toml::node* next = t->get(part);
    if (!next) {
      t->insert(part, toml::table{});
      next = t->get(part);
    }
    if (!next->is_table())
      throw ConfigError(fmt::format("config error: --set {}: '{}' is not a table", assignment, key.substr(0, dot)));
    t = next->as_table();
    start = dot + 1;
  }
}

namespace detail {

const char* node_kind(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    default: return "nothing";
  }
}

std::string quote_comment(std::string_view doc) {
  std::string out = "# ";
  for (char c : doc) {
    out += c;
    if (c == '\n') out += "# ";
  }
  return out + "\n";
}

}  // namespace detail
}  // namespace r1::cfg
