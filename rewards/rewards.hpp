// rewards/: rule-based rewards for R1-Zero-style RL, without LibTorch. It owns
//   - the checker interface and registry (checker.hpp, scorer.hpp),
//   - the typed [rewards] config (options.hpp),
//   - the built-in checkers: format, math, countdown, length (builtin.hpp, math.hpp), and code in
//     a real sandbox (sandbox/),
//   - plugins: shared libraries through plugin_abi.h and external JSONL commands (plugins.hpp),
//   - the scorer: a thread pool with signal-free deadlines, and JSONL scoring for the CLI,
//   - the HTTP reward service and its client (service/),
//   - backend.hpp: the one factory that assembles all of it for a run.
// docs/REWARDS.md documents behaviour, options and protocols.
#pragma once
#include "rewards/builtin.hpp"
#include "rewards/checker.hpp"
#include "rewards/math.hpp"
#include "rewards/options.hpp"
#include "rewards/plugins.hpp"
#include "rewards/scorer.hpp"
