// The policy: one decoder-only transformer for Llama 3, Qwen2/Qwen2.5 and Qwen3 (RMSNorm, RoPE,
// grouped-query attention, optional q/k/v bias and q/k norm, SwiGLU MLP, tied or untied
// embeddings). Module and parameter names mirror Hugging Face: model.layers.0.self_attn.q_proj.weight.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "policy/model_config.hpp"
#include "policy/options.hpp"
#include "policy/tokenizer.hpp"

namespace r1 {

// y = x W^T + b; parameters are allocated uninitialised (a checkpoint fills them). With a LoRA
// adapter attached (policy/lora.hpp) and enabled, y += lora_scale * B A dropout(x), as PEFT computes it.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;                     // [out, in], [out]
  std::shared_ptr<LinearImpl> lora_A, lora_B;  // weights [r, in] and [out, r]; null: no adapter
  double lora_scale = 0;                       // alpha / r
  double lora_dropout = 0;                     // on x, in training forwards (train mode and grad mode)
  bool lora_enabled = true;                    // false: the base projection alone (the KL reference)
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& ids);  // [B, T] -> [B, T, H]
  at::Tensor weight;                          // [V, H]
};
TORCH_MODULE(Embedding);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);  // normalises the last dim in float32, like HF
  at::Tensor weight;                        // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

// Preallocated KV cache: per layer k and v of [B, Hkv, S_max, D]. Positions [0, length) are filled
// for every row; rows with shorter prompts are left-padded and masked out by the attention mask.
// With a shared prefix (the G samples of one prompt), positions [0, prefix_len()) of row b are row
// prefix_of[b] of prefix_k / prefix_v [R, Hkv, prefix_len, D], stored once for all its samples, and
// the row's own slots k / v [B, Hkv, S_own, D] hold positions prefix_len(), prefix_len() + 1, ...
struct KVCache {
  std::vector<at::Tensor> k, v;
  std::vector<at::Tensor> prefix_k, prefix_v;  // empty: no shared prefix
  at::Tensor prefix_of;                        // [B] int64, with a shared prefix
  int64_t length = 0;                          // filled positions, prefix included
  int64_t prefix_len() const { return prefix_k.empty() ? 0 : prefix_k[0].size(2); }
  int64_t capacity() const { return prefix_len() + (k.empty() ? 0 : k[0].size(2)); }
  int64_t batch() const { return k.empty() ? 0 : k[0].size(0); }
  static KVCache allocate(const ModelConfig& c, int64_t batch, int64_t max_len, const at::TensorOptions& opts);
  // A cache whose B' rows continue the filled positions of this cache's rows `of` [B'] (int64), kept
  // once as their shared prefix, with room for `own_capacity` more positions per row.
  KVCache share_prefix(const at::Tensor& of, int64_t own_capacity) const;
  // Keeps only the given rows (finished sequences leave the batch). `rows`: int64 [B'].
  void select_rows(const at::Tensor& rows);
};

struct RopeTable {
  at::Tensor inv_freq;  // [D/2] float32, with llama3 scaling applied
  static RopeTable make(const ModelConfig& c, const at::Device& device);
  // cos, sin of [B, T, D] in `dtype` for positions [B, T].
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions, at::ScalarType dtype) const;
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& c, const at::TensorOptions& opts);
  // x [B, T, H]; cos/sin [B, T, D]; mask [B, 1, T, S] bool (true = attend) or undefined (causal).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     KVCache* cache, int64_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
  int64_t heads, kv_heads, head_dim;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(const ModelConfig& c, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);  // down(silu(gate(x)) * up(x))
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     KVCache* cache, int64_t layer);
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// HF's "model" submodule: embeddings, layers, final norm.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelConfig& c, const at::TensorOptions& opts);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

// What one forward step sees. Positions and mask let one call serve padded training batches,
// prefill of left-padded prompts, and cached decoding.
struct ForwardInput {
  at::Tensor input_ids;  // [B, T] int64
  at::Tensor positions;  // [B, T] int64 RoPE positions; undefined: cache.length + arange(T)
  at::Tensor mask;       // [B, 1, T, S] bool, S = cached + T; undefined: plain causal
};

// Rows that continue shared prefixes (a GRPO group's G completions of one prompt): each prefix
// runs once, and its keys and values, with their gradients, are shared by the rows continuing it.
// A row may also hold several continuations back to back (packing, so that short completions fill
// what long ones leave empty), even of different prefixes: each token sees its own prefix and the
// earlier tokens of its own continuation only, at the positions it would have alone.
struct SharedPrefixInput {
  at::Tensor prefix_ids;  // [U, P] int64, right-padded
  at::Tensor prefix_len;  // [U] int64, valid tokens of each prefix, >= 1
  at::Tensor suffix_ids;  // [B, T] int64, right-padded; row b continues prefix prefix_of[b]
  at::Tensor prefix_of;   // [B] or [B, M] int64: the prefixes row b continues (index in [0, U); -1 after the last)
  at::Tensor suffix_pos;  // [B, T] int64: each token's offset in its own continuation; undefined: 0 .. T-1
  at::Tensor suffix_seg;  // [B, T] int64: which continuation of the row a token is in (-1: padding); undefined: one
  at::Tensor suffix_src;  // [B, T] int64 in [0, M): which of the row's prefixes the token continues; undefined: 0
};

