// The built-in checkers: R1-Zero format, math answers, countdown equations, DAPO overlong length.
#include "rewards/builtin.hpp"
#include "common/strings.hpp"
#include "common/utf8.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

#include "rewards/math.hpp"
#include "rewards/math_num.hpp"

namespace r1::rewards {

const char* status_name(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::timeout: return "timeout";
    case Status::error: return "error";
  }
  return "?";
}

namespace {

using r1::trim;

size_t count(std::string_view s, std::string_view what) {
  size_t n = 0, p = 0;
  while ((p = s.find(what, p)) != std::string_view::npos) ++n, p += what.size();
  return n;
}

// ---- format -----------------------------------------------------------------------------------

class FormatChecker final : public Checker {
 public:
  explicit FormatChecker(FormatOptions o) : o_(std::move(o)) {}

  CheckResult check(const Sample& s, const Deadline&) const override {
    std::string text = o_.think_prefilled ? "<think>" + s.completion : s.completion;
    CheckResult r;
    std::string why = o_.mode == FormatMode::strict ? strict(text) : lenient(text);
    r.score = why.empty() ? 1.0 : 0.0;
    r.reason = why.empty() ? "ok" : why;
    r.parts = {{"format", r.score}};
    return r;
  }

 private:
  FormatOptions o_;

  // Exactly: optional whitespace, <think>…</think>, optional whitespace, <answer>…</answer>,
  // optional whitespace; each tag exactly once and the answer not empty.
  static std::string strict(std::string_view t) {
    for (const char* tag : {"<think>", "</think>", "<answer>", "</answer>"})
      if (count(t, tag) != 1)
        return std::string("expected exactly one ") + tag + ", found " + std::to_string(count(t, tag));
    size_t a = t.find("<think>"), b = t.find("</think>"), c = t.find("<answer>"), d = t.find("</answer>");
    if (!(a < b && b < c && c < d)) return "tags out of order (want <think></think><answer></answer>)";
    if (!trim(t.substr(0, a)).empty()) return "text before <think>";
    if (!trim(t.substr(b + 8, c - b - 8)).empty()) return "text between </think> and <answer>";
    if (!trim(t.substr(d + 9)).empty()) return "text after </answer>";
    if (trim(t.substr(c + 8, d - c - 8)).empty()) return "empty <answer>";
    return "";
  }

  // A <think>…</think> block followed later by a non-empty <answer>…</answer>; other text and
  // repeated tags are allowed.
  static std::string lenient(std::string_view t) {
    size_t a = t.find("<think>");
    if (a == std::string_view::npos) return "missing <think>";
    size_t b = t.find("</think>", a + 7);
    if (b == std::string_view::npos) return "missing </think> after <think>";
    size_t c = t.find("<answer>", b + 8);
    if (c == std::string_view::npos) return "missing <answer> after </think>";
    size_t d = t.find("</answer>", c + 8);
    if (d == std::string_view::npos) return "missing </answer>";
    if (trim(t.substr(c + 8, d - c - 8)).empty()) return "empty <answer>";
    return "";
  }
};

// ---- math -------------------------------------------------------------------------------------

std::optional<std::string> reference_text(const boost::json::object& ref, const std::string& field) {
  auto it = ref.find(field);
  if (it == ref.end()) return std::nullopt;
  const auto& v = it->value();
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_double()) return boost::json::serialize(v);
  return std::nullopt;
}

class MathChecker final : public Checker {
 public:
  explicit MathChecker(MathOptions o) : o_(std::move(o)) {
    lim_.max_chars = static_cast<size_t>(o_.max_answer_chars);
    lim_.float_rounding = static_cast<int>(o_.float_rounding);
    lim_.random_points = static_cast<int>(o_.random_points);
  }

  CheckResult check(const Sample& s, const Deadline& dl) const override {
    auto gold_text = reference_text(s.reference, o_.answer_field);
    if (!gold_text)
      throw std::runtime_error("reference field '" + o_.answer_field + "' is missing or not a string/number " +
                               "(set math.answer_field to the record's answer key)");
    auto gold = math::parse(math::gold_answer(*gold_text), dl, lim_);
    CheckResult r;
    auto found = math::extract_answer(s.completion, o_.require_anchor);
    if (!found) {
      r.reason = "no answer found";
      r.parts = {{"correct", 0.0}};
      return r;
    }
    auto pred = math::parse(found->text, dl, lim_);
    bool ok = math::equivalent(gold, pred, dl, lim_);
    if (!ok && found->rule != "latex" && found->rule != "number" && found->rule != "boxed") {
      // An anchored sentence ("the answer is 72 dollars per day") may hold a number inside.
      if (auto n = math::first_number(found->text); n && *n != found->text) {
        auto pn = math::parse(*n, dl, lim_);
        ok = math::equivalent(gold, pn, dl, lim_);
        if (ok || !pred.expr) {
          pred = std::move(pn);
          found->text = *n;
        }
      }
    }
    r.score = ok ? 1.0 : 0.0;
    r.parts = {{"correct", r.score}};
    r.answer = math::to_string(pred);
    std::string shown = found->text.size() > 200 ? std::string(utf8::truncate(found->text, 200)) + "…" : found->text;
    r.reason = shown + " (" + found->rule + (pred.expr ? "" : ", unparsed: " + pred.error) + ")";
    return r;
  }

