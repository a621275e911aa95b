// The architecture of a Hugging Face decoder checkpoint, read from its config.json with explicit
// keys: a missing required key or an unsupported feature (rope_scaling type, sliding window,
// activation) is an error naming the key, never a guess. Covers model_type llama, qwen2, qwen3.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace r1 {

struct RopeScaling {
  std::string type = "default";  // "default" (none) or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;  // llama | qwen2 | qwen3
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 0;
  double rope_theta = 0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections carry a bias (Qwen2; Llama/Qwen3 attention_bias)
  bool o_bias = false;    // o_proj carries a bias (Llama/Qwen3 attention_bias)
  bool mlp_bias = false;  // gate/up/down carry a bias (Llama mlp_bias)
  bool qk_norm = false;   // per-head RMSNorm on q and k (Qwen3)
  std::string dtype;      // torch_dtype / dtype as saved ("float32", "bfloat16", ...); may be empty
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  boost::json::object raw;  // config.json as read; saved back with only dtype updated

  static ModelConfig from_json(const boost::json::object& obj, const std::string& where);
  static ModelConfig from_file(const std::filesystem::path& config_json);
  std::string to_json() const;  // config.json text for saving
};

}  // namespace r1
