#include "rl/update.hpp"

#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.hpp"
#include "common/test_seam.hpp"
#include "policy/completions.hpp"
#include "rl/distributed.hpp"
#include "rl/loss.hpp"

namespace r1 {

double lr_at(const TrainOptions& t, int64_t step) {
  if (t.warmup_steps > 0 && step < t.warmup_steps)
    return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  if (t.lr_schedule == LrSchedule::cosine) {
    const double span = static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup_steps));
    const double p = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * p)));
  }
  return t.lr;
}

namespace {

// A micro-batch as padded [b, T] tensors on the model's device, T = its longest completion.
struct MicroForward {
  at::Tensor logprobs, entropy;           // [b, T] current policy (differentiable)
  at::Tensor mask;                        // [b, T] 1 for completion tokens that count
  at::Tensor old_logprobs, ref_logprobs;  // [b, T]
  at::Tensor sampler_logprobs;            // [b, T] when the sampler/trainer correction needs them
  at::Tensor advantages;                  // [b]
  int64_t slots = 0, tokens = 0;          // packed continuation slots of the forward, and the real ones
};

// Which inputs besides the current log-probs a micro-batch needs.
struct MicroNeeds {
  bool ref = false, sampler = false, entropy = true;
};

MicroForward forward_micro(CausalLM& model, const std::vector<const Sequence*>& seqs, double temperature,
                           MicroNeeds need) {
  const int64_t b = static_cast<int64_t>(seqs.size());
  std::vector<CompletionRef> rows;
  int64_t T = 1;
  for (const Sequence* s : seqs) {
    rows.push_back({s->ids.data(), s->prompt_len, s->comp_len, s->group});  // a group's samples share its prompt
    T = std::max(T, s->comp_len);
  }
  at::Tensor mask = at::zeros({b, T}), old = at::zeros({b, T}), ref = at::zeros({b, T}), samp = at::zeros({b, T});
  at::Tensor adv = at::zeros({b});
  auto m_a = mask.accessor<float, 2>();
  auto o_a = old.accessor<float, 2>();
  auto r_a = ref.accessor<float, 2>();
  auto s_a = samp.accessor<float, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const Sequence& s = *seqs[i];
    for (int64_t t = 0; t < s.comp_len; ++t) {
      m_a[i][t] = s.counted ? 1.f : 0.f;
      o_a[i][t] = s.old_logprobs[t];
      if (need.ref) r_a[i][t] = s.ref_logprobs[t];
      if (need.sampler) s_a[i][t] = s.sampler_logprobs[t];
    }
    adv[i] = s.advantage;
  }
  const auto dev = model->options().device();
  CompletionLogprobs lp = completion_logprobs(*model, rows, {.temperature = temperature, .entropy = need.entropy});
  MicroForward f;
  f.logprobs = lp.logprobs;
  f.entropy = lp.entropy;
  f.mask = mask.to(dev);
  f.old_logprobs = old.to(dev);
  if (need.ref) f.ref_logprobs = ref.to(dev);
  if (need.sampler) f.sampler_logprobs = samp.to(dev);
  f.advantages = adv.to(dev);
  f.slots = lp.slots, f.tokens = lp.tokens;
  return f;
}

// A 0-dim device tensor sum that starts undefined.
void accumulate(at::Tensor& total, const at::Tensor& x) {
  if (!x.defined()) return;
  total = total.defined() ? total + x : x.clone();
}
void accumulate_max(at::Tensor& total, const at::Tensor& x) {
  if (!x.defined()) return;
  total = total.defined() ? at::maximum(total, x) : x.clone();
}

}  // namespace

void score_logprobs(CausalLM& model, const std::vector<Sequence*>& seqs, double temperature, int64_t micro,
                    LogprobSlot slot) {
  at::NoGradGuard ng;
  for (size_t s = 0; s < seqs.size(); s += static_cast<size_t>(micro)) {
    std::vector<const Sequence*> part(
        seqs.begin() + static_cast<std::ptrdiff_t>(s),
        seqs.begin() + static_cast<std::ptrdiff_t>(std::min(seqs.size(), s + static_cast<size_t>(micro))));
    std::vector<CompletionRef> rows;
    for (const Sequence* q : part) rows.push_back({q->ids.data(), q->prompt_len, q->comp_len, q->group});
    at::Tensor lp =
        completion_logprobs(*model, rows, {.temperature = temperature}).logprobs.to(at::kCPU).contiguous();  // [b, T]
    auto lp_a = lp.accessor<float, 2>();
    for (size_t i = 0; i < part.size(); ++i) {
      Sequence& q = *seqs[s + i];
      auto& dst = slot == LogprobSlot::ref ? q.ref_logprobs : q.old_logprobs;
      dst.resize(static_cast<size_t>(q.comp_len));
      for (int64_t t = 0; t < q.comp_len; ++t) dst[t] = lp_a[static_cast<int64_t>(i)][t];
    }
  }
}

