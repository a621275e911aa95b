// The built-in checkers (format, math, countdown, length), constructed from their typed options.
#pragma once
#include "rewards/checker.hpp"
#include "rewards/options.hpp"

namespace r1::rewards {

CheckerPtr make_format_checker(const FormatOptions& o);
CheckerPtr make_math_checker(const MathOptions& o);
CheckerPtr make_countdown_checker(const CountdownOptions& o);
CheckerPtr make_length_checker(const LengthOptions& o);

// TinyZero countdown equation evaluation, exposed for tests: the value of `expr` if it only
// uses digits, + - * / ( ) and spaces, else nullopt. Exact rationals; division by zero -> nullopt.
struct Fraction {
  long long num, den;
};
std::optional<Fraction> eval_arithmetic(std::string_view expr);

// DAPO's soft overlong penalty for a completion of `len` units: 0 up to L_max - L_cache, then a
// linear ramp to -1 at L_max, and -1 beyond.
double overlong_penalty(int64_t len, int64_t max_length, int64_t cache_length);

}  // namespace r1::rewards
