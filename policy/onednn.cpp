#include "policy/onednn.hpp"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>
#include <string>

#include "policy/cpu_kernels.hpp"

namespace r1::onednn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kMinRows = 64;  // below this MKL (or r1's few-row kernel) is as fast (bench_linear)

const c10::OperatorHandle* pointwise_op() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  return op ? &*op : nullptr;
}

bool cpu_ok() { return cpu::isa() == cpu::Isa::avx512 && pointwise_op() != nullptr; }

// a [M, K] times b [N, K] transposed, plus bias [N]: oneDNN's inner product on plain tensors.
at::Tensor call(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias) {
  std::vector<c10::IValue> stack;
  stack.emplace_back(a);
  stack.emplace_back(b);
  stack.emplace_back(bias.defined() ? c10::IValue(bias) : c10::IValue());
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(c10::IValue());  // algorithm: none
  pointwise_op()->callBoxed(&stack);
  return stack.at(0).toTensor();
}

struct LinearFn : public torch::autograd::Function<LinearFn> {
  // x [M, K], w [N, K], bias [N] or [0] (autograd inputs must be defined).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = bias.numel() > 0;
    return call(x, w, bias.numel() > 0 ? bias : at::Tensor());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const at::Tensor gy = grads[0].contiguous();  // [M, N]
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = call(gy, w.t(), {});      // [M, K] = gy w
    if (ctx->needs_input_grad(1)) gw = call(gy.t(), x.t(), {});  // [N, K] = gy^T x
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0);
    return {gx, gw, gb};
  }
};

}  // namespace

bool supports(const at::Tensor& x, const at::Tensor& w) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.dim() == 2 &&
         x.dim() >= 1 && x.size(-1) == w.size(1) && x.numel() > 0 && cpu_ok();
}

bool linear_applies(const at::Tensor& x, const at::Tensor& w) {
  return supports(x, w) && x.numel() / x.size(-1) >= kMinRows;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  TORCH_CHECK(supports(x, w), "onednn::linear: needs float32 CPU tensors on an AVX-512 CPU, got x ", x.sizes(), " ",
              x.scalar_type(), ", w ", w.sizes(), " ", w.scalar_type());
  const int64_t K = w.size(1);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = w.size(0);
  const at::Tensor x2 = x.reshape({-1, K});
  at::Tensor y;
  const bool grad = at::GradMode::is_enabled() &&
                    (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad()));
  if (grad)
    y = LinearFn::apply(x2, w, bias.defined() ? bias : at::empty({0}, w.options()));
  else
    y = call(x2, w, bias);
  return y.view(out_shape);
}

at::Tensor matmul_nt(const at::Tensor& a, const at::Tensor& b) { return call(a, b, {}); }

}  // namespace r1::onednn
