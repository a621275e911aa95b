// The GRPO training loop. Each step runs named phases (rl/trainer.cpp):
//   collect groups (rollout workers, rewards, dynamic sampling) -> advantages -> old and reference
//   log-probs -> policy update -> weight publish -> metrics -> eval -> guardrails (rl/guard.hpp:
//   warn, stop, or roll back to an earlier checkpoint) -> checkpoint.
// Rank and world size are part of the API: prompts are sharded by rank, and loss normalisers are
// step-wide totals, so data parallelism gives the same objective as one big batch. Every check of
// the config (rl/run_checks.hpp) runs before anything is created.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "rl/distributed.hpp"
#include "rl/run_config.hpp"

namespace r1 {

struct TrainerSetup {
  std::filesystem::path run_dir;  // empty: run.out_dir / run.name
  LaunchEnv launch;               // rank and world size (LaunchEnv::from_environment() in r1 train)
  bool progress = true;           // live progress line on stderr
  bool resume = false;            // continue run_dir from its newest good checkpoint
};

// A held-out greedy eval.
struct EvalScore {
  double accuracy = -1;  // share of prompts whose completion is correct; -1: not measured
  double mean_length = 0;
  int64_t prompts_per_rank = 0;                 // the most prompts one rank generated (the eval is sharded)
  std::map<std::string, double> parts;          // each reward part's mean score
  double part(const std::string& name) const {  // -1 when that part is not configured
    auto it = parts.find(name);
    return it == parts.end() ? -1.0 : it->second;
  }
};

struct TrainSummary {
  int64_t steps = 0;
  EvalScore before, after;
  std::filesystem::path run_dir, model_dir;
  double seconds = 0;
};

TrainSummary train(const RunConfig& config, const TrainerSetup& setup = {});

}  // namespace r1
