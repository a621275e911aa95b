// Evaluation: k samples per prompt, scored by the reward checkers, summarised as pass@1, pass@k
// (the unbiased estimator of Chen et al. 2021), maj@k (majority vote over extracted answers) and
// completion length. Used by `r1 eval` and the trainer's periodic eval.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "rewards/scorer.hpp"
#include "rollout/dataset.hpp"
#include "rollout/engine.hpp"

namespace r1 {

struct EvalOptions {
  int64_t samples = 1;           // k
  double pass_threshold = 1.0;   // a sample is correct when its score >= this
  int64_t prompts_per_batch = 8;
};

struct EvalSample {
  int64_t prompt = 0, sample = 0;
  std::string completion;
  int64_t tokens = 0;
  std::string finish_reason;
  rewards::Scored scored;
  std::string answer;  // the first part's reason: the extracted answer for math/countdown
  bool correct = false;
};

struct EvalReport {
  int64_t prompts = 0, samples = 0;
  double pass_at_1 = 0, pass_at_k = 0, maj_at_k = 0;
  double mean_score = 0, mean_length = 0, truncated = 0;
  double seconds = 0, tokens_per_second = 0;
};

// Unbiased pass@k for n samples of which c are correct: 1 - C(n-c, k) / C(n, k).
double pass_at_k(int64_t n, int64_t c, int64_t k);

EvalReport evaluate(Engine& engine, const Tokenizer& tokenizer, const std::vector<PromptRecord>& prompts,
                    rewards::Scorer& scorer, const SamplingOptions& sampling, const EvalOptions& options,
                    const std::function<void(const EvalSample&)>& on_sample = {},
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace r1
