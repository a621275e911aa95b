// The parsed form of a math answer (internal to rewards/: math.cpp, math_eval.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rewards/math.hpp"
#include "rewards/math_num.hpp"

namespace r1::rewards::math {

enum class K : uint8_t {
  Num,   // q (exact) or f; is_float marks a decimal literal
  Sym,   // name; "pi", "e", "infty" are constants
  Text,  // name = normalized text (\text{yes})
  Add,
  Mul,
  Div,
  Pow,
  Neg,
  Func,      // name(kids...): sin, cos, ..., sqrt (kids: x), root (x, n), log (x[, base]), abs, floor, ceil, binom
  Fact,      // kids[0]!
  Pct,       // kids[0] %
  Tuple,     // ordered
  Set,       // unordered
  Interval,  // kids[0], kids[1], lo_closed, hi_closed; paren_pair: written "(a, b)" (also a 2-tuple)
  Union,     // of intervals/sets
  Rel,       // chain: kids[0] ops[0] kids[1] ops[1] kids[2] ...
};

enum class RelOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

struct Expr;
using P = std::shared_ptr<Expr>;

struct Expr {
  Expr() = default;
  Expr(const Expr&) = default;
  Expr(Expr&&) = default;
  Expr& operator=(const Expr&) = default;
  Expr& operator=(Expr&&) = default;
  // Frees the subtree with an explicit stack: a long sum or product parses left-deep (one level
  // per term), and recursive shared_ptr destruction would overflow a worker's stack.
  ~Expr();

  K k = K::Num;
  Q q{};
  bool exact = true;
  long double f = 0;  // Num when !exact
  bool is_float = false;
  bool paren_pair = false;
  bool lo_closed = false, hi_closed = false;
  std::string name;
  std::vector<P> kids;
  std::vector<RelOp> ops;
};

}  // namespace r1::rewards::math
