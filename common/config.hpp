// Reading, overriding, printing and documenting typed configs (see config_fields.hpp) with TOML++.
// Every error names file:line:column and the dotted key; all errors of a file are reported together
// as one r1::ConfigError (exit code 2) before anything starts.
#pragma once
#include <toml++/toml.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/config_fields.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"

namespace r1::cfg {

// The closest candidate to `word` within a small edit distance, or "" (common/strings.hpp).
using r1::did_you_mean;

// Parses a TOML file (syntax errors become ConfigError with file:line:column).
toml::table parse_file(const std::filesystem::path& path);
toml::table parse_string(std::string_view text, std::string_view source_name);

// Applies `--set a.b.c=value`: the value is read as TOML (`3`, `true`, `"x"`, `[1, 2]`) and as a
// bare string when it is not valid TOML (`--set model.path=/models/q`).
void apply_override(toml::table& root, std::string_view assignment);

// Collects errors during a read and throws them all at once.
class Errors {
 public:
  void add(const toml::source_region& where, std::string_view key, std::string_view what);
  void throw_if_any() const;  // errors sorted by file position
  bool empty() const { return msgs_.empty(); }

 private:
  struct Msg {
    std::string file;
    uint32_t line = 0, column = 0;
    std::string text;
  };
  std::vector<Msg> msgs_;
};

namespace detail {

template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {
  using elem = T;
};

template <class T>
struct is_struct_vector : std::false_type {};
template <ConfigStruct T>
struct is_struct_vector<std::vector<T>> : std::true_type {};

template <class T>
struct is_optional_struct : std::false_type {};
template <ConfigStruct T>
struct is_optional_struct<std::optional<T>> : std::true_type {
  using elem = T;
};

template <class T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (std::is_same_v<T, std::string> || ConfigEnum<T>)
    return "a string";
  else if constexpr (ConfigStruct<T> || is_optional_struct<T>::value)
    return "a table";
  else if constexpr (is_vector<T>::value)
    return "an array";
  else
    return "?";
}

const char* node_kind(const toml::node& n);

template <class T>
void read_struct(const toml::table& t, T& out, const std::string& prefix, Errors& errs);

// Converts a TOML node into `out`; false (with an error recorded) on a type mismatch.
template <class T>
bool convert(const toml::node& n, T& out, const std::string& key, Errors& errs) {
  auto mismatch = [&] {
    errs.add(n.source(), key, std::string("expected ") + type_name<T>() + ", got " + node_kind(n));
    return false;
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!n.is_boolean()) return mismatch();
    out = *n.value<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!n.is_integer()) return mismatch();
    out = static_cast<T>(*n.value<int64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!n.is_number()) return mismatch();
    out = static_cast<T>(*n.value<double>());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!n.is_string()) return mismatch();
    out = *n.value<std::string>();
  } else if constexpr (ConfigEnum<T>) {
    if (!n.is_string()) return mismatch();
    const std::string name = *n.value<std::string>();
    if (auto e = parse_enum<T>(name)) {
      out = *e;
      return true;
    }
    const auto all = enum_names(T{});
    std::vector<std::string> names(all.begin(), all.end());
    std::string hint = did_you_mean(name, names);
    errs.add(
        n.source(), key,
        "'" + name + "' is not one of " + choices_of<T>() + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    return false;
  } else if constexpr (ConfigStruct<T>) {
    if (!n.is_table()) return mismatch();
    read_struct(*n.as_table(), out, key + ".", errs);
  } else if constexpr (is_optional_struct<T>::value) {
    if (!n.is_table()) return mismatch();
    out.emplace();
    read_struct(*n.as_table(), *out, key + ".", errs);
  } else if constexpr (is_vector<T>::value) {
    using E = typename is_vector<T>::elem;
    if (!n.is_array()) return mismatch();
    T vec;
    size_t i = 0;
    bool ok = true;
    for (const toml::node& item : *n.as_array()) {
      E e{};
      ok = convert(item, e, key + "[" + std::to_string(i++) + "]", errs) && ok;
      vec.push_back(std::move(e));
    }
    if (!ok) return false;
    out = std::move(vec);
  } else {
    static_assert(sizeof(T) == 0, "unsupported config field type");
  }
  return true;
}

