// The GRPO loop end to end on the tiny fixture model: every metric the issue asks for is logged
// per step, samples and checkpoints are written, KL/μ/minibatch/dynamic-sampling paths run, and
// config mistakes are refused before anything starts.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "policy/safetensors.hpp"
#include "policy/tokenizer.hpp"
#include "rl/batch.hpp"
#include "rl/checkpoint.hpp"
#include "rl/trainer.hpp"
#include "rl/update.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1;

namespace {

fs::path make_data(const fs::path& dir) {
  fs::create_directories(dir);
  std::ofstream f(dir / "data.jsonl");
  for (int i = 0; i < 24; ++i) f << "{\"question\": \"What is " << i << " + 1?\", \"answer\": \"" << i + 1 << "\"}\n";
  return dir / "data.jsonl";
}

// Rewards that differ within a group, so that every step moves the weights: completion length in
// characters (the tiny model's 8-token completions vary from a few to 20-odd characters).
std::vector<rewards::RewardEntry> length_reward() {
  rewards::RewardEntry len;
  len.checker = "length";
  len.length.emplace();
  len.length->unit = rewards::LengthUnit::chars;
  len.length->max_length = 12;
  len.length->cache_length = 10;
  return {len};
}

RunConfig small_config(const fs::path& dir) {
  RunConfig c;
  c.model.path = (test::source_dir() / "models" / "tiny").string();
  c.model.threads = 2;
  c.data.path = make_data(dir).string();
  c.data.prompt_template = "User: {question} Assistant: <think>";
  c.sampling.max_new_tokens = 8;
  c.rollout.group_size = 4;
  c.rollout.prompts_per_step = 2;
  c.rollout.prompts_per_batch = 2;
  c.rollout.max_batch = 8;
  rewards::RewardEntry math, format;
  math.checker = "math";
  format.checker = "format";
  format.weight = 0.1;
  c.rewards.checkers = {math, format};
  c.train.steps = 2;
  c.train.lr = 1e-3;
  c.train.micro_batch = 3;
  c.eval.path = c.data.path;
  c.eval.limit = 4;
  c.eval.max_new_tokens = 6;
  // These rewards fail the reward lint: the format checker does not know the
  // template opens <think>, and math without an anchor pays an echoed "What is 0 + 1?". The tests
  // are about other things, so the lint only warns (which runs its warn path in every test).
  c.rewards.lint = rewards::LintMode::warn;
  return c;
}

std::vector<boost::json::object> read_jsonl(const fs::path& f) {
  std::vector<boost::json::object> out;
  std::ifstream in(f);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line, f.string()).as_object());
  return out;
}

}  // namespace

