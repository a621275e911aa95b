// Reward checkers: format, countdown, length, the config, the scorer's composition and deadline,
// and JSONL scoring (the library behind `r1 rewards score`).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include <boost/json.hpp>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/utf8.hpp"
#include "rewards/backend.hpp"
#include "rewards/lint.hpp"
#include "rewards/rewards.hpp"
#include "test_paths.hpp"

using namespace r1::rewards;

namespace {

Sample sample(std::string completion, boost::json::object ref = {}) {
  Sample s;
  s.completion = std::move(completion);
  s.reference = std::move(ref);
  return s;
}

CheckResult run(const CheckerPtr& c, const Sample& s) { return c->check(s, Deadline()); }

RewardsConfig parse_cfg(const std::string& text) {
  auto t = r1::cfg::parse_string(text, "test.toml");
  RewardsConfig out{};
  r1::cfg::Errors errs;
  r1::cfg::detail::read_struct(*t.get("rewards")->as_table(), out, "rewards.", errs);
  errs.throw_if_any();
  return out;
}

Scorer scorer_for(const RewardsConfig& c) { return Scorer(c, Registry::for_config(c)); }

// Never returns on its own: the watchdog must abandon it.
class StuckChecker final : public Checker {
 public:
  explicit StuckChecker(std::shared_ptr<std::atomic<bool>> release) : release_(std::move(release)) {}
  CheckResult check(const Sample&, const Deadline&) const override {
    while (!release_->load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CheckResult r;
    r.score = 1;
    return r;
  }

 private:
  std::shared_ptr<std::atomic<bool>> release_;
};

}  // namespace

TEST_CASE("format: strict and lenient") {
  FormatOptions strict, lenient;
  lenient.mode = FormatMode::lenient;
  auto fs = make_format_checker(strict), fl = make_format_checker(lenient);
  std::string good = "<think>2+2=4</think>\n<answer>4</answer>";
  CHECK(run(fs, sample(good)).score == 1.0);
  CHECK(run(fl, sample(good)).score == 1.0);
  std::string around = "Sure! <think>hm</think> <answer>4</answer> Done.";
  CHECK(run(fs, sample(around)).score == 0.0);
  CHECK(run(fs, sample(around)).reason == "text before <think>");
  CHECK(run(fl, sample(around)).score == 1.0);
  CHECK(run(fs, sample("<think>a</think><answer>1</answer><answer>2</answer>")).score == 0.0);
  CHECK(run(fs, sample("<answer>4</answer><think>x</think>")).score == 0.0);
  CHECK(run(fl, sample("<answer>4</answer><think>x</think>")).score == 0.0);
  CHECK(run(fs, sample("<think>x</think><answer> </answer>")).reason == "empty <answer>");
  FormatOptions pre;
  pre.think_prefilled = true;
  CHECK(run(make_format_checker(pre), sample("2+2=4</think><answer>4</answer>")).score == 1.0);
}

TEST_CASE("math checker: GSM8K reference and reasons") {
  auto m = make_math_checker(MathOptions{});
  boost::json::object ref{{"answer", "She sells 16 - 3 - 4 = 9 eggs.\n#### 18"}};
  auto r = run(m, sample("<think>9*2</think><answer>\\boxed{18}</answer>", ref));
  CHECK(r.score == 1.0);
  CHECK(r.reason.find("18") != std::string::npos);
  CHECK(run(m, sample("The answer is $18.00.", ref)).score == 1.0);
  CHECK(run(m, sample("I think it is 19", ref)).score == 0.0);
  CHECK(run(m, sample("nothing", ref)).reason == "no answer found");
  CHECK(run(m, sample("The answer is 18 dollars per day.", ref)).score == 1.0);
  boost::json::object num{{"answer", 1080}};
  CHECK(run(m, sample("\\boxed{1,080}", num)).score == 1.0);
  CHECK_THROWS_WITH_AS(run(m, sample("4", {})), doctest::Contains("answer_field"), std::runtime_error);
}

TEST_CASE("countdown: TinyZero rules with exact rationals") {
  CountdownOptions o;
  auto c = make_countdown_checker(o);
  boost::json::object ref{{"target", 24}, {"nums", boost::json::array{4, 7, 8, 8}}};
  CHECK(run(c, sample("<answer>(7 - 8 / 8) * 4</answer>", ref)).score == 1.0);
  CHECK(run(c, sample("<answer>(7 - 8 / 8) * 4 = 24</answer>", ref)).score == 1.0);
  CHECK(run(c, sample("<answer>7 + 8 + 8 + 4</answer>", ref)).score == doctest::Approx(0.1));        // 27
  CHECK(run(c, sample("<answer>(7 - 8 / 8) * 4 * 1</answer>", ref)).score == doctest::Approx(0.1));  // extra number
  CHECK(run(c, sample("<answer>(8 - 8 / 8) * 4</answer>", ref)).score == doctest::Approx(0.1));      // 8 used thrice
  CHECK(run(c, sample("<answer>__import__('os')</answer>", ref)).score == doctest::Approx(0.1));
  CHECK(run(c, sample("<answer>8 / (8 - 8) + 7 * 4</answer>", ref)).score == doctest::Approx(0.1));  // division by zero
  CHECK(run(c, sample("no tags", ref)).score == 0.0);
  // Exact arithmetic: 1/3 * 3 is exactly 1 (a float evaluator could miss an integer target).
  boost::json::object r3{{"target", 1}, {"nums", boost::json::array{1, 3, 3}}};
  CHECK(run(c, sample("<answer>1 / 3 * 3</answer>", r3)).score == 1.0);
  o.format_score = 0.0;
  o.correct_score = 2.0;
  auto c2 = make_countdown_checker(o);
  CHECK(run(c2, sample("<answer>7 + 8 + 8 + 4</answer>", ref)).score == 0.0);
  CHECK(run(c2, sample("<answer>(7 - 8 / 8) * 4</answer>", ref)).score == 2.0);
  auto f = eval_arithmetic("(1 + 2) / 4");
  REQUIRE(f);
  CHECK(f->num == 3);
  CHECK(f->den == 4);
  CHECK_FALSE(eval_arithmetic("1 +"));
  CHECK_FALSE(eval_arithmetic("2 ** 3"));
}

TEST_CASE("length: DAPO soft overlong penalty") {
  CHECK(overlong_penalty(100, 1000, 200) == 0.0);
  CHECK(overlong_penalty(800, 1000, 200) == 0.0);
  CHECK(overlong_penalty(900, 1000, 200) == doctest::Approx(-0.5));
  CHECK(overlong_penalty(1000, 1000, 200) == doctest::Approx(-1.0));
  CHECK(overlong_penalty(5000, 1000, 200) == -1.0);
  LengthOptions o;
  o.max_length = 10;
  o.cache_length = 4;
  o.unit = LengthUnit::words;
  auto c = make_length_checker(o);
  CHECK(run(c, sample("one two three")).score == 0.0);
  CHECK(run(c, sample("1 2 3 4 5 6 7 8")).score == doctest::Approx(-0.5));
  Sample t = sample("x");
  t.completion_tokens = 12;
  o.unit = LengthUnit::tokens;
  CHECK(run(make_length_checker(o), t).score == -1.0);
  o.cache_length = 20;
  CHECK_THROWS_AS(make_length_checker(o), std::invalid_argument);
}

TEST_CASE("config: typed entries, errors with location and hints") {
  auto cfg = parse_cfg(R"(
[rewards]
threads = 2
[[rewards.checkers]]
checker = "math"
[[rewards.checkers]]
checker = "format"
weight = 0.1
format.mode = "lenient"
)");
  CHECK(cfg.threads == 2);
  REQUIRE(cfg.checkers.size() == 2);
  CHECK(cfg.checkers[1].format->mode == FormatMode::lenient);
  Scorer sc(cfg, Registry::for_config(cfg));
  CHECK(sc.part_names() == std::vector<std::string>{"math", "format"});

  CHECK_THROWS_WITH_AS(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"math\"\nmath.answer_feld = \"x\"\n"),
                       doctest::Contains("did you mean 'rewards.checkers[0].math.answer_field'"), r1::ConfigError);
  CHECK_THROWS_WITH_AS(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"format\"\nformat.mode = \"loose\"\n"),
                       doctest::Contains("test.toml:4"), r1::ConfigError);
  CHECK_THROWS_WITH_AS(scorer_for(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"mathh\"\n")),
                       doctest::Contains("did you mean 'math'"), r1::ConfigError);
  CHECK_THROWS_WITH_AS(
      scorer_for(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"format\"\nmath.float_rounding = 3\n")),
      doctest::Contains("this entry's checker is 'format'"), r1::ConfigError);
  CHECK_THROWS_WITH_AS(
      scorer_for(
          parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"math\"\n[[rewards.checkers]]\nchecker = \"math\"\n")),
      doctest::Contains("used twice"), r1::ConfigError);
  CHECK_THROWS_AS(scorer_for(parse_cfg("[rewards]\n")), r1::ConfigError);
  // Options for another kind are refused even when they repeat that kind's defaults.
  CHECK_THROWS_WITH_AS(
      scorer_for(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"format\"\nmath.float_rounding = 6\n")),
      doctest::Contains("this entry's checker is 'format'"), r1::ConfigError);
  CHECK_THROWS_WITH_AS(
      check_rewards_config(parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"math\"\ncode.timeout_ms = 6000\n")),
      doctest::Contains("options for checker \"code\" given"), r1::ConfigError);
  // The shipped example configs load through the one factory.
  for (const char* f : {"configs/rewards_math.toml", "configs/rewards_countdown.toml"}) {
    auto c = load_reward_setup(r1::test::source_dir() / f);
    CHECK_NOTHROW(make_reward_backend(c));
  }
}

