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
// double, std::string, std::vector of those, another config struct (a [section]) or a std::vector
// of config structs (an [[array of tables]]). A default with commas goes in parentheses.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#define R1_CFG_DECLARE_(type, name, def, doc, check) type name = def;
#define R1_CFG_VISIT_(type, name, def, doc, check) \
  v(#name, self.name, doc, #check, [](const type& x) -> bool { (void)x; return (check); });

#define R1_CONFIG(Struct, FIELDS)                                   \
  FIELDS(R1_CFG_DECLARE_)                                           \
  template <class V, class S>                                       \
  static void visit_fields(V& v, S& self) {                         \
    FIELDS(R1_CFG_VISIT_)                                           \
  }                                                                 \
  static constexpr const char* config_name = #Struct;

namespace r1::cfg {
template <class T>
concept ConfigStruct = requires { T::config_name; };
}  // namespace r1::cfg
