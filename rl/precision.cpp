#include "rl/precision.hpp"

#include <fmt/ranges.h>

#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <map>
#include <set>

#include "common/error.hpp"
#include "policy/lora.hpp"

namespace r1 {

std::optional<Dtype> saved_dtype(SaveDtype choice, const std::string& original) {
  switch (choice) {
    case SaveDtype::float32: return Dtype::float32;
    case SaveDtype::bfloat16: return Dtype::bfloat16;
    case SaveDtype::original: break;
  }
  if (original == "float32") return Dtype::float32;
  if (original == "bfloat16") return Dtype::bfloat16;
  if (original == "float16") return Dtype::float16;
  return std::nullopt;
}

std::vector<std::pair<std::string, at::Tensor>> named_tensors(CausalLM& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

TrainWeights::TrainWeights(CausalLM& policy, Precision precision,
                           const std::vector<std::pair<std::string, at::Tensor>>& masters, Sharding sharding)
    : policy_(policy), mixed_(precision == Precision::bf16_mixed), sharding_(sharding) {
  for (auto& p : policy_->named_parameters()) {
    if (!p.value().requires_grad()) continue;  // frozen: the base weights under LoRA
    names_.push_back(p.key());
    policy_params_.push_back(p.value());
  }
  if (!mixed_) {
    params_ = policy_params_;
  } else {
    std::map<std::string, const at::Tensor*> by_name;
    for (const auto& [name, t] : masters) by_name[name] = &t;
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = by_name.find(names_[i]);
      const at::Tensor* m = it == by_name.end() ? nullptr : it->second;
      R1_CHECK(m && m->sizes() == policy_params_[i].sizes(), "bf16-mixed: no float32 master of shape {} for {}",
               policy_params_[i].sizes(), names_[i]);
      R1_CHECK(m->scalar_type() == at::kFloat, "bf16-mixed: the master of {} is not float32", names_[i]);
      at::Tensor t = m->detach().to(policy_params_[i].device());  // the loaded tensor itself on its device
      t.set_requires_grad(true);  // never in the autograd graph: gradients arrive by accumulate_grads()
      params_.push_back(t);
    }
  }
  if (sharding_.zero_stage >= 1) {
    R1_CHECK(sharding_.dist, "ZeRO stage {} needs the ranks' process group", sharding_.zero_stage);
    std::vector<at::Tensor> initial;
    for (const auto& t : params_) initial.push_back(t.detach());
    // LoRA: stage 3 is stage 2, the adapters' compute weights replicated (they are a few MB; the frozen
    // base is not what AdamW updates).
    const int64_t stage = has_lora(policy_) ? std::min<int64_t>(sharding_.zero_stage, 2) : sharding_.zero_stage;
    zero_ = std::make_unique<ZeroShards>(stage, names_, policy_params_, initial, *sharding_.dist);
    params_.clear();  // only this rank's chunks are kept
    return;
  }
  refresh_policy();
}

TrainWeights::~TrainWeights() {
  if (zero_ && policy_->layer_hooks == zero_.get()) policy_->layer_hooks = nullptr;
}

std::vector<ZeroShards::Piece> TrainWeights::pieces() const {
  if (zero_) return zero_->pieces();
  std::vector<ZeroShards::Piece> out;
  for (size_t i = 0; i < params_.size(); ++i) out.push_back({i, 0, params_[i].numel(), i, 0});
  return out;
}

void TrainWeights::start() {
  if (zero_) {
    zero_->gather_weights();
    zero_->attach_hooks();
    if (zero_->stage() == 3) policy_->layer_hooks = zero_.get();
    return;
  }
  if (!sharding_.dist) return;
  sharding_.dist->broadcast(params_);  // every replica starts from rank 0's weights
  refresh_policy();
  // bf16-mixed: the hooks sit on the masters, outside the autograd graph, so the float32 sums all
  // start after the last backward, once its gradients are accumulated.
  sharding_.dist->attach_grads(params_);
}

void TrainWeights::before_backward(bool last) {
  if (zero_) return zero_->before_backward(last);
  if (last && sharding_.dist) sharding_.dist->arm_grad_sync();
}

void TrainWeights::after_backward(bool last) {
  if (zero_) return zero_->after_backward();
  accumulate_grads();
  if (last && sharding_.dist) sharding_.dist->finish_grad_sync();
}

void TrainWeights::begin_update() {
  if (zero_) zero_->begin_update();
}

void TrainWeights::end_update() {
  if (zero_) zero_->end_update();
}

double TrainWeights::compute_bytes() const {
  std::set<const void*> seen;  // views of one buffer (stage 3) count once
  double b = 0;
  for (const auto& p : policy_->parameters())
    if (seen.insert(p.storage().unsafeGetStorageImpl()).second) b += static_cast<double>(p.storage().nbytes());
  return b;
}

double TrainWeights::clip_grads(double max_norm) {
  if (!zero_) {
    if (max_norm > 0) return torch::nn::utils::clip_grad_norm_(params_, max_norm);
    at::Tensor sq;
    for (const auto& p : params_)
      if (p.grad().defined()) sq = sq.defined() ? sq + p.grad().pow(2).sum() : p.grad().pow(2).sum();
    return sq.defined() ? std::sqrt(sq.item<double>()) : 0.0;
  }
  const double norm = std::sqrt(zero_->grad_sq_norm());
  if (max_norm > 0 && std::isfinite(norm) && max_norm / (norm + 1e-6) < 1)  // clip_grad_norm_'s rule
    zero_->scale_grads(max_norm / (norm + 1e-6));
  return norm;
}

void TrainWeights::accumulate_grads() {
  if (!mixed_) return;
  at::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& g = policy_params_[i].mutable_grad();
    if (!g.defined()) continue;
    at::Tensor& mg = params_[i].mutable_grad();
    if (mg.defined())
      mg.add_(g);  // bf16 promoted to float32 inside the add
    else
      mg = g.to(at::kFloat);
    g.reset();  // the bf16 gradient's 2 B/param come back before the next backward
  }
}