struct SharedPrefixHidden {
  at::Tensor prefix;  // [U, P, H] final-norm hidden states of the prefixes
  at::Tensor suffix;  // [B, T, H] those of the continuations, as if each row ran prefix + suffix alone
};

// Called around each decoder layer of hidden() and hidden_shared(), its recompute in backward
// included: before(layer) ahead of the layer's forward, after(layer, outputs) once it returned.
// ZeRO stage 3 (rl/zero.hpp) gathers a layer's weights there and frees them after. Hooks must not
// change results.
struct LayerHooks {
  virtual ~LayerHooks() = default;
  virtual void before(int64_t layer) = 0;
  virtual void after(int64_t layer, const std::vector<at::Tensor>& outputs) = 0;
};

class CausalLMImpl : public torch::nn::Module {
 public:
  CausalLMImpl(ModelConfig c, const at::TensorOptions& opts);

  // Final-norm hidden states [B, T, H]. Appends this step's keys and values to `cache` if given.
  at::Tensor hidden(const ForwardInput& in, KVCache* cache = nullptr);
  // The same hidden states for rows sharing prefixes, with each prefix computed once. Differentiable.
  SharedPrefixHidden hidden_shared(const SharedPrefixInput& in);
  // Activation checkpointing of differentiable forwards (hidden() without a cache, hidden_shared()):
  // decoder layers 0, every, 2 every, ... keep only their inputs and are recomputed in backward
  // (policy/recompute.hpp). 0: off. Results and gradients are unchanged.
  void set_activation_checkpointing(int64_t every);
  int64_t activation_checkpointing() const { return checkpoint_every_; }
  // One decoding step, the same math as hidden() with T = 1: ids [B] and RoPE positions [B] int64;
  // key_valid [B, >= cache.length + 1] bool, false for padding slots. Appends to `cache` and returns
  // final-norm hidden states [B, H]. float32 on CPU runs fused kernels (policy/cpu_kernels.hpp).
  at::Tensor decode(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_valid, KVCache& cache);
  // Whether decode() runs the fused CPU kernels (float32 on CPU with AVX2 and a supported head_dim,
  // outside grad mode). Shared-prefix caches pay off there; elsewhere they are materialized per step.
  bool fused_decode_available() const;
  // Logits [.., V] in float32 for hidden states [.., H]; banned ids get -inf.
  at::Tensor logits(const at::Tensor& hidden);
  // The output projection [V, H] (the embedding matrix when tied).
  const at::Tensor& lm_head_weight() const;
  // Ids that must never be produced: those with no token in `tok` (checkpoints pad the output
  // layer past the tokenizer: Qwen2.5's 151,936 logits for 151,665 tokens). logits() gives them
  // -inf, and completion log-probs are over the other ids, so sampler and trainer agree.
  // The first call decides; later ones (engines created on the same module) change nothing.
  void ban_ids_without_token(const Tokenizer& tok);
  const at::Tensor& banned_ids() const { return banned_; }  // [V] bool on the model's device; undefined: none

  const ModelConfig& config() const { return config_; }
  at::TensorOptions options() const { return opts_; }
  // The folder the weights were loaded from (load_pretrained), written into adapter configs as
  // base_model_name_or_path; empty for a model built in memory.
  std::filesystem::path source_dir;
  // The attached LoRA adapters (policy/lora.hpp); rank 0: none.
  LoraOptions lora;
  LayerHooks* layer_hooks = nullptr;  // none: plain forwards

  Decoder model{nullptr};
  Linear lm_head{nullptr};  // absent when tie_word_embeddings

 private:
  bool fused_decode_applies(const KVCache& cache) const;
  bool recomputes_layer(int64_t layer) const;
  // `run` on decoder layer `layer`, between layer_hooks' calls.
  std::vector<at::Tensor> hooked(int64_t layer, const std::function<std::vector<at::Tensor>()>& run);
  at::Tensor fused_decode(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_valid,
                          KVCache& cache);
  ModelConfig config_;
  at::TensorOptions opts_;
  RopeTable rope_;
  at::Tensor banned_;
  bool banned_checked_ = false;
  int64_t checkpoint_every_ = 0;
};
TORCH_MODULE(CausalLM);

// Attention mask [B, 1, T, S] for `key_valid` [B, S] (false for padding) where the T queries sit
// at key positions S-T .. S-1. Each query always sees itself, so padded rows stay finite.
at::Tensor causal_mask(const at::Tensor& key_valid, int64_t query_len);

}  // namespace r1
