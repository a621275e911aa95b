// [model] options: which Hugging Face checkpoint the policy loads, in which dtype, on which device.
#pragma once
#include "common/config_fields.hpp"

#ifndef R1_DEFAULT_MODEL
#define R1_DEFAULT_MODEL "models/tiny"
#endif

namespace r1 {

struct PolicyOptions {
#define R1_POLICY_FIELDS(F)                                                                          \
  F(std::string, path, R1_DEFAULT_MODEL,                                                             \
    "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); default: the embedded tiny model", \
    !x.empty())                                                                                      \
  F(std::string, dtype, "float32", "parameter and compute dtype: float32 | bfloat16 | float16",     \
    x == "float32" || x == "bfloat16" || x == "float16")                                             \
  F(std::string, device, "cpu", "cpu | cuda | cuda:N", x == "cpu" || x.rfind("cuda", 0) == 0)       \
  F(int64_t, threads, 0, "CPU threads for LibTorch (0: all cores)", x >= 0)
  R1_CONFIG(PolicyOptions, R1_POLICY_FIELDS)
};

}  // namespace r1