 private:
  MathOptions o_;
  math::Limits lim_;
};

// ---- countdown --------------------------------------------------------------------------------

using math::i128;
using math::Q;

class Arith {
 public:
  explicit Arith(std::string_view s) : s_(s) {}
  std::optional<Q> run() {
    try {
      auto v = expr(0);
      skip();
      if (!v || i_ != s_.size()) return std::nullopt;
      return v;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  std::optional<Q> expr(int depth) {
    if (depth > 64) return std::nullopt;
    auto a = term(depth);
    while (a) {
      skip();
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) {
        char op = s_[i_++];
        auto b = term(depth);
        if (!b) return std::nullopt;
        a = op == '+' ? math::q_add(*a, *b) : (math::q_neg(*b) ? math::q_add(*a, *math::q_neg(*b)) : std::nullopt);
      } else {
        break;
      }
    }
    return a;
  }
  std::optional<Q> term(int depth) {
    auto a = factor(depth);
    while (a) {
      skip();
      if (i_ < s_.size() && (s_[i_] == '*' || s_[i_] == '/')) {
        char op = s_[i_++];
        auto b = factor(depth);
        if (!b) return std::nullopt;
        if (op == '*')
          a = math::q_mul(*a, *b);
        else {
          auto inv = math::q_inv(*b);  // nullopt on division by zero
          if (!inv) return std::nullopt;
          a = math::q_mul(*a, *inv);
        }
      } else {
        break;
      }
    }
    return a;
  }
  std::optional<Q> factor(int depth) {
    skip();
    if (i_ >= s_.size()) return std::nullopt;
    char c = s_[i_];
    if (c == '(') {
      ++i_;
      auto v = expr(depth + 1);
      skip();
      if (i_ >= s_.size() || s_[i_] != ')') return std::nullopt;
      ++i_;
      return v;
    }
    if (c == '-') {  // unary minus
      ++i_;
      auto v = factor(depth + 1);
      if (!v) return std::nullopt;
      return math::q_neg(*v);
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    i128 n = 0;
    size_t digits = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      if (++digits > 18) return std::nullopt;
      n = n * 10 + (s_[i_++] - '0');
    }
    return Q{n, 1};
  }
};

std::string int_text(i128 x) {
  if (x == 0) return "0";
  std::string out;
  const bool neg = x < 0;
  for (; x != 0; x /= 10) out += static_cast<char>('0' + (neg ? -(x % 10) : x % 10));
  if (neg) out += '-';
  return {out.rbegin(), out.rend()};
}

std::string rational_text(const Q& q) { return q.d == 1 ? int_text(q.n) : int_text(q.n) + "/" + int_text(q.d); }

class CountdownChecker final : public Checker {
 public:
  explicit CountdownChecker(CountdownOptions o) : o_(std::move(o)) {}

