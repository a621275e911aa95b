// Every check `r1 train` makes of a run config before it starts anything, and `r1 config check`
// makes the same: the objective's preconditions, the rewards (rewards::check_rewards_config: kinds,
// options tables, plugins, commands), the accuracy part, the guard's rollbacks, the model folder (config.json parses,
// tokenizer.json is there), and the data and eval files (the first record fills the prompt
// template and has the reference fields), and the memory plan (rl/memory_plan.hpp: the run fits
// the device or [model] memory_limit_gb). Nothing here loads weights, a plugin or a process.
#pragma once
#include "rl/run_config.hpp"

namespace r1 {

// Throws ConfigError listing every problem found.
void check_run_config(const RunConfig& cfg);

// The [guard] part: a rule that rolls back needs checkpoints saved, and kept long enough that one
// from before its window survives rotation. Throws ConfigError.
void check_guard_config(const RunConfig& cfg);

}  // namespace r1
