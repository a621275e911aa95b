// The memory plan of a training run: the expected peak memory per device, by component, from the
// run config, the model's config.json and the longest prompt, before anything is loaded; and the
// check that refuses a run whose plan exceeds the device's memory or [model] memory_limit_gb.
// Peak = what lives all run (weights, masters, gradients, optimizer, copies) + the larger of the
// rollout phase (KV cache, logits) and the training phase (activations at the longest sequence,
// logit chunks); with max_policy_lag >= 1 the two phases overlap, so both count. Under ZeRO the
// sharded parts are this rank's 1/W (rl/zero.hpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "policy/model_config.hpp"
#include "rl/run_config.hpp"

namespace r1 {

// When a part is alive: all run, or only while generating or while training.
enum class MemoryPhase { resident, rollout, training };

struct MemoryPart {
  std::string name;  // "weights", "activations", ...
  double bytes = 0;
  std::string detail;   // how it was counted
  std::string setting;  // the setting that shrinks it ("" if none)
  MemoryPhase phase = MemoryPhase::resident;
};

struct MemoryPlan {
  std::vector<MemoryPart> parts;
  double peak = 0;   // bytes: the resident parts plus the phases as they overlap
  double limit = 0;  // bytes the run may use (0: unknown, nothing refused)
  std::string limit_source;
  int64_t params = 0;
  int64_t adapter_params = 0;  // LoRA adapters' parameters ([lora] rank > 0)
};

// What the plan needs besides the config: the architecture and the longest tokenized prompt.
struct PlanInputs {
  ModelConfig model;
  int64_t longest_prompt = 0;   // tokens, over the training records (and the eval records)
  int64_t tokenizer_bytes = 0;  // size of tokenizer.json
  int64_t world_size = 1;       // ranks ZeRO shards over (WORLD_SIZE or SLURM_NTASKS)
};

// Reads config.json and tokenizer.json, tokenizes every prompt of the data (and eval) file, and
// takes the world size from the launcher's environment.
PlanInputs plan_inputs(const RunConfig& cfg);
int64_t parameter_count(const ModelConfig& m);
int64_t adapter_parameter_count(const ModelConfig& m, const LoraOptions& o);  // 0 without LoRA
MemoryPlan plan_memory(const RunConfig& cfg, const PlanInputs& in);
// The plan as a table, largest first, with the peak and the limit.
std::string describe(const MemoryPlan& plan);
// Throws ConfigError naming the largest parts and the settings that shrink them when the peak is
// over the limit.
void check_memory(const MemoryPlan& plan);

}  // namespace r1
