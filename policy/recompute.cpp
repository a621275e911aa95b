#include "policy/recompute.hpp"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <ATen/core/ivalue.h>

#include <mutex>

namespace r1 {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the inputs: the function and the random state it started from.
struct Replay : torch::CustomClassHolder {
  RecomputeFn fn;
  at::Tensor rng_state;  // the device generator's state before the first run
  at::Device device = at::kCPU;
};

at::Generator generator_for(const at::Device& d) { return at::globalContext().defaultGenerator(d); }

struct Recompute : public torch::autograd::Function<Recompute> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, c10::intrusive_ptr<Replay> replay) {
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["replay"] = at::IValue::make_capsule(replay);
    // Run as backward will: in grad mode (kernels that pick another path for inference would give
    // different numbers), on detached inputs, keeping only the detached outputs: the layer's graph
    // and its saved tensors are freed on return.
    variable_list in;
    for (const at::Tensor& x : inputs) in.push_back(x.detach());
    at::AutoGradMode on(true);
    variable_list out = replay->fn(in);
    for (auto& y : out) y = y.detach();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto replay = c10::static_intrusive_pointer_cast<Replay>(ctx->saved_data["replay"].toCapsule());
    variable_list inputs;
    for (const at::Tensor& x : ctx->get_saved_variables()) inputs.push_back(x.detach().requires_grad_(true));
    variable_list outputs;
    {
      at::Generator gen = generator_for(replay->device);
      at::Tensor now;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        now = gen.get_state();
        gen.set_state(replay->rng_state);
      }
      at::AutoGradMode on(true);
      outputs = replay->fn(inputs);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now);
    }
    variable_list roots, root_grads;
    for (size_t i = 0; i < outputs.size(); ++i)
      if (grads[i].defined() && outputs[i].requires_grad()) roots.push_back(outputs[i]), root_grads.push_back(grads[i]);
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);  // parameters accumulate their .grad here
    variable_list out;
    for (const at::Tensor& x : inputs) out.push_back(x.grad());
    out.emplace_back();  // the replay argument
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> recompute_in_backward(RecomputeFn fn, const std::vector<at::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "recompute_in_backward: needs at least one input tensor");
  auto replay = c10::make_intrusive<Replay>();
  replay->fn = std::move(fn);
  replay->device = inputs[0].device();
  at::Generator gen = generator_for(replay->device);
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    replay->rng_state = gen.get_state();
  }
  std::vector<at::Tensor> in = inputs;
  bool any = false;
  for (const at::Tensor& x : in) any = any || x.requires_grad();
  // Without an input that requires grad the outputs would not either; the first input then gets
  // a grad-requiring alias so that the parameters inside still receive gradients.
  if (!any) in[0] = in[0].detach().requires_grad_(true);
  return Recompute::apply(at::TensorList(in), replay);
}

}  // namespace r1