TEST_CASE("scorer: weights, parts and JSON") {
  RewardsConfig cfg = parse_cfg(R"(
[rewards]
[[rewards.checkers]]
checker = "math"
[[rewards.checkers]]
checker = "format"
weight = 0.1
)");
  Scorer sc(cfg, Registry::for_config(cfg));
  boost::json::object ref{{"answer", "#### 4"}};
  auto out = sc.score({sample("<think>2+2</think><answer>4</answer>", ref), sample("4", ref), sample("5", ref)});
  REQUIRE(out.size() == 3);
  CHECK(out[0].score == doctest::Approx(1.1));
  CHECK(out[1].score == doctest::Approx(1.0));
  CHECK(out[2].score == doctest::Approx(0.0));
  auto j = to_json(out[0]);
  CHECK(j.at("parts").as_object().at("math").as_double() == 1.0);
  CHECK(j.at("status").as_string() == "ok");
  CHECK(std::string(j.at("reason").as_string()).find("format: ok") != std::string::npos);
}

TEST_CASE("scorer: a stuck check is abandoned at the deadline, counted, and the pool keeps working") {
  auto release = std::make_shared<std::atomic<bool>>(false);
  PartResult stuck_meta;
  stuck_meta.name = "stuck";
  PartResult fmt_meta;
  fmt_meta.name = "format";
  Scorer sc({{stuck_meta, std::make_shared<StuckChecker>(release)}, {fmt_meta, make_format_checker({})}}, 2, 100);
  auto t0 = std::chrono::steady_clock::now();
  auto out = sc.score({sample("<think>a</think><answer>1</answer>"), sample("x")});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms < 2000);
  REQUIRE(out.size() == 2);
  CHECK(out[0].status == Status::timeout);
  CHECK(out[0].parts[0].result.reason == "timeout");
  CHECK(out[0].parts[0].result.score == 0.0);
  CHECK(out[0].parts[1].result.score == 1.0);  // the other checker still scored
  CHECK(out[0].score == doctest::Approx(1.0));
  CHECK(sc.stats().timeouts == 2);
  CHECK(sc.stats().abandoned_threads == 2);
  // Replacement threads keep the scorer going.
  auto again = sc.score({sample("<think>a</think><answer>1</answer>")});
  CHECK(again[0].parts[1].result.score == 1.0);
  release->store(true);
}

