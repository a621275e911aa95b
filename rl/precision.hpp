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
// Under ZeRO (rl/zero.hpp) the masters (fp32: float32 chunks beside the compute weights), moments
// and, from stage 2, gradients are sharded over the ranks.
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
#include "rl/zero.hpp"

namespace r1 {

// The dtype models and checkpoints are saved in: [train] save_dtype, where "original" is the
// loaded checkpoint's torch_dtype (config.json; `original` may be empty or unknown: then nullopt,
// the policy's own dtype).
std::optional<Dtype> saved_dtype(SaveDtype choice, const std::string& original);

// Every parameter of a (float32) model by name: the masters of a full fine-tune.
std::vector<std::pair<std::string, at::Tensor>> named_tensors(CausalLM& model);

// How gradients reach what AdamW updates across ranks (rl/distributed.hpp, rl/zero.hpp).
struct Sharding {
  Distributed* dist = nullptr;  // none: one rank
  int64_t zero_stage = 0;       // [distributed] zero_stage
};

class TrainWeights {
 public:
  // Trains the policy's parameters that require grad (all of them, or only the LoRA adapters).
  // `masters`: in bf16-mixed, the float32 value to start from for each of them, by name (the
  // checkpoint loaded in float32, or init_lora's values; at stage 0 the tensors become the masters,
  // no copy; under ZeRO only this rank's chunks are kept); ignored in fp32.
  TrainWeights(CausalLM& policy, Precision precision,
               const std::vector<std::pair<std::string, at::Tensor>>& masters = {}, Sharding sharding = {});
  ~TrainWeights();

  bool mixed() const { return mixed_; }
  int64_t zero_stage() const { return zero_ ? zero_->stage() : 0; }
  // The tensors the optimizer updates: stage 0, the trained tensors (or their float32 masters) in
  // the policy's named_parameters() order; ZeRO, this rank's chunks (rl/zero.hpp).
  const std::vector<at::Tensor>& params() const { return zero_ ? zero_->chunks() : params_; }
  // The trained tensors' names and shapes, in the policy's order.
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& trained() const { return policy_params_; }
  // What params() hold of each trained tensor (stage 0: each whole, params()[i] for tensor i).
  std::vector<ZeroShards::Piece> pieces() const;

  // Before the first step: every rank's compute weights the same (stage 0: broadcast from rank 0;
  // ZeRO: all-gathered from the chunks) and the gradient hooks attached.
  void start();
  // Around each backward; `last`: the last one before an optimizer step. After the last,
  // params()' gradients are the sums over ranks (of this rank's chunks under ZeRO).
  void before_backward(bool last);
  void after_backward(bool last);
  // Around the policy update (ZeRO stage 3: the layers' compute weights gathered on demand inside,
  // whole again at the end); nothing at other stages.
  void begin_update();
  void end_update();
  // The global gradient norm of params() over every rank, clipped to max_norm when max_norm > 0.
  // A non-finite norm leaves gradients that the step skips.
  double clip_grads(double max_norm);
  // The policy's compute weights from params(): bf16-mixed copies the masters; ZeRO all-gathers
  // (a collective). Call after each optimizer step and after a checkpoint load. fp32 stage 0: nothing.
  void refresh_policy();
  // bf16-mixed: every master whole, in float32 (under ZeRO gathered from the ranks: a collective).
  std::vector<at::Tensor> full_masters();
  // True when every compute weight (and at stage 0 every master) is finite (one read-back).
  bool finite() const;
  // Bytes held now: gradients of the trained tensors and of params(), and float32 accumulators.
  double grad_bytes() const;
  // Bytes of the policy's parameters whose storage is allocated now (ZeRO stage 3 frees layers).
  double compute_bytes() const;
  // Bytes of params() that are not the policy's own tensors (masters and chunks).
  double master_bytes() const;
  // Buckets or units whose gradient sum began inside backward, and all launched, so far.
  std::pair<int64_t, int64_t> overlap() const;

 private:
  void accumulate_grads();

  CausalLM& policy_;
  bool mixed_ = false;
  Sharding sharding_;
  std::vector<at::Tensor> policy_params_;  // the policy's trained parameters, in order
  std::vector<at::Tensor> params_;         // what AdamW updates at stage 0
  std::vector<std::string> names_;
  std::unique_ptr<ZeroShards> zero_;
};

}  // namespace r1
