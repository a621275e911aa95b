// The GRPO family of objectives on padded [B, T] completion tensors: group advantages (GRPO with
// group/batch/no std scaling as in Dr. GRPO, RLOO), the clipped surrogate with DAPO's asymmetric
// clip and optional dual clip, token (GRPO) or sequence (GSPO) importance ratios, KL to a reference
// with the k1/k2/k3 estimators, an entropy bonus, and three loss aggregations. Normalisers are
// passed in for the whole optimizer step, so gradient accumulation and data parallelism give the
// same gradient as one big batch.
#pragma once
#include <ATen/ATen.h>

#include "rl/options.hpp"

namespace r1 {

// rewards [N, G] -> advantages [N, G].
at::Tensor compute_advantages(const at::Tensor& rewards, const GrpoOptions& o);

struct LossInputs {
  at::Tensor logprobs;      // [B, T] current policy (differentiable)
  at::Tensor old_logprobs;  // [B, T] the policy that sampled
  at::Tensor ref_logprobs;  // [B, T] frozen reference; undefined when kl_coef = 0
  at::Tensor entropy;       // [B, T] current policy entropy; undefined when not needed
  at::Tensor advantages;    // [B]
  at::Tensor mask;          // [B, T] float: 1 for completion tokens that count
  at::Tensor tis_weight;    // [B, T] off-policy weight of each token's policy-gradient term; undefined: 1
};

// The sampler/trainer correction of [grpo] tis_cap = C > 0 and tis_mode, from the trainer's
// log-probs of the sampling weights (`trainer`) and the sampler's (`sampler`), both [B, T], with
// r = exp(trainer - sampler) per token:
//   truncate       w = min(r, C)                                      (TIS, as verl and TRL)
//   mask-token     w = r where 1/C <= r <= C, else 0
//   mask-sequence  w = r where the sequence's geometric-mean ratio
//                  exp(sum(mask * log r) / sum(mask)) is in [1/C, C], else 0
// Masked-out tokens keep their place in the loss normalisers.
struct TisWeights {
  at::Tensor weight;   // [B, T]
  at::Tensor clipped;  // 0-dim: masked tokens whose weight was capped (truncate) or dropped (masks)
  at::Tensor sum;      // 0-dim: the weights summed over masked tokens
};
TisWeights tis_weights(const at::Tensor& trainer, const at::Tensor& sampler, const at::Tensor& mask,
                       const GrpoOptions& o);

// Totals over the whole optimizer step (all micro-batches, all ranks).
struct LossNorm {
  double sequences = 0;        // sequences in the step
  double tokens = 0;           // masked tokens in the step
  int64_t max_new_tokens = 0;  // Dr. GRPO's constant length normaliser
};

// Sums over this micro-batch's masked tokens, as 0-dim float tensors on the loss's device, so a
// step can add them up without a host sync per micro-batch. kl and entropy are undefined when not
// computed.
struct LossStats {
  at::Tensor kl, entropy, clip_low, clip_high;
  at::Tensor ratio, ratio_max;  // sum and largest value of the importance ratio
  at::Tensor tokens;
};

struct LossOutput {
  at::Tensor loss;  // scalar: this micro-batch's share of the step's loss
  LossStats stats;
};

LossOutput grpo_loss(const LossInputs& in, const GrpoOptions& o, const LossNorm& norm);

}  // namespace r1
