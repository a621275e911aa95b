// Math checker: extraction, equivalence by category, Math-Verify's known bugs (issues #14, #60),
// and, through the production checker, the ported Math-Verify test cases and the agreement fixture
// (verdicts stored by scripts/fixtures/make_math_fixtures.py, so no Python is needed here), which
// must disagree with Math-Verify exactly where tests/fixtures/rewards/math_disagreements.json says.
#include <doctest/doctest.h>

#include <pthread.h>
#include <boost/json.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "common/json.hpp"

#include "rewards/builtin.hpp"
#include "rewards/math.hpp"
#include "rewards/scorer.hpp"
#include "test_paths.hpp"

namespace m = r1::rewards::math;

namespace {

bool eqv(const std::string& gold, const std::string& pred) { return m::equivalent_text(gold, pred); }

// The production math checker's verdict (rewards/builtin.cpp, default options) for a gold text and
// a free-form prediction.
bool verdict(const std::string& gold, const std::string& completion) {
  static const r1::rewards::CheckerPtr checker = r1::rewards::make_math_checker({});
  r1::rewards::Sample s;
  s.completion = completion;
  s.reference["answer"] = gold;
  return checker->check(s, r1::rewards::Deadline()).score >= 1.0;
}

std::vector<boost::json::object> read_jsonl(const std::filesystem::path& p) {
  std::vector<boost::json::object> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(boost::json::parse(line).as_object());
  return out;
}

std::string s(const boost::json::object& o, const char* k) { return std::string(o.at(k).as_string()); }

}  // namespace

TEST_CASE("math: answer extraction") {
  auto ex = [](const std::string& t) {
    auto e = m::extract_answer(t);
    return e ? e->text : std::string("<none>");
  };
  CHECK(ex("so \\boxed{\\frac{1}{2}} is it") == "\\frac{1}{2}");
  CHECK(ex("nested \\boxed{\\frac{\\sqrt{2}}{2}}") == "\\frac{\\sqrt{2}}{2}");
  CHECK(ex("\\fbox{7}") == "7");
  CHECK(ex("first \\boxed{3} then, much later and after a very long detour through many other cases and examples, "
           "\\boxed{4}") == "4");
  CHECK(ex("\\boxed{3} and \\boxed{4}") == "3, 4");  // Math-Verify: close boxes form a set
  CHECK(ex("\\boxed{3}\n\nSo the answer is \\boxed{4}") == "4");
  CHECK(ex("<think>2+2</think> <answer>4</answer>") == "4");
  CHECK(ex("<think>x</think><answer>The answer is \\boxed{9}</answer>") == "9");
  CHECK(ex("blah. The answer is 42.") == "42");
  CHECK(ex("Natalia sold 48/2 = 24 clips.\n#### 72") == "72");
  CHECK(ex("We find $x = 3$ and then $y = 5$.") == "y = 5");
  CHECK(ex("she pays 1,234 dollars") == "1,234");
  CHECK(ex("no numbers here") == "<none>");
  CHECK_FALSE(m::extract_answer("we get 5", /*require_anchor=*/true));
  CHECK(m::gold_answer("Natalia sold...\n#### 1,080") == "1,080");
  CHECK(m::gold_answer("The result is \\boxed{12}.") == "12");
}

TEST_CASE("math: numbers") {
  CHECK(eqv("7425000", "7,425,000"));
  CHECK(eqv("1000", "1 000"));
  CHECK(eqv("1000", "1000.0"));
  CHECK(eqv("0.4", ".4"));
  CHECK(eqv("-5", "-5"));
  CHECK_FALSE(eqv("5", "-5"));
  CHECK(eqv("1/3", "0.333333"));
  CHECK_FALSE(eqv("1/3", "0.33"));
  CHECK(eqv("1.5e3", "1500"));
  CHECK(eqv("1500", "1.5\\times10^{3}"));
  CHECK(eqv("2.5E-2", "0.025"));
  CHECK(eqv("\\frac{10}{9}", "10/9"));
  CHECK(eqv("-\\frac{10}{9}", "-10/9"));
  CHECK(eqv("\\dfrac{3}{4}", "\\tfrac{6}{8}"));
  CHECK(eqv("\\frac12", "0.5"));
  CHECK(eqv("2\\frac{1}{2}", "5/2"));  // mixed numbers
  CHECK(eqv("3 1/2", "7/2"));
  CHECK(eqv("50\\%", "0.5"));
  CHECK(eqv("9\\%", "9"));
  CHECK(eqv("2^{10}", "1024"));
  CHECK(eqv("\\sqrt{8}", "2\\sqrt{2}"));
  CHECK(eqv("\\sqrt[3]{27}", "3"));
  CHECK(eqv("2\\pi", "\\pi \\cdot 2"));
  CHECK_FALSE(eqv("2\\pi", "6.28"));
  CHECK(eqv("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"));
  CHECK(eqv("5!", "120"));
  CHECK(eqv("\\binom{5}{2}", "10"));
}

