// [model] options: which Hugging Face checkpoint the policy loads, in which dtype, on which device;
// [lora] options: the low-rank adapters trained instead of the full weights (policy/lora.hpp).
#pragma once
#include <array>
#include <filesystem>
#include <vector>

#include "common/config_fields.hpp"
#include "common/install.hpp"

namespace r1 {

enum class Dtype { float32, bfloat16, float16 };
constexpr std::array<const char*, 3> enum_names(Dtype) { return {"float32", "bfloat16", "float16"}; }

struct PolicyOptions {
#define R1_POLICY_FIELDS(F)                                                                             \
  F(std::string, path, "",                                                                              \
    "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); empty: the embedded tiny " \
    "model (share/r1/models/tiny beside the r1 program)",                                               \
    true)                                                                                               \
  F(Dtype, dtype, Dtype::float32, "parameter and compute dtype: float32 | bfloat16 | float16", true)    \
  F(std::string, device, "cpu", "cpu | cuda | cuda:N", x == "cpu" || x.rfind("cuda", 0) == 0)           \
  F(int64_t, threads, 0, "CPU threads for LibTorch (0: all cores)", x >= 0)                             \
  F(double, memory_limit_gb, 0,                                                                         \
    "r1 train refuses a run whose memory plan (r1 train --plan) exceeds this many GB per device "       \
    "(0: the device's memory)",                                                                         \
    x >= 0)
  R1_CONFIG(PolicyOptions, R1_POLICY_FIELDS)
  // The model folder: `path`, or the embedded tiny model when it is empty.
  std::filesystem::path model_dir() const {
    return path.empty() ? share_dir() / "models" / "tiny" : std::filesystem::path(path);
  }
};

// A projection LoRA can adapt, by its PEFT module name; all-linear: every one of them (as PEFT's
// "all-linear", which leaves the output layer out).
enum class LoraTarget { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all_linear };
constexpr std::array<const char*, 8> enum_names(LoraTarget) {
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "all-linear"};
}

struct LoraOptions {
#define R1_LORA_FIELDS(F)                                                                                    \
  F(int64_t, rank, 0,                                                                                        \
    "LoRA rank r (0: full fine-tuning). The base weights are frozen; each targeted projection W gains "      \
    "A [r, in] and B [out, r] and computes W x + (alpha / r) B A x",                                         \
    x >= 0)                                                                                                  \
  F(double, alpha, 16, "scaling numerator: adapters are scaled by alpha / rank", x > 0)                      \
  F(double, dropout, 0.0, "dropout on each adapter's input in training forwards (rollouts never drop)",      \
    x >= 0 && x < 1)                                                                                         \
  F(std::vector<LoraTarget>, target_modules, (std::vector<LoraTarget>{LoraTarget::all_linear}),              \
    "projections that get adapters, by PEFT name: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, " \
    "or all-linear",                                                                                         \
    !x.empty())
  R1_CONFIG(LoraOptions, R1_LORA_FIELDS)
  bool enabled() const { return rank > 0; }
};

}  // namespace r1