struct ReadVisitor {
  const toml::table& table;
  const std::string& prefix;
  Errors& errs;
  std::vector<std::string> names;

  template <class T, class Check>
  void operator()(const char* name, T& field, const char* /*doc*/, const char* check_text, Check check) {
    names.emplace_back(name);
    const toml::node* n = table.get(name);
    if (!n) {  // absent: the default stands, unless it fails the check (a required key)
      if (!check(field))
        errs.add(table.source(), prefix + name, std::string("missing required key (must satisfy: ") + check_text + ")");
      return;
    }
    std::string key = prefix + name;
    if (!convert(*n, field, key, errs)) return;
    if (!check(field)) {
      std::ostringstream val;
      n->visit([&](const auto& x) { val << x; });
      errs.add(n->source(), key, "value " + val.str() + " is out of range (must satisfy: " + check_text + ")");
    }
  }
};

template <class T>
void read_struct(const toml::table& t, T& out, const std::string& prefix, Errors& errs) {
  ReadVisitor v{t, prefix, errs, {}};
  T::visit_fields(v, out);
  for (const auto& [k, node] : t) {
    bool known = false;
    for (const auto& name : v.names) known = known || name == k.str();
    if (known) continue;
    std::string msg = "unknown key";
    std::string hint = did_you_mean(k.str(), v.names);
    if (!hint.empty()) msg += " (did you mean '" + prefix + hint + "'?)";
    errs.add(k.source(), prefix + std::string(k.str()), msg);
  }
}

// ---- Writing the effective config (r1 config show) ----

std::string quote_comment(std::string_view doc);

template <class T>
void to_node(const T& v, toml::array& arr) {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string> || std::is_floating_point_v<T>)
    arr.push_back(v);
  else if constexpr (ConfigEnum<T>)
    arr.push_back(std::string(name_of(v)));
  else if constexpr (std::is_integral_v<T>)
    arr.push_back(static_cast<int64_t>(v));
  else {
    toml::array inner;
    for (const auto& e : v) to_node(e, inner);
    arr.push_back(std::move(inner));
  }
}

// How values are written so that they parse back to the same value: strings as basic "..."
// strings with escapes. (TOML drops a newline right after an opening ''', so "\ndef " would read
// back as "def "; and literal strings cannot hold control characters.)
constexpr auto kValueFormat = toml::toml_formatter::default_flags & ~toml::format_flags::allow_multi_line_strings &
                              ~toml::format_flags::allow_literal_strings;

template <class T>
std::string scalar_text(const T& v) {
  toml::array holder;
  to_node(v, holder);
  std::ostringstream os;
  os << toml::toml_formatter(*holder.get(0), kValueFormat);
  return os.str();
}

template <class T>
void write_struct(const T& s, const std::string& section, std::string& out);

struct WriteVisitor {
  const std::string& section;
  std::string& scalars;
  std::string& tables;

  template <class T, class Check>
  void operator()(const char* name, const T& field, const char* doc, const char*, Check) {
    std::string key = section.empty() ? name : section + "." + name;
    if constexpr (ConfigStruct<T>) {
      tables += "\n" + quote_comment(doc) + "[" + key + "]\n";
      write_struct(field, key, tables);
    } else if constexpr (is_optional_struct<T>::value) {
      if (!field) return;  // absent stays absent
      tables += "\n" + quote_comment(doc) + "[" + key + "]\n";
      write_struct(*field, key, tables);
    } else if constexpr (is_struct_vector<T>::value) {
      if (field.empty()) tables += "\n" + quote_comment(doc) + "# (no [[" + key + "]] entries)\n";
      for (const auto& e : field) {
        tables += "\n" + quote_comment(doc) + "[[" + key + "]]\n";
        write_struct(e, key, tables);
      }
    } else {
      scalars += quote_comment(doc) + name + " = " + scalar_text(field) + "\n";
    }
  }
};

