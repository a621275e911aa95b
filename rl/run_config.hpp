// The run config: one TOML file with a section per component. Each section's struct is declared
// once by its component; this struct only composes them.
#pragma once
#include "common/config_fields.hpp"
#include "policy/options.hpp"
#include "rewards/options.hpp"
#include "rewards/sandbox/options.hpp"
#include "rl/options.hpp"
#include "rollout/options.hpp"

namespace r1 {

struct RunOptions {
#define R1_RUN_FIELDS(F)                                                                                   \
  F(std::string, name, "r1-run", "run name: the run directory is out_dir/name", !x.empty())                \
  F(std::string, out_dir, "runs", "folder that holds run directories", !x.empty())                         \
  F(int64_t, seed, 1234, "seed for every random choice of the run", x >= 0)                                \
  F(bool, tensorboard, true,                                                                               \
    "also write TensorBoard event files in the run directory: every metric, a few completions per logged " \
    "step, the config",                                                                                    \
    true)
  R1_CONFIG(RunOptions, R1_RUN_FIELDS)
};

struct RunConfig {
#define R1_RUNCONFIG_FIELDS(F)                                                                                  \
  F(RunOptions, run, {}, "Run identity and reproducibility", true)                                              \
  F(PolicyOptions, model, {}, "The policy model", true)                                                         \
  F(LoraOptions, lora, {}, "LoRA adapters trained instead of the full weights", true)                           \
  F(DatasetOptions, data, {}, "Prompts: JSONL records and the prompt template", true)                           \
  F(SamplingOptions, sampling, {}, "Sampling of completions", true)                                             \
  F(RolloutOptions, rollout, {}, "Rollout workers and groups", true)                                            \
  F(rewards::RewardsConfig, rewards, {}, "Reward checkers and their weights", true)                             \
  F(sandbox::SandboxOptions, sandbox, {}, "The sandbox the code checker runs programs in", true)                \
  F(GrpoOptions, grpo, {}, "The GRPO-family objective", true)                                                   \
  F(TrainOptions, train, {}, "Optimisation and the training loop", true)                                        \
  F(EvalConfig, eval, {}, "Held-out evaluation during training", true)                                          \
  F(DistributedOptions, distributed, {}, "Data parallelism across processes (r1 launch, torchrun, srun)", true) \
  F(GuardOptions, guard, {}, "Guardrails: rules over the logged metrics that warn, stop or roll back", true)
  R1_CONFIG(RunConfig, R1_RUNCONFIG_FIELDS)
  // The reward part that defines a correct completion: [train] accuracy_part, else the first part.
  std::string accuracy_part() const {
    if (!train.accuracy_part.empty() || rewards.checkers.empty()) return train.accuracy_part;
    return rewards.checkers[0].part_name();
  }
};

}  // namespace r1