void TrainWeights::refresh_policy() {
  if (zero_) return zero_->gather_weights();
  if (!mixed_) return;
  at::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) policy_params_[i].copy_(params_[i]);
}

std::vector<at::Tensor> TrainWeights::full_masters() {
  R1_CHECK(mixed_, "full_masters: fp32 training keeps no masters");
  return zero_ ? zero_->gather_full() : params_;
}

bool TrainWeights::finite() const {
  at::NoGradGuard ng;
  at::Tensor ok;  // 0-dim, on the weights' device: one read-back at the end
  for (const auto* list : {&policy_params_, &params_}) {
    if (list == &params_ && !mixed_) continue;  // fp32 stage 0: the same tensors
    for (const auto& p : *list) {
      at::Tensor t = at::isfinite(p).all();
      ok = ok.defined() ? ok.logical_and(t) : t;
    }
  }
  return !ok.defined() || ok.item<bool>();
}

double TrainWeights::grad_bytes() const {
  double b = zero_ ? zero_->grad_bytes() : 0.0;
  for (const auto* list : {&policy_params_, &params_}) {
    if (list == &params_ && !mixed_) continue;  // fp32 stage 0: the same tensors
    for (const auto& p : *list)
      if (p.grad().defined()) b += static_cast<double>(p.grad().nbytes());
  }
  return b;
}

double TrainWeights::master_bytes() const {
  if (!zero_ && !mixed_) return 0;  // AdamW steps the policy's own tensors
  double b = 0;
  for (const auto& p : params()) b += static_cast<double>(p.nbytes());
  return b;
}

std::pair<int64_t, int64_t> TrainWeights::overlap() const {
  if (zero_) return {zero_->launched_early(), zero_->launched()};
  if (!sharding_.dist) return {0, 0};
  const Distributed::GradSyncStats s = sharding_.dist->grad_sync_stats();
  return {s.launched_early, s.buckets * s.syncs};
}

}  // namespace r1
