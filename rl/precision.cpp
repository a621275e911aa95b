#include "rl/precision.hpp"

#include <fmt/ranges.h>

#include <map>

#include "common/error.hpp"

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
                           const std::vector<std::pair<std::string, at::Tensor>>& masters)
    : policy_(policy), mixed_(precision == Precision::bf16_mixed) {
  for (auto& p : policy_->named_parameters()) {
    if (!p.value().requires_grad()) continue;  // frozen: the base weights under LoRA
    names_.push_back(p.key());
    policy_params_.push_back(p.value());
  }
  if (!mixed_) {
    params_ = policy_params_;
    return;
  }
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
  refresh_policy();
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
  if (!mixed_) return;
  at::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) policy_params_[i].copy_(params_[i]);
}

bool TrainWeights::finite() const {
  at::NoGradGuard ng;
  at::Tensor ok;  // 0-dim, on the weights' device: one read-back at the end
  for (const auto& p : params_) {
    at::Tensor t = at::isfinite(p).all();
    ok = ok.defined() ? ok.logical_and(t) : t;
  }
  return !ok.defined() || ok.item<bool>();
}

}  // namespace r1
