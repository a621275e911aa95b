#include "rl/loss.hpp"

#include "common/error.hpp"

namespace r1 {

at::Tensor compute_advantages(const at::Tensor& rewards, const GrpoOptions& o) {
  TORCH_CHECK(rewards.dim() == 2, "compute_advantages: rewards must be [N, G], got ", rewards.sizes());
  const int64_t G = rewards.size(1);
  at::Tensor r = rewards.to(at::kFloat);
  at::Tensor mean = r.mean(1, /*keepdim=*/true);
  if (o.advantage == Advantage::rloo) {
    R1_CHECK(G >= 2, "rloo advantages need group_size >= 2");
    return (r - mean) * (static_cast<double>(G) / static_cast<double>(G - 1));  // r_i - mean of the others
  }
  at::Tensor a = r - mean;
  const double eps = 1e-4;
  if (o.scale_rewards == ScaleRewards::group) {
    at::Tensor std = G > 1 ? r.std(1, /*unbiased=*/true, /*keepdim=*/true) : at::zeros_like(mean);
    a = a / (std + eps);
  } else if (o.scale_rewards == ScaleRewards::batch) {
    at::Tensor std = r.numel() > 1 ? r.std() : at::zeros({}, r.options());
    a = a / (std + eps);
  }
  return a;
}

TisWeights tis_weights(const at::Tensor& trainer, const at::Tensor& sampler, const at::Tensor& mask,
                       const GrpoOptions& o) {
  at::NoGradGuard ng;
  const double C = o.tis_cap;
  TORCH_CHECK(C >= 1, "tis_weights: tis_cap must be >= 1, got ", C);
  at::Tensor log_r = (trainer - sampler) * mask;  // [B, T]
  at::Tensor r = at::exp(log_r);
  at::Tensor w, dropped;
  switch (o.tis_mode) {
    case TisMode::truncate:
      w = at::clamp_max(r, C);
      dropped = r > C;
      break;
    case TisMode::mask_token: dropped = (r > C).logical_or(r < 1.0 / C); break;
    case TisMode::mask_sequence: {
      at::Tensor seq = at::exp(log_r.sum(-1) / mask.sum(-1).clamp_min(1.0)).unsqueeze(-1);  // [B, 1]
      dropped = (seq > C).logical_or(seq < 1.0 / C).expand_as(r);
      break;
    }
  }
  if (!w.defined()) w = at::where(dropped, at::zeros_like(r), r);
  return {w, (dropped.to(at::kFloat) * mask).sum(), (w * mask).sum()};
}

LossOutput grpo_loss(const LossInputs& in, const GrpoOptions& o, const LossNorm& norm) {
  const at::Tensor& m = in.mask;
  at::Tensor log_ratio = in.logprobs - in.old_logprobs;  // [B, T]
  at::Tensor log_w = log_ratio;
  if (o.ratio_level == RatioLevel::sequence)  // GSPO: length-normalised sequence log-ratio, broadcast
    log_w = ((log_ratio * m).sum(-1) / m.sum(-1).clamp_min(1.0)).unsqueeze(-1);
  at::Tensor ratio = at::exp(log_w);
  at::Tensor clipped_ratio = at::clamp(ratio, 1.0 - o.epsilon_low, 1.0 + o.epsilon_high);
  at::Tensor adv = in.advantages.unsqueeze(-1);  // [B, 1]
  at::Tensor loss1 = -adv * ratio, loss2 = -adv * clipped_ratio;
  at::Tensor per_token = at::maximum(loss1, loss2);
  if (o.dual_clip > 0)  // bound the loss of negative advantages by -c * A
    per_token = at::where(adv < 0, at::minimum(per_token, -adv * o.dual_clip), per_token);
  if (in.tis_weight.defined()) per_token = per_token * in.tis_weight;  // the policy-gradient term only (TRL, verl)

  at::Tensor kl;
  if (o.kl_coef > 0) {
    TORCH_CHECK(in.ref_logprobs.defined(), "grpo_loss: kl_coef > 0 needs reference log-probs");
    at::Tensor d = in.ref_logprobs - in.logprobs;
    switch (o.kl_estimator) {
      case KlEstimator::k1: kl = -d; break;
      case KlEstimator::k2: kl = 0.5 * d * d; break;
      case KlEstimator::k3: kl = at::exp(d) - d - 1.0; break;
    }
    per_token = per_token + o.kl_coef * kl;
  }
  if (o.entropy_coef > 0) {
    TORCH_CHECK(in.entropy.defined(), "grpo_loss: entropy_coef > 0 needs the entropy");
    per_token = per_token - o.entropy_coef * in.entropy;
  }

  at::Tensor masked = per_token * m;
  at::Tensor loss;
  switch (o.loss_aggregation) {
    case LossAggregation::token_mean: loss = masked.sum() / std::max(norm.tokens, 1.0); break;
    case LossAggregation::seq_mean_token_mean:
      loss = (masked.sum(-1) / m.sum(-1).clamp_min(1.0)).sum() / std::max(norm.sequences, 1.0);
      break;
    case LossAggregation::seq_mean_token_sum_norm:
      R1_CHECK(norm.max_new_tokens > 0, "seq-mean-token-sum-norm needs max_new_tokens");
      loss = masked.sum() / (std::max(norm.sequences, 1.0) * static_cast<double>(norm.max_new_tokens));
      break;
  }

  LossOutput out{loss, {}};
  at::NoGradGuard ng;
  auto msum = [&](const at::Tensor& t) { return (t.to(at::kFloat) * m).sum(); };
  out.stats.tokens = m.sum();
  out.stats.clip_low = msum((ratio < 1.0 - o.epsilon_low).logical_and(adv < 0).expand_as(m));
  out.stats.clip_high = msum((ratio > 1.0 + o.epsilon_high).logical_and(adv > 0).expand_as(m));
  out.stats.ratio = msum(ratio.expand_as(m));
  out.stats.ratio_max = (ratio.detach().expand_as(m) * m).max();  // ratios are > 0: masked zeros never win
  if (kl.defined()) out.stats.kl = msum(kl);
  if (in.entropy.defined()) out.stats.entropy = msum(in.entropy);
  return out;
}

}  // namespace r1
