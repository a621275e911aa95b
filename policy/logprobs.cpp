#include "policy/logprobs.hpp"

#include <algorithm>

#include <torch/csrc/autograd/custom_function.h>

#include "policy/onednn.hpp"

namespace r1 {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a [M, K] times b [N, K] transposed (either may be a strided view): oneDNN for many float32 rows
// on CPU (policy/onednn.hpp), else ATen.
at::Tensor matmul_nt(const at::Tensor& a, const at::Tensor& b) {
  if (onednn::linear_applies(a, b)) return onednn::matmul_nt(a, b);
  return at::matmul(a, b.t());
}

// One chunk of rows: float32 logits / temperature [n, V]. Banned ids get -1e30, not -inf: their
// probability is exactly 0 and p * log p stays 0 (no NaN in the entropy or the backward).
at::Tensor chunk_logits(const at::Tensor& h, const at::Tensor& w, double temperature, const at::Tensor& banned) {
  at::Tensor z = matmul_nt(h, w).to(at::kFloat);
  if (temperature != 1.0) z = z / temperature;
  return banned.numel() > 0 ? z.masked_fill(banned, -1e30f) : z;
}

struct SelectiveLogSoftmax : public torch::autograd::Function<SelectiveLogSoftmax> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, const at::Tensor& banned, double temperature, int64_t chunk,
                               bool with_entropy) {
    const int64_t N = hidden.size(0);
    at::Tensor lp = at::empty({N}, hidden.options().dtype(at::kFloat));
    at::Tensor ent = at::zeros({N}, hidden.options().dtype(at::kFloat));
    at::Tensor lse_all = at::empty({N}, hidden.options().dtype(at::kFloat));
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      at::Tensor z = chunk_logits(hidden.narrow(0, s, n), weight, temperature, banned);  // [n, V]
      at::Tensor lse = at::logsumexp(z, -1);                                             // [n]
      at::Tensor tgt = targets.narrow(0, s, n).unsqueeze(1);
      lp.narrow(0, s, n).copy_(z.gather(1, tgt).squeeze(1) - lse);
      lse_all.narrow(0, s, n).copy_(lse);
      if (with_entropy) {
        at::Tensor logp = z - lse.unsqueeze(1);
        ent.narrow(0, s, n).copy_(-(logp.exp() * logp).sum(-1));
      }
    }
    ctx->save_for_backward({hidden, weight, targets, lse_all, ent, banned});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["entropy"] = with_entropy;
    ctx->mark_non_differentiable({});
    return {lp, ent};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &weight = saved[1], &targets = saved[2], &lse_all = saved[3], &ent = saved[4],
                     &banned = saved[5];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const bool with_entropy = ctx->saved_data["entropy"].toBool();
    const at::Tensor& g_lp = grads[0];  // [N]
    const at::Tensor& g_ent = with_entropy ? grads[1] : at::Tensor();
    const bool need_h = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);

    const int64_t N = hidden.size(0);
    at::Tensor gh = need_h ? at::empty_like(hidden) : at::Tensor();
    at::Tensor gw = need_w ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      at::Tensor h = hidden.narrow(0, s, n);
      at::Tensor z = chunk_logits(h, weight, temperature, banned);
      at::Tensor logp = z - lse_all.narrow(0, s, n).unsqueeze(1);  // [n, V]
      at::Tensor p = logp.exp();
      // d lp_t / dz = onehot(t) - p
      at::Tensor gz = p * (-g_lp.narrow(0, s, n).unsqueeze(1));
      gz.scatter_add_(1, targets.narrow(0, s, n).unsqueeze(1), g_lp.narrow(0, s, n).unsqueeze(1).to(at::kFloat));
      // d H / dz = -p (log p + H)
      if (g_ent.defined()) gz -= g_ent.narrow(0, s, n).unsqueeze(1) * p * (logp + ent.narrow(0, s, n).unsqueeze(1));
      if (temperature != 1.0) gz /= temperature;
      at::Tensor gzc = gz.to(weight.scalar_type());
      if (need_h) gh.narrow(0, s, n).copy_(matmul_nt(gzc, weight.t()));  // gz W
      if (need_w) gw.add_(matmul_nt(gzc.t(), h.t()).to(at::kFloat));     // gz^T h
    }
    return {gh,           need_w ? gw.to(weight.scalar_type()) : at::Tensor(),
            at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

int64_t logit_chunk_rows(int64_t vocab) {
  return std::clamp<int64_t>(kLogitChunkBytes / (4 * std::max<int64_t>(1, vocab)), 16, 1024);
}

TokenLogprobs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                             const LogprobOptions& o) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0) &&
                  hidden.size(1) == weight.size(1),
              "token_logprobs: expected hidden [N, H], weight [V, H], targets [N]; got ", hidden.sizes(), ", ",
              weight.sizes(), ", ", targets.sizes());
  TORCH_CHECK(o.temperature > 0, "token_logprobs: temperature must be > 0, got ", o.temperature);
  // Autograd functions take defined tensors only: no banned ids is an empty one.
  const at::Tensor banned = o.banned.defined() ? o.banned : at::empty({0}, hidden.options().dtype(at::kBool));
  auto out = SelectiveLogSoftmax::apply(hidden, weight, targets.to(at::kLong), banned, o.temperature,
                                        o.chunk_rows > 0 ? o.chunk_rows : logit_chunk_rows(weight.size(0)), o.entropy);
  return {out[0], o.entropy ? out[1] : at::Tensor()};
}

TokenLogprobs token_logprobs_dense(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   const LogprobOptions& o) {
  at::Tensor z = at::matmul(hidden, weight.t()).to(at::kFloat) / o.temperature;
  if (o.banned.defined()) z = z.masked_fill(o.banned, -1e30f);
  at::Tensor logp = at::log_softmax(z, -1);
  TokenLogprobs r{logp.gather(1, targets.to(at::kLong).unsqueeze(1)).squeeze(1), {}};
  if (o.entropy) r.entropy = -(logp.exp() * logp).sum(-1);
  return r;
}

}  // namespace r1
