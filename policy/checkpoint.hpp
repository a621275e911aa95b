// Loading and saving Hugging Face checkpoints. Every parameter of the model must come from the
// checkpoint with the right shape, and every tensor in the checkpoint must be a parameter: a
// missing, unexpected or wrong-shaped tensor is an error that names it. Saves are atomic folders.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "policy/model.hpp"
#include "policy/options.hpp"

namespace r1 {

// The scalar type of a [model] dtype, and the at::TensorOptions for it on `device`.
at::ScalarType scalar_type(Dtype dtype);
at::TensorOptions tensor_options(Dtype dtype, const std::string& device);

// Loads config.json and the safetensors weights in `dir`, converted to the options' dtype/device.
// A PEFT adapter folder (adapter_config.json, no config.json) loads its base model
// (base_model_name_or_path) with the adapters attached (policy/lora.hpp).
CausalLM load_pretrained(const std::filesystem::path& dir, const at::TensorOptions& opts);
CausalLM load_pretrained(const PolicyOptions& options);

struct SaveOptions {
  int64_t max_shard_bytes = int64_t{5} << 30;  // shard above this size
  std::optional<Dtype> dtype;                  // none: the model's dtype
  std::filesystem::path copy_tokenizer_from;   // copy tokenizer files from this folder if set
  // Saved instead of the model's parameters, in named_parameters() order, or lora_parameters()
  // order for a model with adapters (a trainer's float32 masters of a bfloat16 model); null: the
  // parameters.
  const std::vector<at::Tensor>* values = nullptr;
};

// Writes config.json, model.safetensors (or shards + index) and tokenizer files into `dir`:
// built in a temp folder beside it, fsynced, then renamed over `dir`. A model with LoRA adapters
// writes its adapters instead, as PEFT does (adapter_config.json, adapter_model.safetensors);
// merge_lora() first gives a full checkpoint.
void save_pretrained(CausalLM& model, const std::filesystem::path& dir, const SaveOptions& options = {});

// The same files written straight into `dir` (created if needed), for callers that make the
// enclosing folder atomic themselves (training checkpoints).
void write_pretrained(CausalLM& model, const std::filesystem::path& dir, const SaveOptions& options = {});

}  // namespace r1
