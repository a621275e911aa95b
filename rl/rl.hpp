// rl/: owns the GRPO objective and its variants (DAPO, Dr. GRPO, GSPO, RLOO, KL k1/k2/k3) and the
// training loop around it. loss.hpp (advantages and the loss), batch.hpp (a step's groups,
// dynamic sampling, sequences), update.hpp (the policy update and log-prob passes),
// step_metrics.hpp (what a step logs), trainer.hpp (the loop of named phases), run_checks.hpp
// (every config check before a run starts), checkpoint.hpp and resume.hpp (exact resume),
// distributed.hpp (data parallelism over c10d), eval.hpp (pass@k, maj@k), progress.hpp and
// pretrain.hpp (the demo's tiny base model). Depends on rollout/ and rewards/.
#pragma once
#include "rl/batch.hpp"
#include "rl/checkpoint.hpp"
#include "rl/distributed.hpp"
#include "rl/eval.hpp"
#include "rl/loss.hpp"
#include "rl/resume.hpp"
#include "rl/run_checks.hpp"
#include "rl/step_metrics.hpp"
#include "rl/trainer.hpp"
#include "rl/update.hpp"
