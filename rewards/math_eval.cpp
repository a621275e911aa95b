// Math answers, equivalence: exact rational evaluation where possible, extended-range floats
// otherwise, random-point comparison for expressions with variables, and structural comparison of
// relations, sets, tuples and intervals following Math-Verify's rules (see docs/REWARDS.md).
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <unordered_set>

#include "rewards/math_expr.hpp"

namespace r1::rewards::math {

std::string normalized_text(std::string_view answer);  // math_parse.cpp

namespace {

struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A value: exact (a rational that fits), approximate (x, within a small relative error: decimal
// literals, irrationals), or lossy: x stands for a value that could not be computed with a
// trustworthy error bound (an exact result beyond the rational range, such as 1000!, or anything
// whose binary exponent left the extended range, such as 10^{10^{20}}). Lossy values are never
// numerically equal to anything; only identical structure matches them.
struct Val {
  bool exact = true;
  Q q{};
  XF x{};
  bool lossy = false;
  static Val of(Q q) { return Val{true, q, XF::of(q), false}; }
  static Val of(XF x, bool lossy = false) { return Val{false, Q{}, x, lossy}; }
};

// 2^lg, lossy when lg leaves the extended range (the result would be 0 or infinity) or `lossy`.
Val exp2_val(long double lg, bool lossy) { return Val::of(XF::exp2(lg), lossy || std::fabs(lg) > 9e18L); }

using Env = std::map<std::string, long double>;

struct Ctx {
  const Deadline& dl;
  const Env* env;
  unsigned ticks = 0;
  int depth = 0;
};

bool is_constant_name(const std::string& n) { return n == "pi" || n == "e" || n == "infty"; }

// An operation on exact operands that overflowed the rational range is lossy: its extended float
// keeps about 19 digits of a value that has more (N! and N! + 1 would look the same).
bool lossy_of(const Val& a, const Val& b) { return a.lossy || b.lossy || (a.exact && b.exact); }

Val add(const Val& a, const Val& b) {
  if (a.exact && b.exact)
    if (auto r = q_add(a.q, b.q)) return Val::of(*r);
  return Val::of(XF::add(a.x, b.x), lossy_of(a, b));
}
Val mul(const Val& a, const Val& b) {
  if (a.exact && b.exact)
    if (auto r = q_mul(a.q, b.q)) return Val::of(*r);
  // 0 * inf stays nan, 0 * finite is an exact 0.
  if ((a.exact && a.q.n == 0 && b.x.finite()) || (b.exact && b.q.n == 0 && a.x.finite())) return Val::of(Q{0, 1});
  return Val::of(XF::mul(a.x, b.x), lossy_of(a, b));
}
Val neg(const Val& a) {
  if (a.exact)
    if (auto r = q_neg(a.q)) return Val::of(*r);
  return Val::of(XF::neg(a.x), a.lossy || a.exact);
}
Val divv(const Val& a, const Val& b) {
  if (b.exact && b.q.n == 0) throw EvalError("division by zero");
  if (b.x.is_zero()) throw EvalError("division by zero");
  if (a.exact && b.exact)
    if (auto inv = q_inv(b.q))
      if (auto r = q_mul(a.q, *inv)) return Val::of(*r);
  return Val::of(XF::div(a.x, b.x), lossy_of(a, b));
}

// Exact integer k-th root of a non-negative i128, if there is one.
std::optional<i128> iroot(i128 v, int64_t k) {
  if (v < 0) return std::nullopt;
  if (v < 2) return v;
  long double guess = std::pow(static_cast<long double>(v), 1.0L / static_cast<long double>(k));
  i128 g = static_cast<i128>(std::llround(guess));
  for (i128 c = std::max<i128>(0, g - 2); c <= g + 2; ++c) {
    i128 p = 1;
    bool over = false;
    for (int64_t j = 0; j < k && !over; ++j) over = __builtin_mul_overflow(p, c, &p);
    if (!over && p == v) return c;
  }
  return std::nullopt;
}

Val powv(const Val& b, const Val& e, Ctx& c) {
  if (e.exact && e.q.is_int()) {
    i128 k = e.q.n;
    if (b.exact) {
      if (b.q.n == 0 && k < 0) throw EvalError("0 to a negative power");
      // Exact power by squaring while it fits; bounded exponent keeps the work small.
      if (k >= -4096 && k <= 4096) {
        i128 kk = k < 0 ? -k : k;
        std::optional<Q> acc = Q{1, 1}, base = b.q;
        while (kk > 0 && acc && base) {
          c.dl.tick(c.ticks);
          if (kk & 1) acc = q_mul(*acc, *base);
          kk >>= 1;
          if (kk > 0) base = q_mul(*base, *base);
        }
        if (acc) {
          if (k < 0) {
            if (auto inv = q_inv(*acc)) return Val::of(*inv);
          } else {
            return Val::of(*acc);
          }
        }
      }
    }
    // Extended range: sign and magnitude separately. An exact base to an integer power that did
    // not fit is an exact value this cannot hold: lossy.
    const bool lossy = b.lossy || e.lossy || b.exact;
    if (b.x.is_zero()) return Val::of(XF::of(k > 0 ? 0.0L : INFINITY), lossy);
    if (!b.x.finite()) return Val::of(XF::of(std::pow(b.x.m, static_cast<long double>(k))), lossy);
    Val mag = exp2_val(b.x.log2abs() * static_cast<long double>(k), lossy);
    const bool negative = b.x.m < 0 && (k % 2 != 0);
    if (negative) mag.x = XF::neg(mag.x);
    return mag;
  }
  if (e.exact && b.exact && b.q.n >= 0 && e.q.d <= 64) {
    // Rational exponent p/q: exact when the q-th roots of numerator and denominator are integers.
    auto rn = iroot(b.q.n, static_cast<int64_t>(e.q.d)), rd = iroot(b.q.d, static_cast<int64_t>(e.q.d));
    if (rn && rd)
      if (auto root = Q::make(*rn, *rd)) return powv(Val::of(*root), Val::of(Q{e.q.n, 1}), c);
  }
  if (e.exact && b.exact && b.q.n < 0 && e.q.d % 2 == 1) {
    // Odd roots of negatives are real: (-8)^(1/3) = -2.
    Val pos = powv(neg(b), e, c);
    return (e.q.n % 2 != 0) ? neg(pos) : pos;
  }
  if (b.x.is_zero()) return Val::of(Q{0, 1});
  if (b.x.m < 0) throw EvalError("non-real power");
  long double ev = e.x.ld();
  if (!std::isfinite(ev)) return Val::of(XF::of(std::pow(b.x.ld(), ev)), true);
  return exp2_val(b.x.log2abs() * ev, b.lossy || e.lossy);
}

Val eval(const Expr& x, Ctx& c);

long double eval_ld(const Expr& x, Ctx& c) {
  Val v = eval(x, c);
  return v.x.ld();
}

Val floor_ceil(const Val& a, bool floor) {
  if (a.exact) {
    i128 q = a.q.n / a.q.d, r = a.q.n % a.q.d;
    if (floor && r < 0) --q;
    if (!floor && r > 0) ++q;
    return Val::of(Q{q, 1});
  }
  long double v = a.x.ld();
  return Val::of(XF::of(floor ? std::floor(v) : std::ceil(v)), a.lossy);
}

Val binomial(const Val& a, const Val& k, Ctx& c) {
  if (!(a.exact && k.exact && a.q.is_int() && k.q.is_int())) throw EvalError("binomial of non-integers");
  i128 n = a.q.n, kk = k.q.n;
  if (kk < 0 || kk > n) return Val::of(Q{0, 1});
  if (n > 100000) throw EvalError("binomial too large");
  kk = std::min(kk, n - kk);
  Val r = Val::of(Q{1, 1});
  for (i128 i = 1; i <= kk; ++i) {
    c.dl.tick(c.ticks);
    r = divv(mul(r, Val::of(Q{n - kk + i, 1})), Val::of(Q{i, 1}));
  }
  return r;
}

// Trigonometric, hyperbolic, exp and log functions of v, in long double.
long double elementary(const std::string& f, long double v) {
  if (f == "sin") return std::sin(v);
  if (f == "cos") return std::cos(v);
  if (f == "tan") return std::tan(v);
  if (f == "cot") return 1 / std::tan(v);
  if (f == "sec") return 1 / std::cos(v);
  if (f == "csc") return 1 / std::sin(v);
  if (f == "arcsin") return std::asin(v);
  if (f == "arccos") return std::acos(v);
  if (f == "arctan") return std::atan(v);
  if (f == "sinh") return std::sinh(v);
  if (f == "cosh") return std::cosh(v);
  if (f == "tanh") return std::tanh(v);
  if (f == "exp") return std::exp(v);
  if (f == "ln" || f == "log") return std::log(v);
  if (f == "log10") return std::log10(v);
  throw EvalError("unknown function " + f);
}

Val eval_func(const Expr& x, Ctx& c) {
  const std::string& f = x.name;
  Val a = eval(*x.kids[0], c);
  if (f == "sqrt") return powv(a, Val::of(Q{1, 2}), c);
  if (f == "root") {
    Val n = eval(*x.kids[1], c);
    if (n.exact && n.q.n == 0) throw EvalError("zeroth root");
    return powv(a, divv(Val::of(Q{1, 1}), n), c);
  }
  if (f == "abs") return (a.exact ? (a.q.n < 0 ? neg(a) : a) : Val::of(XF{std::fabs(a.x.m), a.x.e}, a.lossy));
  if (f == "floor" || f == "ceil") return floor_ceil(a, f == "floor");
  if (f == "binom") return binomial(a, eval(*x.kids[1], c), c);
  if (f == "log" && x.kids.size() == 2) {
    long double v = a.x.ld(), b = eval_ld(*x.kids[1], c);
    if (a.exact && a.q.n == 1 && a.q.d == 1) return Val::of(Q{0, 1});
    return Val::of(XF::of(std::log(v) / std::log(b)), a.lossy);
  }
  if ((f == "ln" || f == "log") && a.exact && a.q.n == 1 && a.q.d == 1) return Val::of(Q{0, 1});
  if ((f == "ln" || f == "log") && a.x.finite() && a.x.m > 0) {
    // log of an extended-range value: ln(m * 2^e) = ln m + e ln 2.
    return Val::of(XF::of(std::log(a.x.m) + static_cast<long double>(a.x.e) * std::log(2.0L)), a.lossy);
  }
  const long double r = elementary(f, a.x.ld());
  if (std::isnan(r)) throw EvalError("outside the function's domain");
  // sin(0) = 0 exactly, so 0-valued trig stays exact for integer-comparison rules.
  if (r == 0 && a.exact && a.q.n == 0) return Val::of(Q{0, 1});
  return Val::of(XF::of(r), a.lossy || a.x.e > 16000);  // a huge argument: ld() was infinite
}

Val eval(const Expr& x, Ctx& c) {
  c.dl.tick(c.ticks);
  if (++c.depth > 400) throw EvalError("too deep");
  struct Dec {
    int& d;
    ~Dec() { --d; }
  } dec{c.depth};
  switch (x.k) {
    // An integer literal beyond the rational range is lossy; a decimal literal is approximate.
    case K::Num: return x.exact ? Val::of(x.q) : Val::of(XF::of(x.f), !x.is_float);
    case K::Sym: {
      if (x.name == "pi") return Val::of(XF::of(3.14159265358979323846264338327950288L));
      if (x.name == "e") return Val::of(XF::of(2.71828182845904523536028747135266250L));
      if (x.name == "infty") return Val::of(XF::of(INFINITY));
      if (c.env) {
        auto it = c.env->find(x.name);
        if (it != c.env->end()) return Val::of(XF::of(it->second));
      }
      throw EvalError("free variable " + x.name);
    }
    case K::Add: return add(eval(*x.kids[0], c), eval(*x.kids[1], c));
    case K::Mul: return mul(eval(*x.kids[0], c), eval(*x.kids[1], c));
    case K::Div: return divv(eval(*x.kids[0], c), eval(*x.kids[1], c));
    case K::Neg: return neg(eval(*x.kids[0], c));
    case K::Pow: return powv(eval(*x.kids[0], c), eval(*x.kids[1], c), c);
    case K::Pct: return divv(eval(*x.kids[0], c), Val::of(Q{100, 1}));
    case K::Fact: {
      Val n = eval(*x.kids[0], c);
      if (!n.exact || !n.q.is_int() || n.q.n < 0) throw EvalError("factorial of a non-natural number");
      if (n.q.n > 10000000) throw EvalError("factorial too large");
      if (n.q.n <= 33) {
        i128 r = 1;
        for (i128 i = 2; i <= n.q.n; ++i) r *= i;
        return Val::of(Q{r, 1});
      }
      long double lg = std::lgamma(static_cast<long double>(n.q.n) + 1.0L) / std::log(2.0L);
      return exp2_val(lg, true);  // an integer of more digits than an extended float holds
    }
    case K::Func: return eval_func(x, c);
    default: throw EvalError("not a number");
  }
}

// Adds x's free symbols to out. A parse is a DAG (± shares its operands, so paths double with each
// ±) and a long sum is one level per term: each node is visited once, with an explicit stack.
void free_symbols(const Expr& x, std::set<std::string>& out) {
  std::unordered_set<const Expr*> seen{&x};
  std::vector<const Expr*> pending{&x};
  while (!pending.empty()) {
    const Expr* e = pending.back();
    pending.pop_back();
    if (e->k == K::Sym && !is_constant_name(e->name)) out.insert(e->name);
    for (const auto& k : e->kids)
      if (seen.insert(k.get()).second) pending.push_back(k.get());
  }
}

bool is_float_atom(const Expr& x) {
  if (x.k == K::Neg || x.k == K::Pct) return is_float_atom(*x.kids[0]);
  return x.k == K::Num && x.is_float;
}
bool is_pct_atom(const Expr& x) {
  if (x.k == K::Neg) return is_pct_atom(*x.kids[0]);
  return x.k == K::Pct && x.kids[0]->k == K::Num;
}
// An integer literal, or an integer percentage (Math-Verify counts 9% and 9 equal).
std::optional<Q> int_or_pct_int(const Expr& x) {
  if (x.k == K::Pct) return int_or_pct_int(*x.kids[0]);
  if (x.k == K::Neg) {
    auto v = int_or_pct_int(*x.kids[0]);
    if (v) return Q{-v->n, 1};
    return std::nullopt;
  }
  if (x.k == K::Num && x.exact && !x.is_float && x.q.is_int()) return x.q;
  return std::nullopt;
}

bool close(const Val& a, const Val& b) {
  if (a.exact && b.exact) return a.q == b.q;
  if (a.lossy || b.lossy) return false;  // no trustworthy error bound: only identical structure matches
  const XF &x = a.x, &y = b.x;
  if (x.is_nan() || y.is_nan()) return false;
  if (!x.finite() || !y.finite()) return x.m == y.m;
  if (x.is_zero() || y.is_zero()) {
    const XF& o = x.is_zero() ? y : x;
    return o.is_zero() || std::fabs(o.ld()) < 1e-13L;
  }
  if ((x.m < 0) != (y.m < 0)) return false;
  XF diff = XF::add(x, XF::neg(y));
  if (diff.is_zero()) return true;
  // Relative difference in extended range.
  long double rel = diff.log2abs() - std::max(x.log2abs(), y.log2abs());
  return rel < std::log2(1e-12L);
}

bool rounded_equal(const Val& a, const Val& b, int places) {
  if (a.lossy || b.lossy) return false;
  long double x = a.x.ld(), y = b.x.ld();
  if (!std::isfinite(x) || !std::isfinite(y)) return x == y;
  long double scale = std::pow(10.0L, places);
  if (std::fabs(x) * scale > 1e17L || std::fabs(y) * scale > 1e17L) return close(a, b);
  // Round half away from zero like sympy's Float.round, on exact values where we have them.
  auto rnd = [&](const Val& v) -> long double {
    if (v.exact) {
      long double s = static_cast<long double>(v.q.n) * scale / static_cast<long double>(v.q.d);
      return std::round(s);
    }
    return std::round(v.x.ld() * scale);
  };
  return rnd(a) == rnd(b);
}

class Cmp {
 public:
  Cmp(const Deadline& dl, const Limits& lim) : dl_(dl), lim_(lim) {}

  bool eq(const P& g, const P& p) {
    dl_.check();
    if (++depth_ > 60) throw EvalError("too deep");
    struct Dec {
      int& d;
      ~Dec() { --d; }
    } dec{depth_};
    return eq_inner(g, p);
  }

 private:
  const Deadline& dl_;
  const Limits& lim_;
  int depth_ = 0;

  static bool is_rel(const P& x) { return x->k == K::Rel; }
  static bool is_eq_rel(const P& x) {
    return x->k == K::Rel && std::all_of(x->ops.begin(), x->ops.end(), [](RelOp o) { return o == RelOp::Eq; });
  }
  static bool is_symbol_like(const P& x) {
    if (x->k == K::Sym) return !is_constant_name(x->name);
    // (p, q, r) = (3, 2, 7): a tuple of names is assigned as a whole.
    if (x->k == K::Tuple || (x->k == K::Interval && x->paren_pair))
      return std::all_of(x->kids.begin(), x->kids.end(), [](const P& k) { return k->k == K::Sym; });
    return false;
  }
  static bool is_assignment(const P& x) { return is_eq_rel(x) && is_symbol_like(x->kids[0]); }
  static P last_rhs(const P& x) { return x->kids.back(); }
  static P make_rel(P l, RelOp op, P r) {
    auto e = std::make_shared<Expr>();
    e->k = K::Rel;
    e->kids = {std::move(l), std::move(r)};
    e->ops = {op};
    return e;
  }
  static P diff(const P& a, const P& b) {
    auto n = std::make_shared<Expr>();
    n->k = K::Neg;
    n->kids = {b};
    auto s = std::make_shared<Expr>();
    s->k = K::Add;
    s->kids = {a, n};
    return s;
  }
  static bool is_structured(const P& x) {
    return x->k == K::Set || x->k == K::Tuple || x->k == K::Interval || x->k == K::Union;
  }

  bool eq_inner(P g, P p) {
    // Assignments are truncated to "lhs = last rhs"; a bare value against an equation follows the
    // gold's shape (Math-Verify: 1 vs 9 = 1 is 1 vs 1; x = 1 vs 1 is 1 vs 1; 2x + z = 1 vs 1 is not).
    bool g_assign = is_assignment(g), p_assign = is_assignment(p);
    bool g_eq = is_eq_rel(g), p_eq = is_eq_rel(p);
    if (g_assign) g = make_rel(g->kids[0], RelOp::Eq, last_rhs(g));
    if (p_assign) p = make_rel(p->kids[0], RelOp::Eq, last_rhs(p));
    if (p_eq && !g_eq)
      p = last_rhs(p);
    else if (g_assign && !p_eq)
      g = last_rhs(g);

    if (g->k == K::Text || p->k == K::Text) return text_eq(*g, *p);
    if (is_rel(g) && is_rel(p)) {
      // x \in [-2, 7] against -2 <= x <= 7, either way round.
      auto as_interval = [&](const P& r) -> P {
        if (is_assignment(r) && r->kids.back()->k == K::Interval) return r->kids.back();
        return nullptr;
      };
      P gi = as_interval(g), pi = as_interval(p);
      if (gi && !pi)
        if (P iv = rel_to_interval(p)) return eq(gi, iv);
      if (pi && !gi)
        if (P iv = rel_to_interval(g)) return eq(iv, pi);
      return rel_eq(g, p);
    }
    if (is_rel(g) && (p->k == K::Interval || p->k == K::Union)) {
      if (auto iv = rel_to_interval(g)) return eq(iv, p);
      return false;
    }
    if (is_rel(g) || is_rel(p)) return false;
    if (is_structured(g) || is_structured(p)) return struct_eq(g, p);
    return scalar_eq(*g, *p);
  }

  static bool text_eq(const Expr& a, const Expr& b) {
    auto name = [](const Expr& e) -> std::optional<std::string> {
      if (e.k == K::Text) return e.name;
      if (e.k == K::Sym) {
        std::string n = e.name;
        for (auto& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        return n;
      }
      return std::nullopt;
    };
    auto x = name(a), y = name(b);
    return x && y && *x == *y;
  }

  // x > 1 -> (1, oo); 1 <= x < 2 -> [1, 2). Single-variable chains only.
  P rel_to_interval(const P& r) {
    auto mk_iv = [](P lo, bool lc, P hi, bool hc) {
      auto iv = std::make_shared<Expr>();
      iv->k = K::Interval;
      iv->kids = {std::move(lo), std::move(hi)};
      iv->lo_closed = lc;
      iv->hi_closed = hc;
      return iv;
    };
    auto inf = [](bool negative) {
      auto s = std::make_shared<Expr>();
      s->k = K::Sym;
      s->name = "infty";
      if (!negative) return s;
      auto n = std::make_shared<Expr>();
      n->k = K::Neg;
      n->kids = {s};
      return n;
    };
    auto strict = [](RelOp o) { return o == RelOp::Lt || o == RelOp::Gt; };
    auto less = [](RelOp o) { return o == RelOp::Lt || o == RelOp::Le; };
    auto greater = [](RelOp o) { return o == RelOp::Gt || o == RelOp::Ge; };
    if (r->kids.size() == 2) {
      RelOp o = r->ops[0];
      const P &a = r->kids[0], &b = r->kids[1];
      if (o == RelOp::Eq && b->k == K::Interval) return b;
      if (a->k == K::Sym && !is_constant_name(a->name)) {
        if (less(o)) return mk_iv(inf(true), false, b, !strict(o));
        if (greater(o)) return mk_iv(b, !strict(o), inf(false), false);
      }
      if (b->k == K::Sym && !is_constant_name(b->name)) {
        if (less(o)) return mk_iv(a, !strict(o), inf(false), false);
        if (greater(o)) return mk_iv(inf(true), false, a, !strict(o));
      }
      return nullptr;
    }
    if (r->kids.size() == 3 && r->kids[1]->k == K::Sym) {
      RelOp o1 = r->ops[0], o2 = r->ops[1];
      if (less(o1) && less(o2)) return mk_iv(r->kids[0], !strict(o1), r->kids[2], !strict(o2));
      if (greater(o1) && greater(o2)) return mk_iv(r->kids[2], !strict(o2), r->kids[0], !strict(o1));
    }
    return nullptr;
  }

  static RelOp flip(RelOp o) {
    switch (o) {
      case RelOp::Lt: return RelOp::Gt;
      case RelOp::Gt: return RelOp::Lt;
      case RelOp::Le: return RelOp::Ge;
      case RelOp::Ge: return RelOp::Le;
      default: return o;
    }
  }

  bool rel_eq(const P& g, const P& p) {
    if (g->ops.size() != p->ops.size()) return false;
    if (g->ops.size() > 1) {
      // Chains compare link by link, in either reading direction.
      auto pairwise = [&](bool flipped) {
        size_t n = g->ops.size();
        for (size_t i = 0; i < n; ++i) {
          size_t j = flipped ? n - 1 - i : i;
          RelOp want = flipped ? flip(p->ops[j]) : p->ops[j];
          if (g->ops[i] != want) return false;
        }
        for (size_t i = 0; i < g->kids.size(); ++i) {
          size_t j = flipped ? g->kids.size() - 1 - i : i;
          if (!eq(g->kids[i], p->kids[j])) return false;
        }
        return true;
      };
      return pairwise(false) || pairwise(true);
    }
    RelOp go = g->ops[0], po = p->ops[0];
    // Assignments with a structured right side (n = {2, 3}, D = (0, 1)): same name, equal sides.
    if (go == RelOp::Eq && po == RelOp::Eq && g->kids[0]->k == K::Sym && p->kids[0]->k == K::Sym &&
        (is_structured(g->kids[1]) || is_structured(p->kids[1])))
      return g->kids[0]->name == p->kids[0]->name && eq(g->kids[1], p->kids[1]);
    if (is_structured(g->kids[1]) || is_structured(p->kids[1]) || is_structured(g->kids[0]) ||
        is_structured(p->kids[0]))
      return false;
    // Same solution set: lhs - rhs proportional (any non-zero factor for = and !=, a positive one
    // for inequalities of the same direction, a negative one for flipped ones).
    P dg = diff(g->kids[0], g->kids[1]), dp = diff(p->kids[0], p->kids[1]);
    bool same = go == po, flipped = flip(go) == po && go != RelOp::Eq && go != RelOp::Ne;
    if (!same && !flipped) return false;
    int sign_needed = (go == RelOp::Eq || go == RelOp::Ne) ? 0 : (same ? 1 : -1);
    return proportional(*dg, *dp, sign_needed);
  }

  // True when a = c * b for a constant c (sign: 0 any, 1 positive, -1 negative), checked exactly
  // for constants and at random points otherwise.
  bool proportional(const Expr& a, const Expr& b, int sign) {
    std::set<std::string> va, vb;
    free_symbols(a, va);
    free_symbols(b, vb);
    if (va != vb) return false;
    std::mt19937_64 rng(0x5eed1234abcdULL);
    std::uniform_real_distribution<long double> dist(0.35L, 2.9L);
    std::optional<long double> ratio;
    int good = 0;
    for (int pt = 0; pt < lim_.random_points * 2 && good < lim_.random_points; ++pt) {
      Env env;
      for (const auto& v : va) env[v] = dist(rng);
      Ctx c{dl_, &env};
      long double x, y;
      try {
        Val xa = eval(a, c);
        Ctx c2{dl_, &env};
        Val yb = eval(b, c2);
        if (xa.exact && yb.exact && va.empty()) {
          if (xa.q.n == 0 || yb.q.n == 0) return xa.q.n == 0 && yb.q.n == 0;
        }
        x = xa.x.ld();
        y = yb.x.ld();
      } catch (const EvalError&) {
        continue;
      }
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      if (std::fabs(y) < 1e-300L) {
        if (std::fabs(x) > 1e-12L) return false;
        continue;
      }
      long double r = x / y;
      if (!ratio)
        ratio = r;
      else if (std::fabs(r - *ratio) > 1e-9L * std::max(1.0L, std::fabs(*ratio)))
        return false;
      ++good;
    }
    if (!ratio || good == 0) return false;
    if (std::fabs(*ratio) < 1e-12L) return false;
    if (sign == 1 && *ratio < 0) return false;
    if (sign == -1 && *ratio > 0) return false;
    return true;
  }

  bool struct_eq(const P& g, const P& p) {
    // One-element sets against a bare value: {5} vs 5.
    if (g->k == K::Set && g->kids.size() == 1 && !is_structured(p)) return eq(g->kids[0], p);
    if (p->k == K::Set && p->kids.size() == 1 && !is_structured(g)) return eq(g, p->kids[0]);
    if (g->k == K::Interval && p->k == K::Interval) {
      if (g->lo_closed != p->lo_closed || g->hi_closed != p->hi_closed) return false;
      return eq(g->kids[0], p->kids[0]) && eq(g->kids[1], p->kids[1]);
    }
    auto seq_of = [](const P& x) -> const std::vector<P>* {
      if (x->k == K::Tuple || (x->k == K::Interval && x->paren_pair)) return &x->kids;
      return nullptr;
    };
    if (const auto* a = seq_of(g)) {
      const auto* b = seq_of(p);
      if (!b) {
        // Math-Verify compares tuples and sets element-wise as unordered collections.
        if (p->k == K::Set) return unordered_eq(*a, p->kids);
        return false;
      }
      if (a->size() != b->size()) return false;
      for (size_t i = 0; i < a->size(); ++i)
        if (!eq((*a)[i], (*b)[i])) return false;
      return true;
    }
    if ((g->k == K::Set || g->k == K::Union) && (p->k == K::Set || p->k == K::Union || seq_of(p)))
      return unordered_eq(g->kids, p->kids);
    return false;
  }

  bool unordered_eq(const std::vector<P>& a, const std::vector<P>& b) {
    // Duplicates do not count in sets: compare the distinct elements both ways.
    auto covered = [&](const std::vector<P>& x, const std::vector<P>& y) {
      for (const auto& e : x) {
        bool found = false;
        for (const auto& f : y)
          if (eq(e, f)) {
            found = true;
            break;
          }
        if (!found) return false;
      }
      return true;
    };
    if (a.size() > 64 || b.size() > 64) throw EvalError("set too large");
    return covered(a, b) && covered(b, a);
  }

  bool scalar_eq(const Expr& g, const Expr& p) {
    std::set<std::string> vg, vp;
    free_symbols(g, vg);
    free_symbols(p, vp);
    if (vg != vp) return false;
    if (!vg.empty()) return proportional_equal_at_points(g, p, vg);
    Val a, b;
    try {
      Ctx c1{dl_, nullptr}, c2{dl_, nullptr};
      a = eval(g, c1);
      b = eval(p, c2);
    } catch (const EvalError&) {
      return false;
    }
    bool g_pct = is_pct_atom(g), p_pct = is_pct_atom(p);
    if (is_float_atom(g) || is_float_atom(p)) {
      if (rounded_equal(a, b, lim_.float_rounding)) return true;
    } else if (close(a, b)) {
      return true;
    }
    if (g_pct || p_pct) {
      // 9% and 9 are the same answer to Math-Verify when both are integers.
      auto x = int_or_pct_int(g), y = int_or_pct_int(p);
      if (x && y) return *x == *y;
    }
    return false;
  }

  bool proportional_equal_at_points(const Expr& g, const Expr& p, const std::set<std::string>& vars) {
    std::mt19937_64 rng(0x9e3779b97f4a7c15ULL);
    std::uniform_real_distribution<long double> dist(0.35L, 2.9L);
    int good = 0;
    for (int pt = 0; pt < lim_.random_points * 3 && good < lim_.random_points; ++pt) {
      Env env;
      for (const auto& v : vars) env[v] = dist(rng);
      Val a, b;
      bool fa = false, fb = false;
      try {
        Ctx c{dl_, &env};
        a = eval(g, c);
      } catch (const EvalError&) {
        fa = true;
      }
      try {
        Ctx c{dl_, &env};
        b = eval(p, c);
      } catch (const EvalError&) {
        fb = true;
      }
      if (fa && fb) continue;
      if (fa != fb) return false;
      if (!close(a, b)) {
        long double x = a.x.ld(), y = b.x.ld();
        if (!(std::fabs(x - y) <= 1e-9L * std::max({1.0L, std::fabs(x), std::fabs(y)}))) return false;
      }
      ++good;
    }
    return good > 0;
  }
};

// A rendering is for reasons and logs: it stops at kRenderChars characters and kRenderDepth levels
// (a chain of ± shares its subtrees, so a full rendering doubles in size with each ±).
constexpr size_t kRenderChars = 400;
constexpr int kRenderDepth = 200;

std::string i128_text(i128 v) {
  if (v == 0) return "0";
  const bool neg = v < 0;
  std::string s;
  while (v != 0) {
    int d = static_cast<int>(v % 10);
    s += static_cast<char>('0' + (d < 0 ? -d : d));
    v /= 10;
  }
  if (neg) s += '-';
  return std::string(s.rbegin(), s.rend());
}

// Appends x's rendering to out; false once the budget is spent (out then ends in "…").
bool render(const Expr& x, std::string& out, int depth) {
  if (out.size() >= kRenderChars || depth > kRenderDepth) {
    out += "…";
    return false;
  }
  auto kids = [&](const char* open, const char* sep, const char* close) {
    out += open;
    for (size_t i = 0; i < x.kids.size(); ++i) {
      if (i) out += sep;
      if (!render(*x.kids[i], out, depth + 1)) return false;
    }
    out += close;
    return true;
  };
  switch (x.k) {
    case K::Num:
      if (!x.exact) return out += std::to_string(static_cast<double>(x.f)), true;
      out += x.q.d == 1 ? i128_text(x.q.n) : i128_text(x.q.n) + "/" + i128_text(x.q.d);
      return true;
    case K::Sym:
    case K::Text: return out += x.name, true;
    case K::Add: return kids("(", " + ", ")");
    case K::Mul: return kids("(", "*", ")");
    case K::Div: return kids("(", "/", ")");
    case K::Pow: return kids("(", "^", ")");
    case K::Neg: return kids("-", "", "");
    case K::Func: return kids((x.name + "(").c_str(), ", ", ")");
    case K::Fact: return kids("", "", "!");
    case K::Pct: return kids("", "", "%");
    case K::Tuple: return kids("(", ", ", ")");
    case K::Set: return kids("{", ", ", "}");
    case K::Union: return kids("", " U ", "");
    case K::Interval: return kids(x.lo_closed ? "[" : "(", ", ", x.hi_closed ? "]" : ")");
    case K::Rel: {
      static const char* names[] = {"=", "!=", "<", "<=", ">", ">="};
      if (!render(*x.kids[0], out, depth + 1)) return false;
      for (size_t i = 0; i < x.ops.size(); ++i) {
        out += std::string(" ") + names[static_cast<int>(x.ops[i])] + " ";
        if (!render(*x.kids[i + 1], out, depth + 1)) return false;
      }
      return true;
    }
  }
  return out += "?", true;
}

}  // namespace

bool equivalent(const Parsed& gold, const Parsed& pred, const Deadline& dl, const Limits& lim) {
  // Identical normalized text is always a match (Math-Verify's string comparison).
  if (!gold.normalized.empty() && gold.normalized == pred.normalized) return true;
  if (!gold.expr || !pred.expr) return false;
  try {
    Cmp cmp(dl, lim);
    return cmp.eq(std::const_pointer_cast<Expr>(gold.expr), std::const_pointer_cast<Expr>(pred.expr));
  } catch (const EvalError&) {
    return false;
  }
}

bool equivalent_text(std::string_view gold, std::string_view pred, const Deadline& dl, const Limits& lim) {
  return equivalent(parse(gold, dl, lim), parse(pred, dl, lim), dl, lim);
}

std::string to_string(const Parsed& p) {
  if (!p.expr) return p.normalized;
  std::string out;
  render(*p.expr, out, 0);
  return out;
}

}  // namespace r1::rewards::math