TEST_CASE("train: metrics, samples, checkpoints and the final model") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train";
  fs::remove_all(dir);
  RunConfig c = small_config(dir);
  c.grpo.kl_coef = 0.05;  // keeps a reference model
  c.grpo.entropy_coef = 0.001;
  c.train.inner_epochs = 2;  // mu = 2 against stored old log-probs
  c.train.minibatches = 2;
  TrainSummary s = train(c, {.run_dir = dir / "run", .progress = false});
  CHECK(s.steps == 2);
  CHECK(s.before.accuracy >= 0);
  CHECK(s.after.accuracy >= 0);

  auto metrics = read_jsonl(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 3);  // the pre-training eval line, then one per step
  CHECK(metrics[0].contains("eval/accuracy"));
  for (const char* key : {"reward/mean",
                          "reward/std",
                          "reward/math/mean",
                          "reward/format/mean",
                          "accuracy",
                          "zero_std_frac",
                          "length/mean",
                          "length/max",
                          "truncated",
                          "kl",
                          "entropy",
                          "clip/low",
                          "clip/high",
                          "ratio/mean",
                          "ratio/max",
                          "mismatch/logprob_abs_mean",
                          "mismatch/logprob_abs_max",
                          "loss",
                          "grad_norm",
                          "lr",
                          "tokens_per_s/gen",
                          "tokens_per_s/train",
                          "time/rollout",
                          "time/reward",
                          "time/train",
                          "time/sync",
                          "policy_lag"}) {
    CAPTURE(key);
    CHECK(metrics[1].contains(key));
    CHECK(metrics[2].contains(key));
  }
  CHECK(metrics[2].at("step").as_int64() == 2);
  CHECK(metrics[2].contains("eval/accuracy"));  // the last step always evaluates
  CHECK(metrics[1].at("entropy").to_number<double>() > 0);
  CHECK(metrics[1].at("policy_lag").to_number<double>() == 0);  // on-policy
  for (size_t i = 1; i < metrics.size(); ++i) {
    // The first update starts from the weights that sampled: log-probs that agree. (The second
    // minibatch of the first pass comes after an update, so its ratios are not 1.)
    CHECK(metrics[i].at("ratio/mean").to_number<double>() == doctest::Approx(1.0).epsilon(0.1));
    CHECK(metrics[i].at("ratio/max").to_number<double>() >= 1.0 - 1e-4);
    CHECK(metrics[i].at("mismatch/logprob_abs_mean").to_number<double>() < 1e-5);
    CHECK(metrics[i].at("mismatch/logprob_abs_max").to_number<double>() < 1e-4);
    CHECK(metrics[i].at("mismatch/logprob_abs_max").to_number<double>() >=
          metrics[i].at("mismatch/logprob_abs_mean").to_number<double>());
  }

  auto samples = read_jsonl(dir / "run" / "samples.jsonl");
  CHECK(samples.size() == 2 * 2 * 4);
  CHECK(samples[0].contains("parts"));
  CHECK(samples[0].contains("completion"));
  // tokens_per_s/train is over the tokens of every pass, each counted once (inner_epochs = 2 here).
  Tokenizer tok = Tokenizer::load(fs::path(c.model.path) / "tokenizer.json");
  for (int64_t step : {1, 2}) {
    double tokens = 0;
    for (const auto& x : samples)
      if (x.at("step").as_int64() == step)
        tokens +=
            static_cast<double>(tok.encode(std::string(x.at("prompt").as_string())).size() + x.at("tokens").as_int64());
    const auto& m = metrics[static_cast<size_t>(step)];
    CHECK(m.at("tokens_per_s/train").to_number<double>() * m.at("time/train").to_number<double>() ==
          doctest::Approx(2 * tokens).epsilon(1e-6));
  }

  CHECK(fs::exists(dir / "run" / "config.toml"));
  CHECK(fs::exists(dir / "run" / "checkpoints" / "step-000002" / "model.safetensors"));
  CausalLM m = load_pretrained(s.model_dir, at::TensorOptions().dtype(at::kFloat));
  CausalLM base = load_pretrained(c.model.path, at::TensorOptions().dtype(at::kFloat));
  CHECK_FALSE(m->model->norm->weight.equal(base->model->norm->weight));  // training changed the weights
}

TEST_CASE("train: dynamic sampling drops groups whose rewards agree; lag 1 overlaps rollouts") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-dyn";
  fs::remove_all(dir);
  RunConfig c = small_config(dir);
  c.grpo.dynamic_sampling = true;
  c.grpo.max_refill_rounds = 1;
  c.eval.path = "";
  train(c, {.run_dir = dir / "run", .progress = false});
  auto metrics = read_jsonl(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 2);
  // An untrained model gets every math reward wrong, so groups agree and are dropped (2 + 2 refilled).
  CHECK(metrics[0].at("dropped_groups").to_number<double>() == 4);

  c.grpo.dynamic_sampling = false;
  c.rollout.max_policy_lag = 1;
  train(c, {.run_dir = dir / "run-lag", .progress = false});
  metrics = read_jsonl(dir / "run-lag" / "metrics.jsonl");
  REQUIRE(metrics.size() == 2);
  CHECK(metrics[0].at("policy_lag").to_number<double>() == 0);                     // step 1 uses the initial weights
  CHECK(metrics[1].at("policy_lag").to_number<double>() == doctest::Approx(1.0));  // prefetched during step 1
  // Generation speed is over the time spent generating, not the (near zero) wait for prefetched groups.
  for (const auto& m : metrics) {
    const double tokens = m.at("length/mean").to_number<double>() * 2 * 4;  // 2 prompts x 4 samples
    const double secs = std::max(m.at("time/rollout").to_number<double>(), m.at("time/generate").to_number<double>());
    CHECK(m.at("time/generate").to_number<double>() > 0);
    CHECK(m.at("tokens_per_s/gen").to_number<double>() == doctest::Approx(tokens / secs).epsilon(1e-6));
  }
}

