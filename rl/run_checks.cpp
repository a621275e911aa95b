#include "rl/run_checks.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "policy/model_config.hpp"
#include "rewards/backend.hpp"
#include "rl/memory_plan.hpp"
#include "rollout/dataset.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

void check_model(const PolicyOptions& m) {
  const fs::path dir = m.model_dir();
  if (!fs::is_directory(dir))
    fail("model.path: {} is not a folder (expected config.json and *.safetensors)", dir.string());
  if (!fs::exists(dir / "config.json") && fs::exists(dir / "adapter_config.json"))
    fail(
        "model.path: {} is a PEFT adapter folder; train on its base model with [lora], continue its run with r1 "
        "train --resume RUN_DIR --set train.steps=N, or merge it first with r1 export --merge-lora",
        dir.string());
  if (!fs::exists(dir / "config.json")) fail("model.path: {} has no config.json", dir.string());
  ModelConfig::from_file(dir / "config.json");
  if (!fs::exists(dir / "tokenizer.json")) fail("model.path: {} has no tokenizer.json", dir.string());
}

void check_objective(const RunConfig& cfg) {
  R1_CHECK(cfg.sampling.temperature > 0, "sampling.temperature must be > 0 for training (GRPO needs samples)");
  R1_CHECK(cfg.rollout.group_size >= 2, "rollout.group_size must be >= 2: advantages compare completions of a prompt");
  R1_CHECK(cfg.rollout.group_size <= cfg.rollout.max_batch, "rollout.group_size {} exceeds rollout.max_batch {}",
           cfg.rollout.group_size, cfg.rollout.max_batch);
}

// The precision rules: AdamW never updates bf16 or fp16 weights in place (updates below 2^-8 of a
// weight round away, and fp16 overflows without loss scaling).
void check_precision(const RunConfig& cfg) {
  const Dtype d = cfg.model.dtype;
  R1_CHECK(d != Dtype::float16,
           "model.dtype = \"float16\" cannot be trained: without loss scaling its gradients overflow to inf/NaN; "
           "use model.dtype = \"bfloat16\" with train.precision = \"bf16-mixed\"");
  if (cfg.train.precision == Precision::bf16_mixed)
    R1_CHECK(d == Dtype::bfloat16,
             "train.precision = \"bf16-mixed\" computes in bfloat16: set model.dtype = \"bfloat16\" (the float32 "
             "masters are kept by the trainer)");
  else
    R1_CHECK(d == Dtype::float32,
             "model.dtype = \"bfloat16\" with train.precision = \"fp32\" would let AdamW update bfloat16 weights in "
             "place, where small updates round to nothing: set train.precision = \"bf16-mixed\"");
  R1_CHECK(cfg.grpo.tis_cap == 0 || cfg.train.old_logprobs == OldLogprobs::recompute,
           "grpo.tis_cap needs the trainer's own log-probs of the sampling weights: set train.old_logprobs = "
           "\"recompute\"");
}

void check_accuracy_part(const RunConfig& cfg) {
  const std::vector<std::string> parts = rewards::part_names(cfg.rewards);
  if (std::find(parts.begin(), parts.end(), cfg.accuracy_part()) == parts.end())
    fail(
        "train.accuracy_part: '{}' is not a reward part; the parts are: {} (a part is named by its "
        "[[rewards.checkers]] "
        "entry's name, else its checker)",
        cfg.accuracy_part(), fmt::join(parts, ", "));
}

}  // namespace

// A windowed rule's checkpoint from before the weights the window measured survives rotation when
// (keep_checkpoints - 1) * save_every >= window.
void check_guard_config(const RunConfig& cfg) {
  const GuardOptions& g = cfg.guard;
  const TrainOptions& t = cfg.train;
  struct Rule {
    const char* name;
    GuardAction action;
    int64_t window;  // 0: not bounded by a window (reward_drop's best may be older)
  };
  for (const Rule& r :
       {Rule{"entropy", g.entropy.action, g.entropy.window}, Rule{"length", g.length.action, g.length.window},
        Rule{"kl", g.kl.action, g.kl.window}, Rule{"clip", g.clip.action, g.clip.window},
        Rule{"zero_std", g.zero_std.action, g.zero_std.window}, Rule{"reward_drop", g.reward_drop.action, 0},
        Rule{"mismatch", g.mismatch.action, g.mismatch.window}}) {
    if (r.action != GuardAction::rollback) continue;
    if (t.save_every == 0)
      throw ConfigError(fmt::format(
          "guard.{}.action = \"rollback\" needs checkpoints to roll back to: set [train] save_every (e.g. 1)", r.name));
    const int64_t need = (r.window + t.save_every - 1) / t.save_every + 1;
    if (r.window > 0 && t.keep_checkpoints < need)
      throw ConfigError(fmt::format(
          "guard.{}.action = \"rollback\": a checkpoint from before its {}-step window must still be kept when it "
          "fires; with train.save_every = {} set train.keep_checkpoints to at least {} (it is {})",
          r.name, r.window, t.save_every, need, t.keep_checkpoints));
  }
}

void check_run_config(const RunConfig& cfg) {
  std::vector<std::string> problems;
  auto check = [&](const char* what, const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      problems.push_back(fmt::format("{}{}", what, e.what()));
    }
  };
  check("", [&] { check_objective(cfg); });
  check("", [&] { check_precision(cfg); });
  check("", [&] { check_guard_config(cfg); });
  check("", [&] { rewards::check_rewards_config(cfg.rewards); });
  if (!cfg.rewards.checkers.empty()) check("", [&] { check_accuracy_part(cfg); });
  check("", [&] { check_model(cfg.model); });
  check("data.path: ", [&] { check_first_record(cfg.data); });
  if (!cfg.eval.path.empty()) {
    DatasetOptions eo = cfg.data;  // the eval records fill the same template
    eo.path = cfg.eval.path;
    check("eval.path: ", [&] { check_first_record(eo); });
  }
  // Last, as it reads the model's config and every prompt: the run must fit the device.
  if (problems.empty()) check("", [&] { check_memory(plan_memory(cfg, plan_inputs(cfg))); });
  if (problems.empty()) return;
  std::string all =
      problems.size() == 1 ? "config error: " + problems[0] : fmt::format("{} config errors:", problems.size());
  if (problems.size() > 1)
    for (const auto& p : problems) all += "\n  " + p;
  throw ConfigError(all);
}

}  // namespace r1
