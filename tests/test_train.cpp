// The GRPO loop end to end on the tiny fixture model: every metric the issue asks for is logged
// per step, samples and checkpoints are written, KL/μ/minibatch/dynamic-sampling paths run, and
// config mistakes are refused before anything starts.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "rl/trainer.hpp"
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
  c.grpo.kl_coef = 0.05;         // keeps a reference model
  c.grpo.entropy_coef = 0.001;
  c.train.inner_epochs = 2;      // mu = 2 against stored old log-probs
  c.train.minibatches = 2;
  TrainSummary s = train(c, {.run_dir = dir / "run", .progress = false});
  CHECK(s.steps == 2);
  CHECK(s.before.accuracy >= 0);
  CHECK(s.after.accuracy >= 0);

  auto metrics = read_jsonl(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 3);  // the pre-training eval line, then one per step
  CHECK(metrics[0].contains("eval/accuracy"));
  for (const char* key : {"reward/mean", "reward/std", "reward/math/mean", "reward/format/mean", "accuracy",
                          "zero_std_frac", "length/mean", "length/max", "truncated", "kl", "entropy", "clip/low",
                          "clip/high", "grad_norm", "lr", "tokens_per_s/gen", "tokens_per_s/train", "time/rollout",
                          "time/reward", "time/train", "time/sync", "policy_lag"}) {
    CAPTURE(key);
    CHECK(metrics[1].contains(key));
    CHECK(metrics[2].contains(key));
  }
  CHECK(metrics[2].at("step").as_int64() == 2);
  CHECK(metrics[2].contains("eval/accuracy"));  // the last step always evaluates
  CHECK(metrics[1].at("entropy").to_number<double>() > 0);
  CHECK(metrics[1].at("policy_lag").to_number<double>() == 0);  // on-policy

  auto samples = read_jsonl(dir / "run" / "samples.jsonl");
  CHECK(samples.size() == 2 * 2 * 4);
  CHECK(samples[0].contains("parts"));
  CHECK(samples[0].contains("completion"));

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
  CHECK(metrics[0].at("policy_lag").to_number<double>() == 0);  // step 1 uses the initial weights
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
  RunConfig c = small_config(dir);
  c.sampling.temperature = 0;
  CHECK_THROWS_WITH_AS(train(c, {.run_dir = dir / "run"}), doctest::Contains("temperature must be > 0"), r1::Error);
  c = small_config(dir);
  c.rollout.group_size = 1;
  CHECK_THROWS_WITH_AS(train(c, {.run_dir = dir / "run"}), doctest::Contains("group_size"), r1::Error);
  c = small_config(dir);
  c.rewards.checkers.clear();
  CHECK_THROWS_WITH_AS(train(c, {.run_dir = dir / "run"}), doctest::Contains("no [[rewards.checkers]]"), r1::Error);
}
