// The GRPO training loop: rollout workers -> rewards -> advantages -> clipped-surrogate updates ->
// weight sync to the workers -> metrics and samples in the run directory -> periodic greedy eval
// and Hugging Face checkpoints. Rank and world size are part of the API: prompts are sharded by
// rank, and loss normalisers are step-wide totals, so data parallelism slots in without changing
// the objective.
#pragma once
#include <filesystem>
#include <functional>
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

struct EvalScore {
  double accuracy = -1, format = -1, mean_length = 0;  // -1: not measured
};

struct TrainSummary {
  int64_t steps = 0;
  EvalScore before, after;
  std::filesystem::path run_dir, model_dir;
  double seconds = 0;
};

TrainSummary train(const RunConfig& config, const TrainerSetup& setup = {});

}  // namespace r1