TEST_CASE("train: bad configs are refused before anything starts") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-bad";
  fs::remove_all(dir);
  auto refused = [&](RunConfig c, const std::string& why) {
    CAPTURE(why);
    CHECK_THROWS_WITH_AS(train(c, {.run_dir = dir / "run", .progress = false}), doctest::Contains(why.c_str()),
                         r1::ConfigError);
    CHECK_FALSE(fs::exists(dir / "run"));  // nothing was created
  };
  RunConfig c = small_config(dir);
  c.rewards.lint = rewards::LintMode::error;  // the lint's findings stop the run before anything is made
  refused(c, "reward lint failed");
  c.rewards.checkers[1].format.emplace().think_prefilled = true;  // the template opens <think>
  refused(c, "FAIL prompt echoed");                               // math without an anchor still pays the echo
  c = small_config(dir);
  c.sampling.temperature = 0;
  refused(c, "temperature must be > 0");
  c = small_config(dir);
  c.rollout.group_size = 1;
  refused(c, "group_size");
  c = small_config(dir);
  c.rewards.checkers.clear();
  refused(c, "no [[rewards.checkers]]");
  c = small_config(dir);
  c.train.accuracy_part = "correctness";
  refused(c, "train.accuracy_part: 'correctness' is not a reward part; the parts are: math, format");
  c = small_config(dir);
  c.rewards.checkers[1].math.emplace();  // math options on the format entry, at their defaults
  refused(c, "options for checker \"math\" given, but this entry's checker is 'format'");
  c = small_config(dir);
  c.rewards.checkers[0].checker = "maths";
  refused(c, "unknown checker 'maths' (did you mean 'math'?)");
  c = small_config(dir);
  c.data.prompt_template = "User: {problem}";
  refused(c, "prompt_template uses {problem}");
  c = small_config(dir);
  c.eval.path = (dir / "missing.jsonl").string();
  refused(c, "eval.path: dataset");
  c = small_config(dir);
  c.model.path = (dir / "no-model").string();
  refused(c, "model.path:");
}

TEST_CASE("train: old_logprobs = recompute uses the weights that sampled each group, also with max_policy_lag = 1") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-recompute";
  fs::remove_all(dir);
  RunConfig c = small_config(dir);
  c.eval.path = "";
  c.rewards.checkers = length_reward();
  c.train.steps = 3;
  c.train.old_logprobs = OldLogprobs::recompute;
  c.rollout.max_policy_lag = 1;
  train(c, {.run_dir = dir / "lag", .progress = false});
  auto metrics = read_jsonl(dir / "lag" / "metrics.jsonl");
  REQUIRE(metrics.size() == 3);
  CHECK(metrics[2].at("policy_lag").to_number<double>() == doctest::Approx(1.0));  // sampled one version back
  for (const auto& m : metrics) {
    // Recomputed with the sampling weights, the old log-probs are the sampler's up to numerics; with
    // the current weights they would differ by what a step at lr 1e-3 moved them.
    CHECK(m.at("mismatch/logprob_abs_max").to_number<double>() < 1e-4);
  }
  // From step 2 on the policy is a version past the sampler: a real importance ratio.
  CHECK(std::abs(metrics[2].at("ratio/mean").to_number<double>() - 1.0) > 1e-4);

  // Without lag, recomputing changes nothing but rounding: the weights after one step match the
  // sampler's log-probs run.
  c.train.steps = 1;
  c.rollout.max_policy_lag = 0;
  // A penalty ramp over the lengths step 1 samples (8 tokens, ~20-40 chars), so its groups have a signal.
  c.rewards.checkers[0].length->max_length = 40;
  c.rewards.checkers[0].length->cache_length = 30;
  train(c, {.run_dir = dir / "recompute", .progress = false});
  c.train.old_logprobs = OldLogprobs::rollout;
  train(c, {.run_dir = dir / "rollout", .progress = false});
  SafetensorsReader a(dir / "recompute" / "model"), b(dir / "rollout" / "model"), base(c.model.path);
  double worst = 0, moved = 0;
  for (const auto& [name, e] : a.entries()) {
    worst = std::max(worst, (a.get(name) - b.get(name)).abs().max().item<double>());
    moved = std::max(moved, (b.get(name) - base.get(name)).abs().max().item<double>());
  }
  // AdamW's first step moves each weight by about lr = 1e-3 whatever its gradient's size, so
  // rounding in gradients near zero shows up at 1e-5; a difference of method would be ~lr.
  CHECK(worst < 1e-4);
  CHECK(moved > 5e-4);
}

