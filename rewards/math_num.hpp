// Numbers for the math checker: exact 128-bit rationals with overflow detection, and an
// extended-range float (long double mantissa, 64-bit binary exponent) used when a value leaves
// the exact range or is irrational. Internal to rewards/.
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace r1::rewards::math {

using i128 = __int128;

inline i128 gcd128(i128 a, i128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    i128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Exact rational n/d, d > 0, reduced. Operations return nullopt on overflow.
struct Q {
  i128 n = 0, d = 1;
  static std::optional<Q> make(i128 n, i128 d) {
    if (d == 0) return std::nullopt;
    if (d < 0) {
      if (n == std::numeric_limits<i128>::min() || d == std::numeric_limits<i128>::min()) return std::nullopt;
      n = -n;
      d = -d;
    }
    i128 g = gcd128(n, d);
    if (g > 1) {
      n /= g;
      d /= g;
    }
    return Q{n, d};
  }
  bool is_int() const { return d == 1; }
  long double ld() const { return static_cast<long double>(n) / static_cast<long double>(d); }
  bool operator==(const Q& o) const { return n == o.n && d == o.d; }
};

inline std::optional<Q> q_add(Q a, Q b) {
  i128 x, y, z, w;
  if (__builtin_mul_overflow(a.n, b.d, &x) || __builtin_mul_overflow(b.n, a.d, &y) ||
      __builtin_add_overflow(x, y, &z) || __builtin_mul_overflow(a.d, b.d, &w))
    return std::nullopt;
  return Q::make(z, w);
}
inline std::optional<Q> q_neg(Q a) {
  if (a.n == std::numeric_limits<i128>::min()) return std::nullopt;
  return Q{-a.n, a.d};
}
inline std::optional<Q> q_mul(Q a, Q b) {
  // Cross-reduce first to delay overflow.
  i128 g1 = gcd128(a.n, b.d), g2 = gcd128(b.n, a.d);
  if (g1 == 0) g1 = 1;
  if (g2 == 0) g2 = 1;
  i128 x, y;
  if (__builtin_mul_overflow(a.n / g1, b.n / g2, &x) || __builtin_mul_overflow(a.d / g2, b.d / g1, &y))
    return std::nullopt;
  return Q::make(x, y);
}
inline std::optional<Q> q_inv(Q a) {
  if (a.n == 0) return std::nullopt;
  return Q::make(a.d, a.n);
}

// m * 2^e with 0.5 <= |m| < 1, or m in {0, ±inf, nan} with e = 0.
struct XF {
  long double m = 0;
  int64_t e = 0;

  static XF norm(long double m, int64_t e) {
    if (m == 0 || !std::isfinite(m)) return {m, 0};
    int k = 0;
    long double f = std::frexp(m, &k);
    return {f, e + k};
  }
  static XF of(long double v) { return norm(v, 0); }
  static XF of(const Q& q) {
    // Divide in extended range so huge numerators/denominators keep their ratio.
    XF a = of(static_cast<long double>(q.n)), b = of(static_cast<long double>(q.d));
    return div(a, b);
  }
  static XF nan() { return {std::numeric_limits<long double>::quiet_NaN(), 0}; }
  bool is_nan() const { return std::isnan(m); }
  bool is_zero() const { return m == 0; }
  bool finite() const { return std::isfinite(m); }
  long double ld() const {
    if (!finite() || m == 0) return m;
    if (e > 20000) return m > 0 ? INFINITY : -INFINITY;
    if (e < -20000) return 0;
    return std::ldexp(m, static_cast<int>(e));
  }
  static XF mul(XF a, XF b) { return norm(a.m * b.m, a.e + b.e); }
  static XF div(XF a, XF b) {
    if (b.m == 0) return nan();
    return norm(a.m / b.m, a.e - b.e);
  }
  static XF neg(XF a) { return {-a.m, a.e}; }
  static XF add(XF a, XF b) {
    if (!a.finite() || !b.finite()) return of(a.m + b.m);
    if (a.m == 0) return b;
    if (b.m == 0) return a;
    if (a.e < b.e) std::swap(a, b);
    int64_t d = a.e - b.e;
    if (d > 130) return a;
    return norm(a.m + std::ldexp(b.m, -static_cast<int>(d)), a.e);
  }
  // log2|a| as a long double (finite, non-zero a).
  long double log2abs() const { return std::log2(std::fabs(m)) + static_cast<long double>(e); }
  static XF exp2(long double r) {
    if (!std::isfinite(r)) return of(std::exp2(r));
    if (std::fabs(r) > 9e18L) return r > 0 ? of(INFINITY) : of(0);
    long double fl = std::floor(r);
    return norm(std::exp2(r - fl), static_cast<int64_t>(fl));
  }
};

}  // namespace r1::rewards::math
