// LoRA adapters in Hugging Face PEFT's layout. Each targeted projection W [out, in] gains
// lora_A [r, in] and lora_B [out, r] and computes W x + (alpha / r) B A dropout(x); the base
// weights are frozen (requires_grad false), so only adapters get gradients and optimizer state.
// Parameter names extend the projection's: model.layers.0.self_attn.q_proj.lora_A.weight, saved
// in adapter_model.safetensors under PEFT's base_model.model. prefix beside adapter_config.json.
// Disabling the adapters gives the base model back (the KL reference, with no copy of it kept);
// merging folds them into the base weights (r1 export --merge-lora).
// Cost: r (in + out) parameters per projection; at r = 16 on every projection of Qwen2.5-0.5B,
// 8.8M parameters (1.8% of 494M), so gradients and AdamW state take ~0.1 GB instead of 6 GB.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "policy/model.hpp"
#include "policy/options.hpp"

namespace r1 {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The projections `o` targets, as "model.layers.L.self_attn.q_proj" and the module, layer order.
std::vector<std::pair<std::string, LinearImpl*>> lora_targets(CausalLM& model, const LoraOptions& o);

// Fresh adapter values as PEFT initialises them: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform
// with a = sqrt(5)), B = 0, so the adapted model starts equal to the base. float32 on CPU, named
// like the parameters they become, in lora_targets order (A then B). Deterministic in `seed`.
NamedTensors init_lora(CausalLM& model, const LoraOptions& o, uint64_t seed);

// Attaches adapters holding `values` (init_lora's names and shapes, converted to the model's dtype
// and device) and freezes every base parameter. The model must have no adapters yet.
void add_lora(CausalLM& model, const LoraOptions& o, const NamedTensors& values);

bool has_lora(const CausalLM& model);
bool is_lora_parameter(const std::string& name);  // "...lora_A.weight" or "...lora_B.weight"
// The adapter parameters, in named_parameters() order.
NamedTensors lora_parameters(CausalLM& model);
// The key of parameter `name` in adapter_model.safetensors: "base_model.model." + name.
std::string peft_key(const std::string& name);

// Turns every adapter on or off (off: the base model's forward, bit for bit).
void set_lora_enabled(CausalLM& model, bool enabled);

// While alive, the model computes without its adapters (PEFT's disable_adapter()).
class LoraDisabled {
 public:
  explicit LoraDisabled(CausalLM& model) : model_(model) { set_lora_enabled(model_, false); }
  ~LoraDisabled() { set_lora_enabled(model_, true); }
  LoraDisabled(const LoraDisabled&) = delete;
  LoraDisabled& operator=(const LoraDisabled&) = delete;

 private:
  CausalLM& model_;
};

// A second model for sampling: it shares `model`'s frozen base weights (the same storage, no copy)
// and holds its own adapters, equal to the model's now. A rollout worker that samples an older
// version while the trainer updates costs the adapters alone.
CausalLM adapter_replica(CausalLM& model);

// W += (alpha / r) B A for every adapter (in float32, rounded once to W's dtype), then removes the
// adapters and unfreezes the base: the model becomes a plain checkpoint with the adapted forward.
void merge_lora(CausalLM& model);

// An adapter folder: adapter_config.json (PEFT's keys) and adapter_model.safetensors.
bool is_adapter_dir(const std::filesystem::path& dir);

struct AdapterConfig {
  LoraOptions lora;
  std::filesystem::path base_model;  // base_model_name_or_path
};
// Reads adapter_config.json; errors name what r1 cannot represent (DoRA, rank_pattern, bias, ...).
AdapterConfig read_adapter_config(const std::filesystem::path& dir);

// Writes adapter_config.json and adapter_model.safetensors into `dir` (created if needed).
// `values`: written instead of the adapter parameters, in lora_parameters() order (float32 masters).
void write_adapter(CausalLM& model, const std::filesystem::path& dir, at::ScalarType dtype,
                   const std::vector<at::Tensor>* values = nullptr);

// The adapter values of `dir` by parameter name (CPU tensors in the file's dtype). Every adapter
// of `model` must be there with its shape and nothing else may be: errors name the tensor.
NamedTensors read_adapter_weights(CausalLM& model, const std::filesystem::path& dir);

// Copies `dir`'s adapter values into the model's adapters (read_adapter_weights' checks).
void load_adapter_weights(CausalLM& model, const std::filesystem::path& dir);

// The base model of an adapter folder with its adapters attached and loaded.
CausalLM load_adapter_model(const std::filesystem::path& dir, const at::TensorOptions& opts);

// r1 export --merge-lora: the adapter folder's base loaded in float32, the adapters merged, saved
// as a Hugging Face checkpoint in `dtype` (none: the base's torch_dtype) into `out` (atomic), with
// the tokenizer files of the adapter folder, else of the base.
void export_merged(const std::filesystem::path& adapter_dir, const std::filesystem::path& out,
                   std::optional<Dtype> dtype);

}  // namespace r1