TEST_CASE("math: noise, units and text") {
  CHECK(eqv("5", "5 \\text{ cm}"));
  CHECK(eqv("5", "5\\,\\mathrm{cm}^2"));
  CHECK(eqv("12", "12 apples"));
  CHECK(eqv("(1,2)", "\\left( 1, 2 \\right)"));
  CHECK(eqv("\\frac{1}{2}", "\\displaystyle\\frac{1}{2}"));
  CHECK(eqv("1000", "1\\!000"));
  CHECK(eqv("30", "30^\\circ"));
  CHECK(eqv("\\text{yes}", "Yes"));
  CHECK(eqv("\\text{(A)}", "\\text{(A)}"));
  CHECK_FALSE(eqv("\\text{yes}", "\\text{no}"));
}

TEST_CASE("math: structures") {
  CHECK(eqv("[0,1)", "[0,1)"));
  CHECK_FALSE(eqv("[0,9)", "[0,1)"));
  CHECK_FALSE(eqv("(0,9)", "[0,9)"));
  CHECK_FALSE(eqv("[1,2]", "(1,2]"));
  CHECK(eqv("\\{1, 2\\}", "\\{2, 1\\}"));
  CHECK(eqv("(1, 2, 3)", "(1, 2, 3)"));
  CHECK_FALSE(eqv("(1, 2, 3)", "(1, 3, 2)"));
  CHECK(eqv("(-\\infty, 3]", "(-\\infty, 3]"));
  CHECK(eqv("[1,2] \\cup [3,4]", "[3,4] \\cup [1,2]"));
  CHECK(eqv("\\pm 2", "\\{-2, 2\\}"));
  CHECK_FALSE(eqv("\\pm 2021", "2021"));
}

TEST_CASE("math: equations and inequalities") {
  CHECK(eqv("x = 5", "5"));
  CHECK(eqv("5", "x = 5"));
  CHECK(eqv("x = 5", "x = 5"));
  CHECK_FALSE(eqv("x = 5", "y = 5"));
  CHECK(eqv("x > 3", "3 < x"));
  CHECK(eqv("x \\ge 3", "3 \\le x"));
  CHECK_FALSE(eqv("x > 3", "x \\ge 3"));
  CHECK(eqv("2x + 4y - 3 = 0", "y = -\\frac{1}{2}x + \\frac{3}{4}"));
  CHECK(eqv("x > 1", "(1, \\infty)"));
  CHECK(eqv("1 < x \\le 2", "(1, 2]"));
}

TEST_CASE("math: expressions with variables") {
  CHECK(eqv("(x+1)^2", "x^2 + 2x + 1"));
  CHECK_FALSE(eqv("(x+1)^2", "x^2 + x + 1"));
  CHECK(eqv("\\frac{x+2}{7}", "\\frac{x}{7} + \\frac{2}{7}"));
  CHECK(eqv("\\sec^2(y)", "\\tan^2(y) + 1"));
  CHECK(eqv("\\sin^2 x + \\cos^2 x", "1") == false);  // variables differ (x vs none): strict like Math-Verify
  CHECK(eqv("a b", "b a"));
}