// Device-side sums of one step's update, read back once at its end.
struct PolicyUpdate::Pass {
  bool first = true;       // the first of the μ passes: the statistics of the sampling policy
  bool pre_update = true;  // no optimizer step yet in this step
  int64_t version = 0;     // the weights the step starts from
  at::Tensor kl, entropy, clip_low, clip_high, ratio, ratio_max, tokens;
  at::Tensor mismatch, mismatch_max, mismatch_tokens;
  at::Tensor tis_sum, tis_clipped;  // the correction's weights and capped or dropped tokens (first pass)
  at::Tensor loss;                  // the updates' objectives, summed (each is the sum over its micro-batches)
  double train_tokens = 0, grad_norm = 0;
  double grad_bytes = 0, weight_bytes = 0;  // gradients and weights held between backward passes, the most
  double slots = 0, real_slots = 0;         // completion slots of the micro-batches' [b, T] tensors, and the real ones
  int64_t updates = 0, skipped = 0;         // optimizer updates taken, and skipped by the guard
};

PolicyUpdate::PolicyUpdate(CausalLM& model, TrainWeights& weights, torch::optim::AdamW& optimizer, Distributed& dist,
                           SkipGuard& guard, UpdateSettings s)
    : model_(model), weights_(weights), opt_(optimizer), dist_(dist), guard_(guard), s_(s) {}

double PolicyUpdate::run(const std::vector<Sequence>& seqs, int64_t version, double lr, std::mt19937_64& rng,
                         StepMetrics& m) {
  for (auto& g : opt_.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  Pass pass;
  pass.version = version;
  weights_.begin_update();
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t per_mb =
      (seqs.size() + static_cast<size_t>(s_.train.minibatches) - 1) / static_cast<size_t>(s_.train.minibatches);
  for (int64_t epoch = 0; epoch < s_.train.inner_epochs && !seqs.empty(); ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t b = 0; b < seqs.size(); b += per_mb) {
      const auto first = order.begin() + static_cast<std::ptrdiff_t>(b);
      const auto last = order.begin() + static_cast<std::ptrdiff_t>(std::min(seqs.size(), b + per_mb));
      // Within a minibatch, group members sit together so their micro-batches share prompts.
      std::stable_sort(first, last, [&](size_t x, size_t y) { return seqs[x].group < seqs[y].group; });
      std::vector<const Sequence*> mb;
      for (auto it = first; it != last; ++it) mb.push_back(&seqs[*it]);
      minibatch(mb, pass);
      pass.pre_update = false;
    }
    pass.first = false;
  }
  weights_.end_update();
  // One read-back for the whole step.
  auto value = [](const at::Tensor& t) { return t.defined() ? t.to(at::kCPU).item<double>() : 0.0; };
  const double tokens = value(pass.tokens);
  if (pass.kl.defined()) m.kl.add_total(value(pass.kl), tokens);
  if (pass.entropy.defined()) m.entropy.add_total(value(pass.entropy), tokens);
  m.clip_low.add_total(value(pass.clip_low), tokens);
  m.clip_high.add_total(value(pass.clip_high), tokens);
  m.ratio_mean.add_total(value(pass.ratio), tokens);
  if (pass.ratio_max.defined()) m.ratio_max.add(value(pass.ratio_max));
  if (pass.mismatch.defined()) {
    m.mismatch_mean.add_total(value(pass.mismatch), value(pass.mismatch_tokens));
    m.mismatch_max.add(value(pass.mismatch_max));
  }
  if (pass.tis_sum.defined()) {
    m.tis_weight.add_total(value(pass.tis_sum), tokens);
    m.tis_clipped.add_total(value(pass.tis_clipped), tokens);
  }
  if (pass.updates) {
    m.grad_norm.add_total(pass.grad_norm, static_cast<double>(pass.updates));
    m.loss.add_total(value(pass.loss), static_cast<double>(pass.updates));
  }
  m.skipped_steps.add(static_cast<double>(pass.skipped));  // the same on every rank: reduced by max
  m.mem_grads.add(pass.grad_bytes / (1024.0 * 1024.0));
  m.mem_weights.add(pass.weight_bytes / (1024.0 * 1024.0));
  if (pass.slots > 0) m.padding_frac.add_total(pass.slots - pass.real_slots, pass.slots);
  return pass.train_tokens;
}

