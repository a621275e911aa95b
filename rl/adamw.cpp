#include "rl/adamw.hpp"

#include <algorithm>
#include <cmath>

namespace r1 {

namespace {

struct StepScalars {
  double decay;  // 1 - lr * weight_decay, applied to the weights first (decoupled)
  double beta1, beta2;
  double bc2_sqrt;  // sqrt(1 - beta2^t)
  double eps;
  double step_size;  // lr / (1 - beta1^t)
};

// p, g, m, v: the same elements of the weights, gradient and moments (contiguous or not).
void update(at::Tensor p, const at::Tensor& g, at::Tensor m, at::Tensor v, const StepScalars& s) {
  if (s.decay != 1.0) p.mul_(s.decay);
  m.mul_(s.beta1).add_(g, 1 - s.beta1);
  v.mul_(s.beta2).addcmul_(g, g, 1 - s.beta2);
  const at::Tensor denom = (v.sqrt() / s.bc2_sqrt).add_(s.eps);
  p.addcdiv_(m, denom, -s.step_size);
}

}  // namespace

ChunkedAdamW::ChunkedAdamW(std::vector<at::Tensor> params, torch::optim::AdamWOptions options, int64_t chunk)
    : torch::optim::AdamW(std::move(params), options), chunk_(chunk) {
  TORCH_CHECK(chunk_ >= 1, "ChunkedAdamW: chunk ", chunk_, " must be at least 1");
  TORCH_CHECK(!options.amsgrad(), "ChunkedAdamW: amsgrad is not supported");
}

torch::optim::AdamWParamState& ChunkedAdamW::state_of(const at::Tensor& p) {
  auto& slot = state_[p.unsafeGetTensorImpl()];
  if (!slot) {  // moments start at zero, as AdamW's
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(0);
    st->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
    st->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
    slot = std::move(st);
  }
  return static_cast<torch::optim::AdamWParamState&>(*slot);
}

at::Tensor ChunkedAdamW::step(LossClosure closure) {
  TORCH_CHECK(!closure, "ChunkedAdamW: closures are not supported");
  at::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    TORCH_CHECK(!o.amsgrad(), "ChunkedAdamW: amsgrad is not supported");
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const at::Tensor& g = p.grad();
      auto& st = state_of(p);
      st.step(st.step() + 1);
      const auto [beta1, beta2] = o.betas();
      const double t = static_cast<double>(st.step());
      const StepScalars s{1 - o.lr() * o.weight_decay(),     beta1,   beta2,
                          std::sqrt(1 - std::pow(beta2, t)), o.eps(), o.lr() / (1 - std::pow(beta1, t))};
      at::Tensor &m = st.exp_avg(), &v = st.exp_avg_sq();
      const bool flat = p.is_contiguous() && g.is_contiguous() && m.is_contiguous() && v.is_contiguous();
      if (!flat || p.numel() <= chunk_) {
        update(p, g, m, v, s);
        continue;
      }
      const at::Tensor pf = p.view(-1), gf = g.view(-1), mf = m.view(-1), vf = v.view(-1);
      for (int64_t i = 0; i < pf.numel(); i += chunk_) {
        const int64_t n = std::min(chunk_, pf.numel() - i);
        update(pf.narrow(0, i, n), gf.narrow(0, i, n), mf.narrow(0, i, n), vf.narrow(0, i, n), s);
      }
    }
  }
  return {};
}

}  // namespace r1