// Math-Verify gets these wrong (its issues #14 and #60); r1 must be right.
TEST_CASE("math: Math-Verify issue #14 and #60 cases") {
  CHECK_FALSE(eqv("\\frac{1}{2004!}", "\\frac{1}{2006!}"));
  CHECK_FALSE(eqv("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}"));
  CHECK_FALSE(eqv("n=2, 3, 4", "n=1, 2, 3"));
  CHECK_FALSE(eqv("D = (0, 1)", "D = (0, 1.5)"));
  CHECK_FALSE(eqv("F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}", "F_n = \\sum_{k=0}^{n-2} F_k F_{n-k-2}"));
  CHECK_FALSE(eqv("19, 46, \\text{ and } 82", "21, 36, and 82"));
  CHECK_FALSE(eqv("\\frac{2^{2005}+1}{3 \\cdot 2^{2006}}", "\\frac{1}{3 \\cdot 2^{2006}}"));
  CHECK_FALSE(eqv("1 - \\frac{1}{\\mathrm{e}}", "1 + \\frac{1}{\\mathrm{e}}"));
  CHECK_FALSE(eqv("\\pm 2021", "2021"));
  CHECK_FALSE(eqv("12:00", "1:00"));
  CHECK_FALSE(eqv("1, 2, \\ldots, n", "1, 3, 5, \\ldots, 2n-1"));
  CHECK_FALSE(eqv("1:2:3:\\ldots", "1:4:9:\\ldots"));
  CHECK_FALSE(eqv("3*x-1*y+13=0", "3x + 4y + 14=0"));  // issue #60
  // ... while the true equalities still hold.
  CHECK(eqv("\\frac{1}{2004!}", "\\frac{1}{2004!}"));
  CHECK(eqv("n=2, 3, 4", "n = 4, 3, 2"));
  CHECK(eqv("3x - y + 13 = 0", "-6x + 2y - 26 = 0"));
}

TEST_CASE("math: bounded work") {
  r1::rewards::Deadline dl;
  std::string deep(5000, '(');
  CHECK_FALSE(m::parse(deep + "1" + std::string(5000, ')'), dl).expr);
  m::Limits lim;
  lim.max_chars = 100000;
  auto p = m::parse(std::string(400, '(') + "1" + std::string(400, ')'), dl, lim);
  CHECK_FALSE(p.expr);
  CHECK(p.error.find("deep") != std::string::npos);
  CHECK(eqv("10^{10^{10}}", "10^{10^{10}}"));  // identical text; no huge number is built
  CHECK(eqv("2^{100000}", "2^{100000}"));
  CHECK_FALSE(eqv("2^{100000}", "2^{100001}"));
  // An expired deadline stops parsing cooperatively.
  auto past = r1::rewards::Deadline(r1::rewards::Deadline::Clock::now() - std::chrono::seconds(1));
  std::string big;
  for (int i = 0; i < 300; ++i) big += "x+";
  CHECK_THROWS_AS(m::parse(big + "1", past, lim), r1::rewards::DeadlineExceeded);
}

TEST_CASE("math: values beyond the extended range are never called equal") {
  // Different values whose floats would agree (or both overflow / underflow) are not equal.
  CHECK_FALSE(eqv("10^{10^{20}}", "10^{10^{21}}"));
  CHECK_FALSE(eqv("2^{10^{30}}", "3^{10^{30}}"));
  CHECK_FALSE(eqv("10^{-10^{20}}", "0"));
  CHECK_FALSE(eqv("10000000!", "10000000!+1"));
  CHECK_FALSE(eqv("\\frac{1}{10^{5000}}", "0"));
  CHECK_FALSE(eqv("10^{4000}+1", "10^{4000}"));
  CHECK_FALSE(eqv("1e400", "1e401"));
  // Identical structure still matches; exact values that fit still compare numerically.
  CHECK(eqv("10^{10^{20}}", "10^{10^{20}}"));
  CHECK(eqv("10000000!", "10000000!"));
  CHECK(eqv("2^{100}", "1267650600228229401496703205376"));
  CHECK(eqv("1e400", "1e400"));
}

TEST_CASE("math: inputs that once overflowed the stack score 0 and return") {
  std::string glued;
  for (int i = 0; i < 80000; ++i) glued += "a1";
  std::string base64;
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint32_t x = 12345;
  for (int i = 0; i < 800000; ++i) {
    x = x * 1103515245u + 12345u;
    base64 += alphabet[(x >> 16) % 64];
  }
  CHECK_FALSE(verdict("7", glued));
  CHECK_FALSE(verdict("7", base64));
  // Unbalanced brackets are skipped in linear time; the last number still counts.
  CHECK(verdict("7", std::string(100000, '(') + "7"));
  CHECK(verdict("7", std::string(100000, '{') + "7"));
  CHECK_FALSE(verdict("7", "\\boxed{" + std::string(100000, '{') + "8"));
  CHECK(verdict("7", glued + " so the answer is 7"));
}

