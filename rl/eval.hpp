// Evaluation: k samples per prompt, scored through a reward backend, summarised as pass@1, pass@k
// (the unbiased estimator of Chen et al. 2021), maj@k (majority vote over the checkers' normalized
// answers), each reward part's mean score and completion length. A sample is correct by the one
// definition every report uses (rewards::is_correct on `accuracy_part`). Used by `r1 eval` and the
// trainer's periodic eval.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "rewards/scorer.hpp"
#include "rollout/dataset.hpp"
#include "rollout/engine.hpp"

namespace r1 {

struct EvalOptions {
  int64_t samples = 1;        // k
  std::string accuracy_part;  // the reward part whose score >= 1 makes a sample correct
  int64_t prompts_per_batch = 8;
};

struct EvalSample {
  int64_t prompt = 0, sample = 0;
  std::string completion;
  int64_t tokens = 0;
  FinishReason finish_reason = FinishReason::length;
  rewards::Scored scored;
  std::string answer;  // the accuracy part's normalized answer ("" when it found none)
  bool correct = false;
};

struct EvalReport {
  int64_t prompts = 0, samples = 0;
  double pass_at_1 = 0, pass_at_k = 0, maj_at_k = 0;
  double mean_score = 0, mean_length = 0, truncated = 0;
  std::map<std::string, double> part_means;  // each reward part's mean score
  double seconds = 0, tokens_per_second = 0;
};

// Unbiased pass@k for n samples of which c are correct: 1 - C(n-c, k) / C(n, k).
double pass_at_k(int64_t n, int64_t c, int64_t k);

// Majority vote: the most common non-empty answer (ties: the lexicographically first) and whether
// its samples are correct; false when no sample gave an answer.
bool majority_correct(const std::vector<EvalSample>& samples);

EvalReport evaluate(Engine& engine, const Tokenizer& tokenizer, const std::vector<PromptRecord>& prompts,
                    rewards::RewardBackend& rewards, const SamplingOptions& sampling, const EvalOptions& options,
                    const std::function<void(const EvalSample&)>& on_sample = {},
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace r1