void PolicyUpdate::minibatch(const std::vector<const Sequence*>& mb, Pass& pass) {
  LossNorm norm{static_cast<double>(mb.size()), 0, s_.max_new_tokens};
  for (const Sequence* q : mb) norm.tokens += q->counted ? static_cast<double>(q->comp_len) : 0.0;
  if (dist_.active()) {  // step-wide totals over every rank: the same objective as one big batch
    auto tot = dist_.sum({norm.sequences, norm.tokens});
    norm.sequences = tot[0], norm.tokens = tot[1];
  }
  opt_.zero_grad();
  const size_t micro = static_cast<size_t>(s_.train.micro_batch);
  for (size_t u = 0; u < mb.size(); u += micro) {
    std::vector<const Sequence*> part(mb.begin() + static_cast<std::ptrdiff_t>(u),
                                      mb.begin() + static_cast<std::ptrdiff_t>(std::min(mb.size(), u + micro)));
    micro_step(part, norm, u + micro >= mb.size(), pass);  // the last backward before this update sums over ranks
  }
  // The norm is read back: one host sync per optimizer update.
  optimizer_step(weights_.clip_grads(s_.train.max_grad_norm), pass);
}

// The all-reduced gradients, and so their norm, are the same on every rank: every rank takes or
// skips the step alike without a collective.
void PolicyUpdate::optimizer_step(double grad_norm, Pass& pass) {
  if (!std::isfinite(grad_norm)) {
    ++pass.skipped, ++guard_.total;
    if (++guard_.in_a_row >= s_.train.max_skipped_steps)
      fail(
          "train: {} optimizer steps in a row had a non-finite gradient norm ({}) and were skipped "
          "([train] max_skipped_steps = {}); stopping. The weights are those before the first of them, and no "
          "checkpoint holds non-finite values",
          guard_.in_a_row, grad_norm, s_.train.max_skipped_steps);
    return;
  }
  guard_.in_a_row = 0;
  pass.grad_norm += grad_norm;
  opt_.step();
  weights_.refresh_policy();
  ++pass.updates;
}

void PolicyUpdate::micro_step(const std::vector<const Sequence*>& part, const LossNorm& norm, bool last, Pass& pass) {
  const bool tis = s_.grpo.tis_cap > 0;
  MicroForward f =
      forward_micro(model_, part, s_.temperature,
                    {.ref = s_.grpo.kl_coef > 0, .sampler = tis, .entropy = true});  // entropy is always logged
  TisWeights tw;
  if (tis) tw = tis_weights(f.old_logprobs, f.sampler_logprobs, f.mask, s_.grpo);
  LossOutput out = grpo_loss({f.logprobs, f.old_logprobs, f.ref_logprobs, f.entropy, f.advantages, f.mask, tw.weight},
                             s_.grpo, norm);
  weights_.before_backward(last);
  if (test_seam::fault_point(test_seam::Fault::nan_grad, s_.step + 1, s_.rank))
    (out.loss * NAN).backward();  // the trainer's guards under test
  else
    out.loss.backward();
  weights_.after_backward(last);
  pass.grad_bytes = std::max(pass.grad_bytes, weights_.grad_bytes());
  pass.weight_bytes = std::max(pass.weight_bytes, weights_.compute_bytes());
  accumulate(pass.loss, out.loss.detach());
  for (const Sequence* q : part) pass.train_tokens += static_cast<double>(q->ids.size());
  pass.slots += static_cast<double>(f.slots);  // packed completion rows x their length
  pass.real_slots += static_cast<double>(f.tokens);
  if (pass.first) {  // statistics of the policy the samples came from
    accumulate(pass.kl, out.stats.kl);
    accumulate(pass.entropy, out.stats.entropy);
    accumulate(pass.clip_low, out.stats.clip_low);
    accumulate(pass.clip_high, out.stats.clip_high);
    accumulate(pass.ratio, out.stats.ratio);
    accumulate_max(pass.ratio_max, out.stats.ratio_max);
    accumulate(pass.tokens, out.stats.tokens);
    accumulate(pass.tis_sum, tw.sum);
    accumulate(pass.tis_clipped, tw.clipped);
  }
  if (pass.pre_update && s_.old_is_sampler) {  // rows sampled by these very weights: any gap is numerics
    std::vector<float> same;
    for (const Sequence* q : part) same.push_back(q->policy_version == pass.version ? 1.f : 0.f);
    if (std::find(same.begin(), same.end(), 1.f) == same.end()) return;
    at::NoGradGuard ng;
    at::Tensor rows = at::tensor(same).to(f.mask.device()).unsqueeze(1);            // [b, 1]
    at::Tensor gap = (f.logprobs.detach() - f.old_logprobs).abs() * f.mask * rows;  // [b, T]
    accumulate(pass.mismatch, gap.sum());
    accumulate_max(pass.mismatch_max, gap.max());
    accumulate(pass.mismatch_tokens, (f.mask * rows).sum());
  }
}

}  // namespace r1
