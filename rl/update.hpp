// The policy update of one step: μ passes over the step's sequences, each split into minibatch
// optimizer updates accumulated over micro-batches (each distinct prompt of a micro-batch runs
// once), the GRPO-family loss with step-wide normalisers, the overlapped gradient all-reduce, and
// global grad-norm clipping, the non-finite guard (an update whose all-reduced gradient norm is
// not finite is skipped on every rank alike), and the sampler/trainer correction (tis_cap). The
// optimizer updates TrainWeights (rl/precision.hpp): the policy itself, its float32 masters, or
// this rank's ZeRO chunks of them; TrainWeights also sums the gradients over ranks.
// Also the no-gradient log-prob passes (recomputed old log-probs, the reference's) and the
// learning-rate schedule.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "policy/model.hpp"
#include "policy/tokenizer.hpp"
#include "rl/loss.hpp"
#include "rl/options.hpp"
#include "rl/precision.hpp"
#include "rl/step_metrics.hpp"

namespace torch::optim {
class AdamW;
}

namespace r1 {

class Distributed;

// One completion as the trainer sees it.
struct Sequence {
  std::vector<TokenId> ids;  // prompt + completion
  int64_t prompt_len = 0, comp_len = 0;
  int64_t group = 0;                    // the step's group: sequences of one group share their prompt
  int64_t policy_version = 0;           // the weights that sampled it
  std::vector<float> sampler_logprobs;  // [comp_len] recorded by the rollout worker
  std::vector<float> old_logprobs;      // [comp_len] the ratio's denominator (sampler's or recomputed)
  std::vector<float> ref_logprobs;      // [comp_len] the frozen reference's (kl_coef > 0)
  double advantage = 0;
  bool counted = true;  // false when masked out of the loss (truncated and mask_truncated)
};

// Warmup then constant or cosine: the learning rate of step `step` (0-based).
double lr_at(const TrainOptions& t, int64_t step);

// Which log-probs a no-gradient pass fills.
enum class LogprobSlot { old, ref };

// Fills `slot` of each sequence with `model`'s log-probs, `micro` sequences per forward.
void score_logprobs(CausalLM& model, const std::vector<Sequence*>& seqs, double temperature, int64_t micro,
                    LogprobSlot slot);

struct UpdateSettings {
  const GrpoOptions& grpo;
  const TrainOptions& train;
  double temperature = 1.0;
  int64_t max_new_tokens = 0;  // Dr. GRPO's normaliser
  bool old_is_sampler = true;  // old log-probs are the sampler's: measure the mismatch in the first update
  int64_t step = 0, rank = 0;  // where the update runs (the test seam's nan_grad point)
};

// Optimizer updates skipped for a non-finite gradient norm: in a row (reset by a good update) and
// in all. Outlives the steps; more than [train] max_skipped_steps in a row stops the run.
struct SkipGuard {
  int64_t in_a_row = 0, total = 0;
};

class PolicyUpdate {
 public:
  PolicyUpdate(CausalLM& model, TrainWeights& weights, torch::optim::AdamW& optimizer, Distributed& dist,
               SkipGuard& guard, UpdateSettings settings);

  // Trains on `seqs`, starting from weight version `version`, at learning rate `lr`; the minibatch
  // order comes from `rng`. Feeds the loss, ratio and grad-norm metrics of `m`, and, when the old
  // log-probs are the sampler's, the sampler/trainer mismatch of the sequences that `version`
  // sampled, measured before the step's first update. Returns the tokens that went through forward
  // and backward (every pass counted once).
  double run(const std::vector<Sequence>& seqs, int64_t version, double lr, std::mt19937_64& rng, StepMetrics& m);

 private:
  struct Pass;
  void minibatch(const std::vector<const Sequence*>& mb, Pass& pass);
  void micro_step(const std::vector<const Sequence*>& part, const LossNorm& norm, bool last, Pass& pass);
  void optimizer_step(double grad_norm, Pass& pass);

  CausalLM& model_;
  TrainWeights& weights_;
  torch::optim::AdamW& opt_;
  Distributed& dist_;
  SkipGuard& guard_;
  UpdateSettings s_;
};

}  // namespace r1