namespace {

// Runs `fn` on a thread with a 1 MiB stack (a reward worker's stack is only as deep as its
// thread's), so unbounded recursion fails here whatever the test runner's own stack limit.
void on_small_stack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1024 * 1024);
  pthread_t th;
  auto call = [](void* f) -> void* {
    (*static_cast<const std::function<void()>*>(f))();
    return nullptr;
  };
  REQUIRE(pthread_create(&th, &attr, call, const_cast<std::function<void()>*>(&fn)) == 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace

TEST_CASE("math: a long sum or product (left-deep, one level per term) is freed without recursion") {
  // 200k terms: a recursive free would need about 10 MB of stack.
  std::string sum = "1", product = "x";
  for (int i = 0; i < 200000; ++i) sum += "+1", product += "\\cdot x";
  m::Limits lim;
  lim.max_chars = 4u << 20;
  bool sum_parsed = false, product_parsed = false;
  std::string shown;
  bool x_equal = true;
  on_small_stack([&] {
    sum_parsed = m::parse(sum, r1::rewards::Deadline(), lim).expr != nullptr;
    auto p = m::parse(product, r1::rewards::Deadline(), lim);
    product_parsed = p.expr != nullptr;
    shown = m::to_string(p);  // rendering stops early
    x_equal =
        m::equivalent(m::parse("x", r1::rewards::Deadline()), p, r1::rewards::Deadline(), lim);  // walks its symbols
  });
  CHECK(sum_parsed);
  CHECK(product_parsed);
  CHECK(shown.size() < 1000);
  CHECK(shown.substr(shown.size() - 3) == "…");
  CHECK_FALSE(x_equal);
}

TEST_CASE("math: a chain of ± (operands shared, paths doubling with each ±) is scored in linear time") {
  std::string chain = "x";
  for (int i = 0; i < 40; ++i) chain += "\\pm x";
  r1::rewards::Sample s;
  s.completion = "\\boxed{" + chain + "}";
  r1::rewards::PartResult meta;
  meta.name = "math";
  for (const char* gold : {"\\{0, 2\\}", "x", "1"}) {
    s.reference["answer"] = gold;
    r1::rewards::Scorer sc({{meta, r1::rewards::make_math_checker({})}}, 1, 1000);
    auto t0 = std::chrono::steady_clock::now();
    auto r = sc.score({s})[0].parts[0].result;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(gold);
    CHECK(r.status == r1::rewards::Status::ok);  // not abandoned at the deadline
    CHECK(r.score == 0.0);
    CHECK(r.answer.size() < 1000);
    CHECK(ms < 500);
  }
}

namespace {

// The lines of `fixture` where r1 and Math-Verify disagree must be exactly the ones
// tests/fixtures/rewards/math_disagreements.json lists (each with its reason).
void check_disagreements(const std::string& fixture, const char* prediction, const char* math_verify) {
  auto rows = read_jsonl(r1::test::fixtures() / "rewards" / fixture);
  REQUIRE(rows.size() > 200);
  auto expected_doc = r1::json::parse_file(r1::test::fixtures() / "rewards" / "math_disagreements.json");
  std::map<size_t, std::string> expected;
  for (const auto& e : expected_doc.as_object().at(fixture).as_array())
    expected[static_cast<size_t>(e.at("line").as_int64())] = std::string(e.at("why").as_string());
  std::set<size_t> got;
  for (size_t i = 0; i < rows.size(); ++i)
    if (verdict(s(rows[i], "gold"), s(rows[i], prediction)) != rows[i].at(math_verify).as_bool()) got.insert(i);
  for (size_t i : got)
    CHECK_MESSAGE(expected.count(i), fixture << " line " << i << ": a new disagreement with Math-Verify: gold="
                                             << s(rows[i], "gold").substr(0, 120)
                                             << " prediction=" << s(rows[i], prediction).substr(0, 120));
  for (const auto& e : expected)
    CHECK_MESSAGE(got.count(e.first), fixture << " line " << e.first << " agrees with Math-Verify now (listed as: "
                                              << e.second << "): remove it from math_disagreements.json");
  MESSAGE(fixture << ": agrees with Math-Verify on " << rows.size() - got.size() << "/" << rows.size());
}

}  // namespace

TEST_CASE("math: Math-Verify's own test cases (ported corpus): exactly the listed disagreements") {
  check_disagreements("math_verify_cases.jsonl", "pred", "expected");
}

TEST_CASE("math: agreement with Math-Verify (GSM8K and generated forms): exactly the listed disagreements") {
  check_disagreements("math_agreement.jsonl", "completion", "math_verify");
}