  CheckResult check(const Sample& s, const Deadline&) const override {
    auto tit = s.reference.find(o_.target_field);
    auto nit = s.reference.find(o_.numbers_field);
    if (tit == s.reference.end() || !(tit->value().is_int64() || tit->value().is_uint64() || tit->value().is_double()))
      throw std::runtime_error("reference field '" + o_.target_field + "' must be a number");
    if (nit == s.reference.end() || !nit->value().is_array())
      throw std::runtime_error("reference field '" + o_.numbers_field + "' must be an array of integers");
    double target = tit->value().to_number<double>();
    std::vector<long long> nums;
    for (const auto& v : nit->value().as_array()) {
      if (!v.is_int64() && !v.is_uint64()) throw std::runtime_error("'" + o_.numbers_field + "' must hold integers");
      nums.push_back(v.to_number<long long>());
    }
    CheckResult r;
    auto fail = [&](double score, std::string why) {
      r.score = score;
      r.reason = std::move(why);
      r.parts = {{"correct", 0.0}, {"format", score > o_.fail_score ? 1.0 : 0.0}};
      return r;
    };
    // TinyZero: the equation is the content of the last <answer> tag.
    size_t open = s.completion.rfind("<answer>");
    if (open == std::string::npos) return fail(o_.fail_score, "no <answer> tag");
    size_t close = s.completion.find("</answer>", open);
    if (close == std::string::npos) return fail(o_.fail_score, "no </answer> after <answer>");
    std::string eq = trim(std::string_view(s.completion).substr(open + 8, close - open - 8));
    // "(1 + 2) * 3 = 9" is accepted: the left side is the equation.
    if (auto p = eq.find('='); p != std::string::npos) eq = trim(eq.substr(0, p));
    if (eq.empty()) return fail(o_.fail_score, "empty <answer>");
    if (eq.size() > 512) return fail(o_.format_score, "equation longer than 512 characters");
    for (char c : eq)
      if (!(std::isdigit(static_cast<unsigned char>(c)) || std::strchr("+-*/() ", c)))
        return fail(o_.format_score,
                    std::string("'") + c + "' is not allowed (only digits, + - * / and parentheses): " + eq);
    std::vector<long long> used;
    for (size_t i = 0; i < eq.size();) {
      if (std::isdigit(static_cast<unsigned char>(eq[i]))) {
        size_t j = i;
        while (j < eq.size() && std::isdigit(static_cast<unsigned char>(eq[j]))) ++j;
        if (j - i > 18) return fail(o_.format_score, "number too long: " + eq);
        used.push_back(std::stoll(eq.substr(i, j - i)));
        i = j;
      } else {
        ++i;
      }
    }
    auto a = used, b = nums;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return fail(o_.format_score, "must use each given number exactly once: " + eq);
    auto v = Arith(eq).run();
    if (!v) return fail(o_.format_score, "not a valid expression (or division by zero): " + eq);
    double value = static_cast<double>(v->n) / static_cast<double>(v->d);
    r.answer = rational_text(*v);  // its value: equations that agree get one vote
    // Exact when the target is an integer; TinyZero's 1e-5 tolerance otherwise.
    bool hit = (target == std::floor(target) && std::fabs(target) < 9e15)
                   ? (v->d == 1 && v->n == static_cast<i128>(static_cast<long long>(target)))
                   : std::fabs(value - target) < 1e-5;
    if (!hit) return fail(o_.format_score, eq + " = " + std::to_string(value) + ", not " + std::to_string(target));
    r.score = o_.correct_score;
    r.reason = eq;
    r.parts = {{"correct", 1.0}, {"format", 1.0}};
    return r;
  }

 private:
  CountdownOptions o_;
};

// ---- length -----------------------------------------------------------------------------------

class LengthChecker final : public Checker {
 public:
  explicit LengthChecker(LengthOptions o) : o_(std::move(o)) {
    if (o_.cache_length > o_.max_length)
      throw std::invalid_argument("length.cache_length (" + std::to_string(o_.cache_length) +
                                  ") must not exceed length.max_length (" + std::to_string(o_.max_length) + ")");
  }

  CheckResult check(const Sample& s, const Deadline&) const override {
    int64_t len = 0;
    std::string unit = cfg::name_of(o_.unit);
    if (o_.unit == LengthUnit::tokens && s.completion_tokens) {
      len = *s.completion_tokens;
    } else if (o_.unit == LengthUnit::chars) {
      for (unsigned char c : s.completion) len += (c & 0xC0) != 0x80;
    } else {
      if (o_.unit == LengthUnit::tokens) unit = "words (no completion_tokens in the sample)";
      bool in = false;
      for (unsigned char c : s.completion) {
        bool sp = std::isspace(c);
        if (!sp && !in) ++len;
        in = !sp;
      }
    }
    CheckResult r;
    r.score = overlong_penalty(len, o_.max_length, o_.cache_length);
    r.parts = {{"length", static_cast<double>(len)}, {"penalty", r.score}};
    r.reason = std::to_string(len) + " " + unit;
    return r;
  }

 private:
  LengthOptions o_;
};

}  // namespace

std::optional<Fraction> eval_arithmetic(std::string_view expr) {
  for (char c : expr)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || std::strchr("+-*/() ", c))) return std::nullopt;
  auto v = Arith(expr).run();
  if (!v || v->n > INT64_MAX || v->n < INT64_MIN || v->d > INT64_MAX) return std::nullopt;
  return Fraction{static_cast<long long>(v->n), static_cast<long long>(v->d)};
}

double overlong_penalty(int64_t len, int64_t max_length, int64_t cache_length) {
  int64_t safe = max_length - cache_length;
  if (len <= safe) return 0.0;
  if (len <= max_length) return static_cast<double>(safe - len) / static_cast<double>(cache_length);
  return -1.0;
}

CheckerPtr make_format_checker(const FormatOptions& o) { return std::make_shared<FormatChecker>(o); }
CheckerPtr make_math_checker(const MathOptions& o) { return std::make_shared<MathChecker>(o); }
CheckerPtr make_countdown_checker(const CountdownOptions& o) { return std::make_shared<CountdownChecker>(o); }
CheckerPtr make_length_checker(const LengthOptions& o) { return std::make_shared<LengthChecker>(o); }

}  // namespace r1::rewards
