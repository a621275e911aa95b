// Typed configs, one declaration per field. A component declares its config struct once, one line
// per field: type, name, default, doc, and a validity check written on `x`:
//
//   struct SamplingOptions {
//   #define R1_SAMPLING_FIELDS(F)  (one field per line, lines joined with backslashes)
//     F(double, temperature, 1.0, "softmax temperature; 0 = greedy", x >= 0)
//     F(int64_t, max_new_tokens, 256, "tokens per completion", x >= 1)
//     R1_CONFIG(SamplingOptions, R1_SAMPLING_FIELDS)
//   };
//
// From that come the members with their defaults and `visit_fields`, which common/config.hpp uses
// to read TOML (types, ranges, unknown keys with did-you-mean, file:line:column), to print the
// effective config (`r1 config show`) and to write docs/CONFIG.md. Field types: bool, int64_t,
// double, std::string, an enum with names (below), std::vector of those, another config struct (a
// [section]), std::optional of a config struct (a [section] that may be absent) or a std::vector
// of config structs (an [[array of tables]]). A default with commas goes in parentheses.
//
// A choice is an enum class with its TOML names declared once, in enumerator order, by a
// function found through argument-dependent lookup:
//
//   enum class ScaleRewards { group, batch, none };
//   constexpr std::array<const char*, 3> enum_names(ScaleRewards) { return {"group", "batch", "none"}; }
//
// The file keeps the strings; the program compares enums. An unknown name is an error listing the
// names, with a did-you-mean; `r1 config show` and the docs print names.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#define R1_CFG_DECLARE_(type, name, def, doc, check) type name = def;
#define R1_CFG_VISIT_(type, name, def, doc, check)             \
  v(#name, self.name, doc, #check, [](const type& x) -> bool { \
    (void)x;                                                   \
    return (check);                                            \
  });

#define R1_CONFIG(Struct, FIELDS)           \
  FIELDS(R1_CFG_DECLARE_)                   \
  template <class V, class S>               \
  static void visit_fields(V& v, S& self) { \
    FIELDS(R1_CFG_VISIT_)                   \
  }                                         \
  static constexpr const char* config_name = #Struct;

namespace r1::cfg {
template <class T>
concept ConfigStruct = requires {
  T::config_name;
};

template <class E>
concept ConfigEnum = std::is_enum_v<E> && requires(E e) {
  enum_names(e);
};

// The TOML name of a choice.
template <ConfigEnum E>
constexpr const char* name_of(E e) {
  return enum_names(E{})[static_cast<size_t>(e)];
}

// The choice named `name`, or nullopt.
template <ConfigEnum E>
constexpr std::optional<E> parse_enum(std::string_view name) {
  const auto names = enum_names(E{});
  for (size_t i = 0; i < names.size(); ++i)
    if (name == names[i]) return static_cast<E>(i);
  return std::nullopt;
}

// "a | b | c": every name of a choice.
template <ConfigEnum E>
std::string choices_of() {
  std::string out;
  for (const char* n : enum_names(E{})) out += (out.empty() ? "" : " | ") + std::string(n);
  return out;
}
}  // namespace r1::cfg