TEST_CASE("scorer: a pathological math answer is cut by limits or the deadline, never hangs") {
  RewardsConfig cfg = parse_cfg(
      "[rewards]\ndeadline_ms = 200\n[[rewards.checkers]]\nchecker = \"math\"\nmath.max_answer_chars = 1000000\n");
  Scorer sc(cfg, Registry::for_config(cfg));
  std::string nasty = "\\boxed{";
  for (int i = 0; i < 20000; ++i) nasty += "x^{";
  nasty += "2";
  for (int i = 0; i < 20000; ++i) nasty += "}";
  nasty += "}";
  std::string wide = "\\boxed{";
  for (int i = 0; i < 60000; ++i) wide += "(x+1)^{2}\\cdot ";
  wide += "1}";
  boost::json::object ref{{"answer", "1"}};
  auto t0 = std::chrono::steady_clock::now();
  auto out = sc.score({sample(nasty, ref), sample(wide, ref)});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms < 3000);
  CHECK(out[0].score == 0.0);
  CHECK(out[1].score == 0.0);
  MESSAGE("pathological inputs: " << out[0].parts[0].result.reason.substr(0, 80) << " | "
                                  << out[1].parts[0].result.reason.substr(0, 80) << " in " << ms << " ms");
}

TEST_CASE("score_jsonl: one line out per line in, ids kept, bad lines reported") {
  RewardsConfig cfg = parse_cfg("[rewards]\n[[rewards.checkers]]\nchecker = \"math\"\n");
  Scorer sc(cfg, Registry::for_config(cfg));
  std::istringstream in(
      "{\"id\": 1, \"completion\": \"\\\\boxed{2}\", \"answer\": \"2\"}\n"
      "not json\n"
      "\n"
      "{\"id\": \"b\", \"completion\": \"3\", \"reference\": {\"answer\": \"4\"}}\n"
      "{\"id\": 3}\n");
  std::ostringstream out;
  auto sum = score_jsonl(in, out, sc, 2);
  CHECK(sum.lines == 4);
  CHECK(sum.bad_lines == 2);
  std::istringstream res(out.str());
  std::string l;
  std::vector<boost::json::object> rows;
  while (std::getline(res, l)) rows.push_back(boost::json::parse(l).as_object());
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].at("id").as_int64() == 1);
  CHECK(rows[0].at("score").as_double() == 1.0);
  CHECK(rows[1].at("status").as_string() == "error");
  CHECK(rows[2].at("id").as_string() == "b");
  CHECK(rows[2].at("score").as_double() == 0.0);
  CHECK(std::string(rows[3].at("reason").as_string()).find("missing \"completion\"") != std::string::npos);
}