TEST_CASE("train: mask_truncated leaves completions cut at max_new_tokens out of the loss") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-mask";
  fs::remove_all(dir);
  RunConfig c = small_config(dir);
  c.eval.path = "";
  c.train.steps = 1;
  c.train.weight_decay = 0;
  c.sampling.max_new_tokens = 3;
  c.sampling.ignore_eos = true;  // every completion runs to the budget
  c.grpo.mask_truncated = true;
  c.rewards.checkers = length_reward();  // rewards that differ within a group: non-zero advantages
  train(c, {.run_dir = dir / "masked", .progress = false});
  auto samples = read_jsonl(dir / "masked" / "samples.jsonl");
  REQUIRE(samples.size() == 8);
  for (const auto& x : samples) {
    CHECK(x.at("finish_reason").as_string() == "length");
    CHECK(x.at("counted").as_bool() == false);
  }
  CausalLM base = load_pretrained(c.model.path, at::TensorOptions().dtype(at::kFloat));
  CausalLM masked = load_pretrained(dir / "masked" / "model", at::TensorOptions().dtype(at::kFloat));
  CHECK(masked->model->norm->weight.equal(base->model->norm->weight));  // no token counted: no update

  c.grpo.mask_truncated = false;
  train(c, {.run_dir = dir / "unmasked", .progress = false});
  CausalLM unmasked = load_pretrained(dir / "unmasked" / "model", at::TensorOptions().dtype(at::kFloat));
  CHECK_FALSE(unmasked->model->norm->weight.equal(base->model->norm->weight));
}

TEST_CASE("train: linear warmup then cosine decay, as logged") {
  TrainOptions t;
  t.lr = 1.0;
  t.steps = 10;
  t.warmup_steps = 2;
  t.lr_schedule = LrSchedule::cosine;
  t.min_lr_ratio = 0.1;
  CHECK(lr_at(t, 0) == doctest::Approx(0.5));
  CHECK(lr_at(t, 1) == doctest::Approx(1.0));
  CHECK(lr_at(t, 2) == doctest::Approx(1.0));              // cosine starts at the peak
  CHECK(lr_at(t, 6) == doctest::Approx(0.1 + 0.9 * 0.5));  // half way
  CHECK(lr_at(t, 9) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 7.0 / 8.0))));
  CHECK(lr_at(t, 10) == doctest::Approx(0.1));  // the floor
  t.lr_schedule = LrSchedule::constant;
  CHECK(lr_at(t, 9) == doctest::Approx(1.0));

  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-lr";
  fs::remove_all(dir);
  RunConfig c = small_config(dir);
  c.eval.path = "";
  c.train.steps = 4;
  c.train.lr = 1e-3;
  c.train.warmup_steps = 2;
  c.train.lr_schedule = LrSchedule::cosine;
  c.train.log_samples_every = 2;
  train(c, {.run_dir = dir / "run", .progress = false});
  auto metrics = read_jsonl(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 4);
  for (int64_t i = 0; i < 4; ++i) CHECK(metrics[i].at("lr").to_number<double>() == doctest::Approx(lr_at(c.train, i)));
  // log_samples_every = 2: the completions of steps 1 and 3.
  std::set<int64_t> logged;
  for (const auto& x : read_jsonl(dir / "run" / "samples.jsonl")) logged.insert(x.at("step").as_int64());
  CHECK(logged == std::set<int64_t>{1, 3});
}

