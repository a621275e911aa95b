// [model] options: which Hugging Face checkpoint the policy loads, in which dtype, on which device.
#pragma once
#include <array>

#include <filesystem>

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

}  // namespace r1
