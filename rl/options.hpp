// The typed options of rl/: [grpo] (the objective), [train] (optimisation and the loop), [eval],
// [distributed] and [guard].
// No LibTorch, so run configs can be checked without it.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "common/config_fields.hpp"

namespace r1 {

enum class Advantage { grpo, rloo };
constexpr std::array<const char*, 2> enum_names(Advantage) { return {"grpo", "rloo"}; }
enum class ScaleRewards { group, batch, none };
constexpr std::array<const char*, 3> enum_names(ScaleRewards) { return {"group", "batch", "none"}; }
enum class RatioLevel { token, sequence };
constexpr std::array<const char*, 2> enum_names(RatioLevel) { return {"token", "sequence"}; }
enum class LossAggregation { seq_mean_token_mean, token_mean, seq_mean_token_sum_norm };
constexpr std::array<const char*, 3> enum_names(LossAggregation) {
  return {"seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"};
}
enum class KlEstimator { k1, k2, k3 };
constexpr std::array<const char*, 3> enum_names(KlEstimator) { return {"k1", "k2", "k3"}; }
enum class LrSchedule { constant, cosine };
constexpr std::array<const char*, 2> enum_names(LrSchedule) { return {"constant", "cosine"}; }
enum class OldLogprobs { rollout, recompute };
constexpr std::array<const char*, 2> enum_names(OldLogprobs) { return {"rollout", "recompute"}; }
enum class Precision { fp32, bf16_mixed };
constexpr std::array<const char*, 2> enum_names(Precision) { return {"fp32", "bf16-mixed"}; }
enum class SaveDtype { original, float32, bfloat16 };
constexpr std::array<const char*, 3> enum_names(SaveDtype) { return {"original", "float32", "bfloat16"}; }
enum class TisMode { truncate, mask_token, mask_sequence };
constexpr std::array<const char*, 3> enum_names(TisMode) { return {"truncate", "mask-token", "mask-sequence"}; }
enum class ActivationCheckpointing { none, layers };
constexpr std::array<const char*, 2> enum_names(ActivationCheckpointing) { return {"none", "layers"}; }
enum class DistBackend { automatic, gloo, nccl };
constexpr std::array<const char*, 3> enum_names(DistBackend) { return {"auto", "gloo", "nccl"}; }

struct GrpoOptions {
#define R1_GRPO_FIELDS(F)                                                                                              \
  F(Advantage, advantage, Advantage::grpo,                                                                             \
    "grpo: reward minus the group mean (scaled, see scale_rewards); rloo: reward minus the mean of the "               \
    "other G-1 rewards",                                                                                               \
    true)                                                                                                              \
  F(ScaleRewards, scale_rewards, ScaleRewards::group,                                                                  \
    "grpo advantages divided by the std of the group (GRPO), of the whole batch, or not at all (Dr. GRPO)", true)      \
  F(double, epsilon_low, 0.2, "clip ratio below: 1 - epsilon_low", x >= 0 && x < 1)                                    \
  F(double, epsilon_high, 0.2, "clip ratio above: 1 + epsilon_high (DAPO clip-higher: 0.28)", x >= 0)                  \
  F(double, dual_clip, 0.0, "dual-clip constant c > 1 bounding the loss of negative advantages (0: off)",              \
    x == 0 || x > 1)                                                                                                   \
  F(RatioLevel, ratio_level, RatioLevel::token, "importance ratio per token (GRPO) or per sequence (GSPO)", true)      \
  F(LossAggregation, loss_aggregation, LossAggregation::seq_mean_token_mean,                                           \
    "seq-mean-token-mean (GRPO), token-mean (DAPO), seq-mean-token-sum-norm (Dr. GRPO: / max_new_tokens)", true)       \
  F(double, kl_coef, 0.0, "weight of the KL penalty to the frozen reference (0: no reference model kept)", x >= 0)     \
  F(KlEstimator, kl_estimator, KlEstimator::k3, "KL estimator: k1 (log ratio), k2 (half squared log ratio), k3", true) \
  F(double, entropy_coef, 0.0, "entropy bonus weight (entropy is always logged)", x >= 0)                              \
  F(bool, dynamic_sampling, false, "drop groups whose rewards all agree and refill the batch (DAPO)", true)            \
  F(int64_t, max_refill_rounds, 4, "dynamic sampling: extra generation rounds per step at most", x >= 0)               \
  F(bool, mask_truncated, false, "exclude completions cut at max_new_tokens from the loss", true)                      \
  F(double, tis_cap, 0.0,                                                                                              \
    "off-policy correction between sampler and trainer (C; 0: off): each token's ratio r = pi_trainer/pi_sampler "     \
    "(the recomputed old log-probs against the sampler's) weights the loss as min(r, C), or masks, see tis_mode",      \
    x == 0 || x >= 1)                                                                                                  \
  F(TisMode, tis_mode, TisMode::truncate,                                                                              \
    "truncate: weight min(r, C) (TIS); mask-token: drop tokens with r outside [1/C, C]; mask-sequence: drop "          \
    "sequences whose geometric-mean r is outside [1/C, C]",                                                            \
    true)
  R1_CONFIG(GrpoOptions, R1_GRPO_FIELDS)
};

struct TrainOptions {
#define R1_TRAIN_FIELDS(F)                                                                                          \
  F(int64_t, steps, 100, "training steps (one step = prompts_per_step groups)", x >= 1)                             \
  F(double, lr, 1e-6, "peak learning rate (AdamW)", x > 0 && x < 1)                                                 \
  F(int64_t, warmup_steps, 0, "linear warmup from 0 to lr over this many steps", x >= 0)                            \
  F(LrSchedule, lr_schedule, LrSchedule::constant, "after warmup: constant or cosine (down to min_lr_ratio * lr)",  \
    true)                                                                                                           \
  F(double, min_lr_ratio, 0.0, "cosine floor as a fraction of lr", x >= 0 && x <= 1)                                \
  F(double, weight_decay, 0.0, "AdamW weight decay", x >= 0)                                                        \
  F(double, adam_beta1, 0.9, "AdamW beta1", x >= 0 && x < 1)                                                        \
  F(double, adam_beta2, 0.999, "AdamW beta2", x >= 0 && x < 1)                                                      \
  F(double, adam_eps, 1e-8, "AdamW epsilon", x > 0)                                                                 \
  F(double, max_grad_norm, 1.0, "clip the global gradient norm to this (0: no clipping)", x >= 0)                   \
  F(Precision, precision, Precision::fp32,                                                                          \
    "fp32: float32 weights, gradients and AdamW state; bf16-mixed: bfloat16 forward and backward ([model] dtype "   \
    "= \"bfloat16\") with float32 master weights, gradient accumulation and AdamW moments",                         \
    true)                                                                                                           \
  F(SaveDtype, save_dtype, SaveDtype::original,                                                                     \
    "dtype of saved models and checkpoints' Hugging Face weights: original (the loaded checkpoint's torch_dtype), " \
    "float32 or bfloat16; bf16-mixed checkpoints also keep the float32 masters for an exact resume",                \
    true)                                                                                                           \
  F(int64_t, max_skipped_steps, 3,                                                                                  \
    "optimizer steps skipped in a row for a non-finite gradient norm before the run stops with an error", x >= 1)   \
  F(int64_t, inner_epochs, 1, "mu: passes over each step's samples against the stored old log-probs", x >= 1)       \
  F(int64_t, minibatches, 1, "optimizer updates per pass (the step's samples split evenly)", x >= 1)                \
  F(int64_t, micro_batch, 16, "sequences per forward/backward (gradient accumulation inside a minibatch)", x >= 1)  \
  F(ActivationCheckpointing, activation_checkpointing, ActivationCheckpointing::none,                               \
    "none: backward keeps every decoder layer's activations; layers: checkpointed layers keep only their input "    \
    "and run their forward again in backward (activation memory of one layer instead of all, ~1/3 more compute)",   \
    true)                                                                                                           \
  F(int64_t, checkpoint_every, 1, "with activation_checkpointing = \"layers\": checkpoint layers 0, k, 2k, ...",    \
    x >= 1)                                                                                                         \
  F(OldLogprobs, old_logprobs, OldLogprobs::rollout,                                                                \
    "rollout: use the sampler's log-probs (tested equal to the trainer's forward); recompute: run a forward "       \
    "with the weights that sampled each group",                                                                     \
    true)                                                                                                           \
  F(std::string, accuracy_part, "",                                                                                 \
    "the reward part (a [[rewards.checkers]] name) whose score >= 1 makes a completion correct: training "          \
    "accuracy, eval/accuracy and r1 eval's pass@k all use it; empty: the first part",                               \
    true)                                                                                                           \
  F(int64_t, save_every, 0, "save a Hugging Face checkpoint every N steps (0: only at the end)", x >= 0)            \
  F(int64_t, keep_checkpoints, 2, "checkpoints kept in the run directory", x >= 1)                                  \
  F(int64_t, log_samples_every, 1, "write the step's completions to samples.jsonl every N steps (0: never)", x >= 0)
  R1_CONFIG(TrainOptions, R1_TRAIN_FIELDS)
};

struct EvalConfig {
#define R1_EVAL_FIELDS(F)                                                                                             \
  F(std::string, path, "", "held-out JSONL evaluated greedily before, during and after training (empty: none)", true) \
  F(int64_t, limit, 0, "evaluate the first N records (0: all)", x >= 0)                                               \
  F(int64_t, every, 0, "evaluate every N steps (0: only before and after training)", x >= 0)                          \
  F(int64_t, max_new_tokens, 0, "completion budget at eval (0: as [sampling])", x >= 0)
  R1_CONFIG(EvalConfig, R1_EVAL_FIELDS)
};

struct DistributedOptions {
#define R1_DISTRIBUTED_FIELDS(F)                                                                                 \
  F(DistBackend, backend, DistBackend::automatic, "auto (NCCL for CUDA devices, else Gloo), gloo or nccl", true) \
  F(int64_t, timeout_s, 300, "a collective or rendezvous that takes longer fails the run", x >= 1)               \
  F(int64_t, checksum_every, 10, "compare the weight checksum across ranks every N steps (0: never)", x >= 0)    \
  F(double, bucket_mb, 25,                                                                                       \
    "gradient all-reduce bucket size in MiB; each bucket starts as soon as backward "                            \
    "has produced its gradients, overlapping communication with the rest of backward",                           \
    x > 0)                                                                                                       \
  F(int64_t, zero_stage, 0,                                                                                      \
    "ZeRO sharding over the ranks: 0 none; 1 float32 masters and AdamW moments; 2 also gradients "               \
    "(reduce-scattered during backward); 3 also the compute weights during the update (docs/DISTRIBUTED.md)",    \
    x >= 0 && x <= 3)
  R1_CONFIG(DistributedOptions, R1_DISTRIBUTED_FIELDS)
};

// [guard]: rules over each step's logged metrics (rl/guard.hpp, docs/TRAINING.md "Guardrails").
// A rule's condition is on the mean of its metric over the last `window` logged steps, so no rule
// fires before it has `window` steps; a rule whose metric a run does not log (kl without a
// reference) never fires. A rule fires once when its condition starts to hold and again only after
// it has cleared.
enum class GuardAction { off, warn, stop, rollback };
constexpr std::array<const char*, 4> enum_names(GuardAction) { return {"off", "warn", "stop", "rollback"}; }

#define R1_GUARD_ACTION_DOC_                                                                                  \
  "off; warn (an event, training goes on); stop (a final checkpoint, then exit 3 naming the rule); rollback " \
  "(restore the last checkpoint taken before the condition started, then continue)"

struct GuardEntropy {
#define R1_GUARD_ENTROPY_FIELDS(F)                                                                          \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true)                                     \
  F(int64_t, window, 5, "steps averaged", x >= 2)                                                           \
  F(double, floor, 0.01, "collapse: mean entropy per token (nats) below this (0: off)", x >= 0)             \
  F(double, max_fall, 0.25,                                                                                 \
    "collapse: entropy falling faster than this share of its value per step (least-squares slope over the " \
    "window / its mean; 0: off)",                                                                           \
    x >= 0)
  R1_CONFIG(GuardEntropy, R1_GUARD_ENTROPY_FIELDS)
};

struct GuardLength {
#define R1_GUARD_LENGTH_FIELDS(F)                                                                                 \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true)                                           \
  F(int64_t, window, 5, "steps averaged", x >= 1)                                                                 \
  F(double, max_truncated, 0.75, "blow-up: share of completions cut at max_new_tokens above this (1: off)",       \
    x > 0 && x <= 1)                                                                                              \
  F(double, max_length_frac, 0.95, "blow-up: length/mean above this share of [sampling] max_new_tokens (1: off)", \
    x > 0 && x <= 1)
  R1_CONFIG(GuardLength, R1_GUARD_LENGTH_FIELDS)
};

struct GuardKl {
#define R1_GUARD_KL_FIELDS(F)                                           \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true) \
  F(int64_t, window, 3, "steps averaged", x >= 1)                       \
  F(double, max, 0.5, "KL to the reference per token above this", x > 0)
  R1_CONFIG(GuardKl, R1_GUARD_KL_FIELDS)
};

struct GuardClip {
#define R1_GUARD_CLIP_FIELDS(F)                                         \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true) \
  F(int64_t, window, 3, "steps averaged", x >= 1)                       \
  F(double, max, 0.3, "share of clipped tokens (clip/low + clip/high) above this", x > 0 && x <= 1)
  R1_CONFIG(GuardClip, R1_GUARD_CLIP_FIELDS)
};

struct GuardZeroStd {
#define R1_GUARD_ZERO_STD_FIELDS(F)                                                                              \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true)                                          \
  F(int64_t, window, 10, "steps in a row", x >= 1)                                                               \
  F(double, min_frac, 0.95, "nothing to learn from: zero_std_frac at or above this in every step of the window", \
    x > 0 && x <= 1)
  R1_CONFIG(GuardZeroStd, R1_GUARD_ZERO_STD_FIELDS)
};

struct GuardRewardDrop {
#define R1_GUARD_REWARD_DROP_FIELDS(F)                                  \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true) \
  F(int64_t, window, 5, "steps averaged", x >= 1)                       \
  F(double, max_drop, 0.5, "reward/mean's window mean this far (reward units) below the best window mean so far", x > 0)
  R1_CONFIG(GuardRewardDrop, R1_GUARD_REWARD_DROP_FIELDS)
};

struct GuardMismatch {
#define R1_GUARD_MISMATCH_FIELDS(F)                                     \
  F(GuardAction, action, GuardAction::warn, R1_GUARD_ACTION_DOC_, true) \
  F(int64_t, window, 3, "steps averaged", x >= 1)                       \
  F(double, max, 0.1, "sampler/trainer |log-prob gap| per token (mismatch/logprob_abs_mean) above this", x > 0)
  R1_CONFIG(GuardMismatch, R1_GUARD_MISMATCH_FIELDS)
};

struct GuardOptions {
#define R1_GUARD_FIELDS(F)                                                                                       \
  F(GuardEntropy, entropy, {}, "Entropy collapse", true)                                                         \
  F(GuardLength, length, {}, "Completion length blow-up", true)                                                  \
  F(GuardKl, kl, {}, "KL to the reference", true)                                                                \
  F(GuardClip, clip, {}, "Clipped share of tokens", true)                                                        \
  F(GuardZeroStd, zero_std, {}, "Groups whose rewards all agree", true)                                          \
  F(GuardRewardDrop, reward_drop, {}, "Reward falling from its best", true)                                      \
  F(GuardMismatch, mismatch, {}, "Sampler/trainer log-prob mismatch", true)                                      \
  F(int64_t, max_rollbacks, 2, "rollbacks per run; a rule that would roll back once more stops the run instead", \
    x >= 0)                                                                                                      \
  F(double, rollback_lr_factor, 0.5, "after a rollback the learning rate is multiplied by this (1: unchanged)",  \
    x > 0 && x <= 1)                                                                                             \
  F(bool, rollback_skip_data, true,                                                                              \
    "after a rollback, continue the data after the records the rolled-back steps drew (false: redraw them)", true)
  R1_CONFIG(GuardOptions, R1_GUARD_FIELDS)
};

}  // namespace r1
