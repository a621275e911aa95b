#include "policy/model_config.hpp"

#include <boost/json/serialize.hpp>

#include "common/error.hpp"
#include "common/json.hpp"

namespace r1 {

namespace {

// The sizes: vocabulary, widths, layers and heads, all positive.
void read_sizes(const json::Object& o, const std::string& where, ModelConfig& c) {
  c.vocab_size = o.integer("vocab_size");
  c.hidden_size = o.integer("hidden_size");
  c.intermediate_size = o.integer("intermediate_size");
  c.num_hidden_layers = o.integer("num_hidden_layers");
  c.num_attention_heads = o.integer("num_attention_heads");
  c.num_key_value_heads = o.integer("num_key_value_heads");
  c.max_position_embeddings = o.integer("max_position_embeddings");
  c.rms_norm_eps = o.number("rms_norm_eps");
  c.tie_word_embeddings = o.boolean("tie_word_embeddings");
  for (auto [k, v] : {std::pair{"vocab_size", c.vocab_size},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"num_hidden_layers", c.num_hidden_layers},
                      {"num_attention_heads", c.num_attention_heads},
                      {"num_key_value_heads", c.num_key_value_heads}})
    R1_CHECK(v > 0, "{}: key '{}' must be positive, got {}", where, k, v);
  R1_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
           "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", where, c.num_attention_heads,
           c.num_key_value_heads);
}

// head_dim, stated or implied.
void read_head_dim(const json::Object& o, const std::string& where, ModelConfig& c) {
  // head_dim: Qwen3 always states it; Llama and Qwen2 define it as hidden_size / num_attention_heads
  // when the key is absent (that is the architecture's definition, not a guess).
  if (c.model_type == "qwen3")
    c.head_dim = o.integer("head_dim");
  else
    c.head_dim = o.integer_or("head_dim").value_or(c.hidden_size / c.num_attention_heads);
  R1_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "{}: head_dim must be positive and even, got {}", where, c.head_dim);
  if (!o.has("head_dim"))
    R1_CHECK(c.hidden_size % c.num_attention_heads == 0,
             "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}); add an explicit head_dim", where,
             c.hidden_size, c.num_attention_heads);
}

// Biases, q/k norm, sliding window and layer types, by architecture.
void read_attention(const json::Object& o, const std::string& where, ModelConfig& c) {
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
    R1_CHECK(!o.boolean_or("use_sliding_window").value_or(false),
             "{}: use_sliding_window = true is not supported; set it to false (Qwen2.5 ships it false)", where);
  }
  if (o.has("layer_types"))
    for (const auto& t : o.at("layer_types").as_array())
      R1_CHECK(t.is_string() && t.get_string() == "full_attention",
               "{}: layer_types holds '{}'; only full_attention layers are supported", where,
               t.is_string() ? std::string(t.get_string()) : std::string("?"));
  if (c.model_type != "qwen2") c.qkv_bias = c.o_bias = o.boolean("attention_bias");  // Qwen2: q/k/v bias, always
  if (c.model_type == "llama") c.mlp_bias = o.boolean_or("mlp_bias").value_or(false);
  if (c.model_type == "qwen3") c.qk_norm = true;
  if (o.has("attention_dropout"))
    R1_CHECK(o.number("attention_dropout") == 0.0, "{}: attention_dropout must be 0 for RL training", where);
}

// RoPE: theta and the scaling (default or llama3).
void read_rope(const json::Object& o, const std::string& where, ModelConfig& c) {
  // RoPE: transformers < 5 writes rope_theta + rope_scaling; transformers 5 writes rope_parameters.
  std::optional<json::Object> rope;
  if (o.has("rope_parameters")) {
    rope = o.object("rope_parameters");
    c.rope_theta = rope->number("rope_theta");
  } else {
    c.rope_theta = o.number("rope_theta");
    if (o.has("rope_scaling")) rope = o.object("rope_scaling");
  }
  if (rope) {
    std::string type = rope->has("rope_type") ? rope->string("rope_type") : rope->string("type");
    if (type == "llama3") {
      c.rope_scaling.type = type;
      c.rope_scaling.factor = rope->number("factor");
      c.rope_scaling.low_freq_factor = rope->number("low_freq_factor");
      c.rope_scaling.high_freq_factor = rope->number("high_freq_factor");
      c.rope_scaling.original_max_position_embeddings = rope->integer("original_max_position_embeddings");
    } else {
      R1_CHECK(type == "default", "{}: rope type '{}' is not supported (supported: default, llama3)", where, type);
    }
  }
  R1_CHECK(c.rope_theta > 0, "{}: rope_theta must be positive", where);
}

}  // namespace

ModelConfig ModelConfig::from_json(const boost::json::object& obj, const std::string& where) {
  json::Object o(obj, where);
  ModelConfig c;
  c.raw = obj;
  c.model_type = o.string("model_type");
  R1_CHECK(c.model_type == "llama" || c.model_type == "qwen2" || c.model_type == "qwen3",
           "{}: model_type '{}' is not supported (supported: llama, qwen2, qwen3)", where, c.model_type);

  read_sizes(o, where, c);
  std::string act = o.string("hidden_act");
  R1_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (only silu, as in SwiGLU)", where, act);

  read_head_dim(o, where, c);
  read_attention(o, where, c);
  read_rope(o, where, c);

  if (auto d = o.string_or("torch_dtype"))
    c.dtype = *d;
  else if (auto d2 = o.string_or("dtype"))
    c.dtype = *d2;
  c.bos_token_id = o.integer_or("bos_token_id");
  if (o.has("eos_token_id")) c.eos_token_ids = o.integers("eos_token_id");
  return c;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& config_json) {
  auto v = json::parse_file(config_json);
  R1_CHECK(v.is_object(), "{}: expected a JSON object", config_json.string());
  return from_json(v.get_object(), config_json.string());
}

std::string ModelConfig::to_json() const {
  boost::json::object o = raw;
  if (!dtype.empty()) {
    if (o.contains("dtype"))
      o["dtype"] = dtype;
    else
      o["torch_dtype"] = dtype;
  }
  return boost::json::serialize(o) + "\n";
}

}  // namespace r1
