// The reward lint of a run (rewards/lint.hpp) on prompts of its own training data: what `r1 train`
// runs before step 1 and `r1 rewards lint --config FILE` runs alone.
#pragma once
#include "rewards/lint.hpp"
#include "rl/run_config.hpp"

namespace r1 {

// The first [rewards] lint_probes records of [data], each with the gold answer of its first
// reference field.
std::vector<rewards::LintProbe> lint_probes(const RunConfig& cfg);

rewards::LintReport lint_run_rewards(const RunConfig& cfg, rewards::RewardBackend& backend);

// As [rewards] lint says: error throws ConfigError with the report when a check fails (nothing has
// been generated or written yet), warn prints it to stderr, off does nothing. `quiet`: print only
// a failure.
void apply_reward_lint(const RunConfig& cfg, rewards::RewardBackend& backend, bool quiet);

}  // namespace r1