namespace {

ScoredGroup group_with(std::vector<double> rewards, int64_t version) {
  ScoredGroup g;
  g.policy_version = version;
  g.prompt_ids = {1, 2};
  for (double r : rewards) {
    Completion c;
    c.tokens = {3, 4, 5};
    c.logprobs = {-1, -1, -1};
    c.finish_reason = FinishReason::stop;
    g.completions.push_back(c);
    g.rewards.push_back(r);
    g.reward_parts.push_back({{"p", r}});
    g.reward_reasons.push_back("");
    g.correct.push_back(r >= 1);
  }
  return g;
}

}  // namespace

TEST_CASE("dynamic sampling: reward/mean and accuracy cover every generated group, kept/* the kept ones") {
  std::vector<std::vector<ScoredGroup>> batches = {{group_with({1, 1, 1, 1}, 0), group_with({0, 1, 0, 1}, 0)},
                                                   {group_with({0, 0, 0, 0}, 0)},
                                                   {group_with({1, 0, 0, 0}, 0)}};
  size_t next = 0;
  int64_t requested = 0;
  GroupSource source{[&](int64_t n) {
                       REQUIRE(next < batches.size());
                       CHECK(static_cast<int64_t>(batches[next].size()) == n);
                       return batches[next++];
                     },
                     [&](int64_t n) { requested += n; }};
  GrpoOptions o;
  o.dynamic_sampling = true;
  o.max_refill_rounds = 4;
  StepMetrics m;
  StepGroups g = collect_groups(source, 2, o, /*version=*/1, m);
  CHECK(g.generated == 4);
  CHECK(requested == 2);  // two refills of one group
  REQUIRE(g.kept.size() == 2);
  auto line = m.to_json(1);
  CHECK(line.at("reward/mean").to_number<double>() == doctest::Approx(7.0 / 16));  // all 16 completions
  CHECK(line.at("accuracy").to_number<double>() == doctest::Approx(7.0 / 16));
  CHECK(line.at("kept/reward/mean").to_number<double>() == doctest::Approx(3.0 / 8));  // the two kept groups
  CHECK(line.at("kept/accuracy").to_number<double>() == doctest::Approx(3.0 / 8));
  CHECK(line.at("zero_std_frac").to_number<double>() == doctest::Approx(0.5));
  CHECK(line.at("dropped_groups").to_number<double>() == 2);
  CHECK(line.at("policy_lag").to_number<double>() == 1);
  CHECK(line.at("reward/p/mean").to_number<double>() == doctest::Approx(7.0 / 16));

  o.dynamic_sampling = false;  // without it nothing is dropped and kept/* is not logged
  next = 0;
  StepMetrics plain;
  collect_groups(source, 2, o, 0, plain);
  CHECK_FALSE(plain.to_json(1).contains("kept/reward/mean"));
  CHECK(plain.to_json(1).at("dropped_groups").to_number<double>() == 0);
}

TEST_CASE("checkpoints: every temp folder an interrupted save left is removed and reported") {
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "train-temps";
  fs::remove_all(dir);
  for (const char* t : {".step-000003.tmp123", "..step-000003.tmp123.saving456", ".step-000002.tmp9.old7"})
    fs::create_directories(dir / "checkpoints" / t / "x");
  std::vector<std::string> skipped;
  CHECK_FALSE(find_checkpoint(dir, &skipped).has_value());
  CHECK(skipped.size() == 3);
  for (const auto& why : skipped) CHECK(why.find("a save that was interrupted") != std::string::npos);
  CHECK(fs::is_empty(dir / "checkpoints"));
}

TEST_CASE("docs/CURVES.md documents every metric a step logs") {
  std::ifstream in(test::source_dir() / "docs" / "CURVES.md");
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& m : step_metric_docs())
    CHECK_MESSAGE(doc.find(std::string("`") + m.key + "`") != std::string::npos, m.key);
}
