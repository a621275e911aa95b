// What AdamW updates, by [train] precision.
//   fp32:       the policy's own float32 parameters.
//   bf16-mixed: float32 master copies of the policy's bfloat16 parameters. Forward and backward run
//               in bfloat16 on the policy (the log-softmax over the vocabulary and the loss in
//               float32); after each micro-batch's backward its bf16 gradients are added into float32
//               master gradients and released; the gradient all-reduce, clipping and AdamW (float32
//               moments) work on the masters; after each optimizer step the policy's bfloat16
//               compute copy is refreshed from them (round to nearest), and rollout workers sample
//               from that copy.
// Bytes per parameter: fp32 16 (weight 4, gradient 4, moments 8). bf16-mixed 18, plus 2 while a
// micro-batch's bf16 gradient exists (compute copy 2, master 4, master gradient 4, moments 8).
// A bf16 copy refreshed per step, rather than autocast at each op, keeps every kernel of the
// policy (fused decode, oneDNN GEMMs) in one dtype and casts each weight once per step, not once
// per micro-batch.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "policy/model.hpp"
#include "policy/options.hpp"
#include "rl/options.hpp"

namespace r1 {

// The dtype models and checkpoints are saved in: [train] save_dtype, where "original" is the
// loaded checkpoint's torch_dtype (config.json; `original` may be empty or unknown: then nullopt,
// the policy's own dtype).
std::optional<Dtype> saved_dtype(SaveDtype choice, const std::string& original);

// Every parameter of a (float32) model by name: the masters of a full fine-tune.
std::vector<std::pair<std::string, at::Tensor>> named_tensors(CausalLM& model);

class TrainWeights {
 public:
  // Trains the policy's parameters that require grad (all of them, or only the LoRA adapters).
  // `masters`: in bf16-mixed, the float32 value to start from for each of them, by name (the
  // checkpoint loaded in float32, or init_lora's values; the tensors become the masters, no copy);
  // ignored in fp32.
  TrainWeights(CausalLM& policy, Precision precision,
               const std::vector<std::pair<std::string, at::Tensor>>& masters = {});

  bool mixed() const { return mixed_; }
  // The tensors the optimizer updates, in the policy's named_parameters() order, and their names.
  const std::vector<at::Tensor>& params() const { return params_; }
  const std::vector<std::string>& names() const { return names_; }

  // bf16-mixed: master.grad += float(policy.grad), and the bf16 gradient is released. Call after
  // each backward. fp32: nothing (backward accumulates in place).
  void accumulate_grads();
  // bf16-mixed: the policy's compute copy from the masters. Call after each optimizer step, after a
  // broadcast of the masters, and after a checkpoint load. fp32: nothing.
  void refresh_policy();
  // True when every optimized tensor is finite (one read-back).
  bool finite() const;

 private:
  CausalLM& policy_;
  bool mixed_ = false;
  std::vector<at::Tensor> policy_params_;  // the policy's trained parameters, in order
  std::vector<at::Tensor> params_;         // what AdamW updates
  std::vector<std::string> names_;
};

}  // namespace r1
