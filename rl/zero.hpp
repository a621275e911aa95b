// ZeRO sharding of what AdamW updates over the data-parallel ranks ([distributed] zero_stage >= 1).
// The trained tensors are cut into units: one per decoder layer (names "model.layers.N.") and one
// for the rest (embeddings, final norm, lm_head). A unit's tensors lie end to end in a flat vector
// padded to a multiple of the world size W, and rank r owns the r-th 1/W of it: its chunk.
//   stage 1: a rank keeps the float32 master and the AdamW moments of its chunks only. Gradients
//            accumulate in full over a step's micro-batches; at the last backward each unit is
//            reduce-scattered into the chunks as soon as backward has finished its gradients.
//   stage 2: also gradients: after every backward each unit is reduce-scattered the same way and its
//            full gradients are released, so a rank holds its chunks' float32 gradients and one
//            backward's gradients in flight.
//   stage 3: also the decoder layers' compute weights during the policy update: each layer's
//            weights live in one flat buffer whose storage is freed after the layer's forward and
//            after its backward, and all-gathered from the chunks just before its forward and its
//            backward (recompute included), the next layer's gather started ahead (prefetch). The
//            embeddings, final norm and lm_head stay whole. Outside the update (rollouts, evals,
//            reference and old log-probs, checkpoints) every layer is whole.
// After each optimizer step every unit's chunks are all-gathered into the policy's compute weights,
// in their dtype (bfloat16 under bf16-mixed: half the bytes of float32), so rollouts, evals and every
// forward see full weights, identical on every rank by construction (stage 3: on demand, and whole
// again when the update ends).
// Bytes per parameter and rank, bf16-mixed: compute 2, masters 4/W, moments 8/W, gradients 4 (stage 1:
// a full float32 accumulator) or 4/W (stage 2). fp32: compute 4, masters 4/W (the chunk AdamW steps,
// beside the full compute weights), moments 8/W, gradients 4 or 4/W. Stage 3 during the update:
// compute weights 2 or 4 per parameter of the layers gathered (about two) and of the embeddings.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "policy/model.hpp"
#include "rl/distributed.hpp"

namespace r1 {

class ZeroShards : public LayerHooks {
 public:
  // `trained`: the policy's trained parameters, named; `initial`: their float32 values (only this
  // rank's chunks are kept). Hooks go on `trained` (attach_hooks).
  ZeroShards(int64_t stage, const std::vector<std::string>& names, const std::vector<at::Tensor>& trained,
             const std::vector<at::Tensor>& initial, Distributed& dist);
  ~ZeroShards() override;
  ZeroShards(const ZeroShards&) = delete;
  ZeroShards& operator=(const ZeroShards&) = delete;

  int64_t stage() const { return stage_; }
  // [chunk] float32 per unit: what AdamW updates. .grad() after the last backward of a step: this
  // rank's chunk of the gradient summed over ranks.
  const std::vector<at::Tensor>& chunks() const { return chunks_; }

  // Post-accumulate-grad hooks on the trained parameters: a unit's reduce-scatter starts inside
  // backward once all of its gradients are final.
  void attach_hooks();
  // Around each backward; `last`: the last before an optimizer step.
  void before_backward(bool last);
  void after_backward();
  // The squared global gradient norm (one collective) and its clipping.
  double grad_sq_norm();
  void scale_grads(double factor);
  // The policy's trained parameters from every rank's chunks (a collective). Stage 3 inside the
  // update: the layers are marked stale and gathered when next used.
  void gather_weights();
  // Stage 3: the policy update runs between these (layers gathered on demand); whole outside.
  void begin_update();
  void end_update();
  void before(int64_t layer) override;
  void after(int64_t layer, const std::vector<at::Tensor>& outputs) override;
  // Bytes of compute weights whose storage is allocated now.
  double compute_bytes() const;
  // Every trained tensor whole in float32 from every rank's chunks (a collective; 4 B per
  // parameter while they live): what a float32 save of bf16-mixed weights writes.
  std::vector<at::Tensor> gather_full();

  // Where this rank's chunks hold each trained tensor: elements [begin, begin + numel) of tensor
  // `param` (flattened) are elements [at, at + numel) of chunks()[chunk].
  struct Piece {
    size_t param = 0;
    int64_t begin = 0, numel = 0;
    size_t chunk = 0;
    int64_t at = 0;
  };
  const std::vector<Piece>& pieces() const { return pieces_; }
  // Bytes of gradients this object holds now (chunk gradients and float32 accumulators).
  double grad_bytes() const;
  // Units whose reduce-scatter started inside backward, and units launched, summed over backward passes.
  int64_t launched_early() const { return early_; }
  int64_t launched() const { return launched_; }

 private:
  struct Unit;
  void launch(Unit& u);
  void launch_ready_in_order(bool early);
  void land(Unit& u);
  void on_grad_ready(const at::Tensor& p);
  // Stage 3's compute buffers (the lock held).
  void start_gather(Unit& u);
  void materialize(Unit& u);
  void release(Unit& u);
  void prefetch(int64_t layer);
  Unit* unit_of_layer(int64_t layer);

  const int64_t stage_;
  Distributed& dist_;
  std::vector<at::Tensor> trained_;
  std::vector<Unit> units_;  // in launch order: the last layer first, the rest (embeddings) last
  std::vector<at::Tensor> chunks_;
  std::vector<Piece> pieces_;
  struct State;
  std::unique_ptr<State> s_;  // hook state, shared with autograd's threads
  int64_t early_ = 0, launched_ = 0;
  bool updating_ = false;  // stage 3: between begin_update and end_update
};

}  // namespace r1