TEST_CASE("what a check returns is valid UTF-8 in the output, whatever the checker wrote") {
  // A checker that writes a lone continuation byte and a cut multi-byte sequence.
  struct Broken final : Checker {
    CheckResult check(const Sample&, const Deadline&) const override {
      CheckResult r;
      r.reason = "bad \x80 and cut \xE2\x82";
      r.answer = "\xFF";
      return r;
    }
  };
  PartResult meta;
  meta.name = "broken";
  Scorer sc({{meta, std::make_shared<Broken>()}}, 1, 1000);
  auto out = sc.score({sample("x")});
  CHECK(out[0].parts[0].result.reason == "bad \xEF\xBF\xBD and cut \xEF\xBF\xBD");
  CHECK(out[0].parts[0].result.answer == "\xEF\xBF\xBD");
  // The math checker shortens a long answer at a code point, not inside one.
  std::string answer = std::string(199, 'x') + "€€€";  // bytes 200-202 are the first €
  auto r = run(make_math_checker({}), sample("\\boxed{" + answer + "}", {{"answer", "1"}}));
  CAPTURE(r.reason);
  CHECK(r1::utf8::valid_prefix(r.reason) == r.reason.size());
  CHECK(r.reason.find("…") != std::string::npos);
}

namespace {

// Pays `score` for anything (the always-pay reward a broken checker amounts to).
class ConstantChecker final : public Checker {
 public:
  explicit ConstantChecker(double score) : score_(score) {}
  CheckResult check(const Sample&, const Deadline&) const override {
    CheckResult r;
    r.score = score_;
    return r;
  }

