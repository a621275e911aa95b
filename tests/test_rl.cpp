// rl/: evaluation metrics (pass@k estimator, maj@k) over real generations and a real scorer.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <set>

#include "policy/checkpoint.hpp"
#include "rl/eval.hpp"
#include "test_paths.hpp"

using namespace r1;

TEST_CASE("pass@k is the unbiased estimator") {
  CHECK(pass_at_k(5, 2, 2) == doctest::Approx(0.7));  // 1 - C(3,2)/C(5,2)
  CHECK(pass_at_k(5, 0, 3) == 0.0);
  CHECK(pass_at_k(5, 5, 1) == 1.0);
  CHECK(pass_at_k(10, 3, 1) == doctest::Approx(0.3));
  CHECK(pass_at_k(4, 1, 4) == 1.0);
  CHECK_THROWS(pass_at_k(3, 4, 1));
}

namespace {
// Correct when the completion's byte length is even; the answer is its length modulo 3.
struct ParityChecker : rewards::Checker {
  rewards::CheckResult check(const rewards::Sample& s, const rewards::Deadline&) const override {
    rewards::CheckResult r;
    r.score = s.completion.size() % 2 == 0 ? 1.0 : 0.0;
    r.answer = std::to_string(s.completion.size() % 3);
    r.reason = "length " + std::to_string(s.completion.size());
    return r;
  }
};
}  // namespace

TEST_CASE("evaluate: pass@1, pass@k, maj@k and lengths agree with the per-sample results") {
  auto dir = test::source_dir() / "models" / "tiny";
  CausalLM m = load_pretrained(dir, at::TensorOptions().dtype(at::kFloat));
  Tokenizer tok = Tokenizer::load(dir / "tokenizer.json");
  Engine engine(m, &tok);
  rewards::PartResult part;
  part.name = "parity";
  rewards::Scorer scorer({{part, std::make_shared<ParityChecker>()}}, 1, 1000);
  std::vector<PromptRecord> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back({i, "Question " + std::to_string(i) + ":", {}, {}});
  SamplingOptions s;
  s.max_new_tokens = 7;
  s.seed = 9;
  EvalOptions o;
  o.samples = 4;
  o.prompts_per_batch = 2;
  o.accuracy_part = "parity";
  std::vector<EvalSample> seen;
  int64_t progress_calls = 0;
  EvalReport rep = evaluate(
      engine, tok, prompts, scorer, s, o, [&](const EvalSample& x) { seen.push_back(x); },
      [&](int64_t done, int64_t total) {
        ++progress_calls;
        CHECK(done <= total);
      });
  REQUIRE(seen.size() == 20);
  CHECK(progress_calls == 3);
  double p1 = 0, pk = 0, maj = 0, len = 0;
  for (int p = 0; p < 5; ++p) {
    int c = 0;
    std::map<std::string, std::pair<int, bool>> votes;
    for (int j = 0; j < 4; ++j) {
      const auto& x = seen[p * 4 + j];
      CHECK(x.prompt == p);
      CHECK(x.correct == (x.completion.size() % 2 == 0));
      c += x.correct;
      len += static_cast<double>(x.tokens);
      votes[x.answer].first++;
      votes[x.answer].second = votes[x.answer].second || x.correct;
    }
    p1 += c / 4.0;
    pk += c > 0;
    auto best = votes.begin();
    for (auto it = votes.begin(); it != votes.end(); ++it)
      if (it->second.first > best->second.first) best = it;
    maj += best->second.second;
  }
  CHECK(rep.prompts == 5);
  CHECK(rep.pass_at_1 == doctest::Approx(p1 / 5));
  CHECK(rep.pass_at_k == doctest::Approx(pk / 5));
  CHECK(rep.maj_at_k == doctest::Approx(maj / 5));
  CHECK(rep.mean_length == doctest::Approx(len / 20));
  CHECK(rep.pass_at_1 <= rep.pass_at_k);
  CHECK(rep.part_means.at("parity") == doctest::Approx(p1 / 5));
}

TEST_CASE("maj@k votes on the checker's normalized answer, not on its reason text") {
  // Three samples say 72 in three notations; two others say 5 and 6. Reasons differ ("72 (boxed)",
  // "72 (gsm8k)", ...), normalized answers do not: 72 is the majority, and it is right.
  rewards::RewardsConfig cfg;
  cfg.checkers.push_back({});
  cfg.checkers[0].checker = "math";
  rewards::Scorer scorer(cfg, rewards::Registry::with_builtins());
  std::vector<rewards::Sample> batch;
  for (const char* c : {"\\boxed{72}", "so\n#### 72", "The answer is 72.", "\\boxed{5}", "The answer is 6."})
    batch.push_back({"", c, boost::json::object{{"answer", "#### 72"}}, {}, {}});
  std::vector<EvalSample> samples;
  std::set<std::string> reasons;
  for (const auto& s : scorer.score(batch)) {
    EvalSample e;
    e.scored = s;
    e.answer = s.part("math")->result.answer;
    e.correct = rewards::is_correct(s, "math");
    reasons.insert(s.part("math")->result.reason);
    samples.push_back(e);
  }
  CHECK(reasons.size() == 5);  // every reason is different
  CHECK(samples[0].answer == samples[1].answer);
  CHECK(samples[1].answer == samples[2].answer);
  CHECK(majority_correct(samples));
  samples[0].answer = samples[1].answer = samples[2].answer = "";  // no answers: no vote wins
  samples[3].answer = samples[4].answer = "";
  CHECK_FALSE(majority_correct(samples));
}