template <class T>
void write_struct(const T& s, const std::string& section, std::string& out) {
  std::string scalars, tables;
  WriteVisitor v{section, scalars, tables};
  T::visit_fields(v, s);
  out += scalars + tables;
}

// ---- Docs (r1 config docs) ----

template <class T>
void doc_struct(const T& s, const std::string& section, std::string& out);

struct DocVisitor {
  const std::string& section;
  std::string& rows;
  std::string& tables;
  template <class T, class Check>
  void operator()(const char* name, const T& field, const char* doc, const char* check_text, Check) {
    std::string key = section.empty() ? name : section + "." + name;
    if constexpr (ConfigStruct<T>) {
      tables += "\n### [" + key + "]\n\n" + doc + "\n\n";
      doc_struct(field, key, tables);
    } else if constexpr (is_optional_struct<T>::value) {
      tables += "\n### [" + key + "] (optional)\n\n" + doc + "\n\n";
      doc_struct(typename is_optional_struct<T>::elem{}, key, tables);
    } else if constexpr (is_struct_vector<T>::value) {
      tables += "\n### [[" + key + "]]\n\n" + doc + "\n\n";
      doc_struct(typename is_vector<T>::elem{}, key, tables);
    } else {
      std::string check = check_text;
      if constexpr (ConfigEnum<T>) check = "one of " + choices_of<T>();
      auto cell = [](const std::string& t) {  // a Markdown table cell: escape the column separator
        std::string out;
        for (char c : t) {
          if (c == '|') out += '\\';
          out += c;
        }
        return out;
      };
      rows += "| `" + std::string(name) + "` | `" + cell(scalar_text(field)) + "` | " + cell(doc) +
              (check == "true" ? "" : " (`" + cell(check) + "`)") + " |\n";
    }
  }
};

template <class T>
void doc_struct(const T& s, const std::string& section, std::string& out) {
  std::string rows, tables;
  DocVisitor v{section, rows, tables};
  T::visit_fields(v, s);
  if (!rows.empty()) out += "| key | default | meaning |\n|---|---|---|\n" + rows;
  out += tables;
}

}  // namespace detail

// Reads section `name` of `root` into `out` when it is present; problems go to `errs`.
template <class T>
void read_section(const toml::table& root, const char* name, T& out, Errors& errs) {
  const toml::node* n = root.get(name);
  if (!n) return;
  if (!n->is_table()) return errs.add(n->source(), name, "expected a table");
  detail::read_struct(*n->as_table(), out, std::string(name) + ".", errs);
}

// Reads a config struct from a TOML table; throws ConfigError listing every problem.
template <class T>
T from_table(const toml::table& t) {
  T out{};
  Errors errs;
  detail::read_struct(t, out, "", errs);
  errs.throw_if_any();
  return out;
}

// Applies `--set` overrides to a parsed table in order, then reads it.
template <class T>
T load(toml::table t, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(t, o);
  return from_table<T>(t);
}

// Reads FILE (may be empty: defaults only) and applies `--set` overrides in order.
template <class T>
T load(const std::filesystem::path& file, const std::vector<std::string>& overrides = {}) {
  return load<T>(file.empty() ? toml::table{} : parse_file(file), overrides);
}

// The effective config as TOML, every field with its doc as a comment.
template <class T>
std::string to_toml(const T& c) {
  std::string out;
  detail::write_struct(c, "", out);
  return out;
}

// Markdown reference of every field, its default and its check.
template <class T>
std::string to_markdown(const T& c = T{}) {
  std::string out;
  detail::doc_struct(c, "", out);
  return out;
}

}  // namespace r1::cfg