 private:
  double score_;
};

std::vector<LintProbe> lint_set(const std::string& prompt_end) {
  std::vector<LintProbe> out;
  for (const char* a : {"Natalia sold 48 clips. #### 72", "He has 1,234 coins. #### 1,234", "#### 5"}) {
    boost::json::object ref{{"answer", a}};
    out.push_back({"Question: how many?" + prompt_end, ref, gold_answer(a)});
  }
  return out;
}

const LintCheck& check_named(const LintReport& r, const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return c;
  throw std::runtime_error("no lint check " + name);
}

}  // namespace

TEST_CASE("reward lint: a sound math + format reward passes; each listed mistake fails its check") {
  CHECK(gold_answer("so 5 + 67 = 72.\n#### 72") == "72");
  CHECK(gold_answer(" 1,234 ") == "1234");
  const std::string sound = R"(
[[rewards.checkers]]
checker = "math"
math.require_anchor = true
[[rewards.checkers]]
checker = "format"
weight = 0.2
format.think_prefilled = true
)";
  RewardsConfig cfg = parse_cfg(sound);
  auto lint = [](const RewardsConfig& c, const std::vector<LintProbe>& probes, const std::string& part) {
    Scorer sc(c, Registry::for_config(c));
    return lint_rewards(sc, c, probes, part);
  };
  LintReport ok = lint(cfg, lint_set(" Assistant: <think>"), "math");
  MESSAGE(ok.describe());
  CHECK(ok.passed());
  REQUIRE(ok.spread.size() == 2);
  CHECK(ok.spread[0].max == 1.0);
  CHECK(ok.spread[0].min == 0.0);
  CHECK(ok.ms_per_sample > 0);

  // The template does not open <think>, the format checker thinks it does: the gold answer fails.
  LintReport prefill = lint(cfg, lint_set(" Assistant:"), "math");
  CHECK_FALSE(check_named(prefill, "gold answer").passed());
  CHECK(check_named(prefill, "format only, wrong answer").passed());
  // The math checker reads the wrong reference field: the gold answer scores 0.
  RewardsConfig wrong_field = cfg;
  wrong_field.checkers[0].math->answer_field = "solution";
  LintReport field = lint(wrong_field, lint_set(" Assistant: <think>"), "math");
  CHECK_FALSE(check_named(field, "gold answer").passed());
  CHECK(check_named(field, "gold answer").example.find("for \"72\"") != std::string::npos);

  // A reward that only pays for format: the format-only completion gets full marks.
  RewardsConfig format_only = parse_cfg("[[rewards.checkers]]\nchecker = \"format\"\nformat.think_prefilled = true\n");
  LintReport fo = lint(format_only, lint_set(" Assistant: <think>"), "format");
  CHECK(!check_named(fo, "gold answer").skipped.empty());  // no gold completion for a format accuracy part
  CHECK_FALSE(check_named(fo, "format only, wrong answer").passed());
  CHECK(check_named(fo, "empty completion").passed());
  CHECK_FALSE(fo.passed());

  // A checker that pays for anything (e.g. one whose worker times out into a constant): the empty
  // completion and the echoed prompt score full marks.
  std::vector<std::pair<PartResult, CheckerPtr>> parts;
  parts.push_back({PartResult{"math", 1.0, {}}, std::make_shared<ConstantChecker>(1.0)});
  Scorer always(std::move(parts), 2, 1000);
  RewardsConfig always_cfg = parse_cfg("[[rewards.checkers]]\nchecker = \"math\"\n");
  LintReport ap = lint_rewards(always, always_cfg, lint_set(" Assistant: <think>"), "math");
  CHECK(check_named(ap, "gold answer").passed());
  CHECK_FALSE(check_named(ap, "empty completion").passed());
  CHECK_FALSE(check_named(ap, "prompt echoed").passed());
  CHECK_FALSE(check_named(ap, "format only, wrong answer").passed());
  CHECK(ap.describe().find("FAIL empty completion") != std::string::npos);
}
