// The policy: one decoder-only transformer for Llama 3, Qwen2/Qwen2.5 and Qwen3 (RMSNorm, RoPE,
// grouped-query attention, optional q/k/v bias and q/k norm, SwiGLU MLP, tied or untied
// embeddings). Module and parameter names mirror Hugging Face: model.layers.0.self_attn.q_proj.weight.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/model_config.hpp"
#include "policy/options.hpp"
#include "policy/paged_kv.hpp"
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

// A contiguous KV cache for one forward at a time: per layer k and v of [B, Hkv, S_max, D], positions
// [0, length) filled for every row. hidden() appends to it; the shared-prefix forward uses it per
// layer. Generation uses the paged cache (policy/paged_kv.hpp).
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length = 0;  // filled positions
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  static KVCache allocate(const ModelConfig& c, int64_t batch, int64_t max_len, const at::TensorOptions& opts);
};

// One forward over the paged KV cache: row b runs its new tokens (right-padded to T) after the
// past[b] keys it already holds, writes their keys and values into `slots`, and attends to its own
// keys only, through its block table. Host-side values ride along so that no call reads a device
// tensor back.
struct PagedInput {
  at::Tensor input_ids;     // [B, T] int64, right-padded
  at::Tensor positions;     // [B, T] int64 RoPE positions
  at::Tensor slots;         // [B, T] int64 flat slots (block * block_size + offset); padding: the scratch block
  at::Tensor block_tables;  // [B, max_blocks] int32: each row's blocks after this call, scratch block 0 after them
  at::Tensor past;          // [B] int64 keys each row held before this call
  at::Tensor lengths;       // [B] int64 keys each row holds after it (past + its new tokens)
  int64_t max_len = 0;      // max of lengths
  bool fresh = false;       // no row holds keys yet: attention runs over this call's keys alone (causal)
};

// What every layer of a forward_paged call with past keys shares, made once per call.
struct PagedKeys {
  at::Tensor mask;    // [B, 1, T, S] bool: query t of row b sees keys [0, past[b] + t]
  at::Tensor key_ok;  // [B, 1, S, 1] bool: key slots that hold the row's keys
  at::Tensor tables;  // [B, max_blocks] int64 block tables, for gathering
};

// Builds a PagedInput on the host: add() each row's new tokens (their slots are appended to the
// row's table), then to() the model's device in one go.
// The PagedInput over `columns` [B, 3 T + 2 + max_blocks] int64 on the model's device (PagedBatch::host's
// layout): views into it, the block tables as int32.
PagedInput paged_input(const at::Tensor& columns, int64_t T, int64_t max_len, bool fresh);

class PagedBatch {
 public:
  void add(PagedKVCache& cache, BlockTable& table, const std::vector<int64_t>& tokens);
  PagedInput to(const at::Device& device) const;  // fresh when no row had past keys
  // Every int64 column of the call in one host tensor [rows, 3 T + 2 + max_blocks]: per row T ids,
  // T positions, T slots, past, length, then the block table padded with the scratch block 0.
  // Rows past rows() are padding: token 0 at the scratch slot, one key (the call then takes a
  // fixed batch size and table width, as a CUDA graph does).
  at::Tensor host(int64_t rows, int64_t max_blocks) const;
  int64_t max_blocks() const;  // the widest row's block table
  int64_t rows() const { return static_cast<int64_t>(tables_.size()); }
  int64_t width() const { return width_; }  // T: the longest row's new tokens

 private:
  std::vector<std::vector<int64_t>> ids_, slots_;
  std::vector<int64_t> past_, lengths_;
  std::vector<const BlockTable*> tables_;
  int64_t width_ = 0;
  bool any_past_ = false;
};

// Which scaled-dot-product-attention kernel LibTorch picks for a call, by name: "math", "flash_attention",
// "efficient_attention", "cudnn_attention", "overrideable" or "error".
std::string sdpa_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const std::optional<at::Tensor>& mask, bool causal, bool gqa);

// The attention calls of a run, each with the SDPA kernel it gets on `opts`' device and dtype: the
// training prompt pass (causal over the prompts), the training completion pass (masked, against
// the prompts' keys), prefill (causal) and decode (gathered keys, masked; on CPU in float32 the
// fused kernel instead). Shapes from `rows` sequences of `prompt` + `completion` tokens.
struct SdpaCall {
  std::string call, backend;
  std::vector<int64_t> q, k;  // [B, heads, T, D] of the query and the keys as passed
  bool mask = false;
};
std::vector<SdpaCall> sdpa_calls(const ModelConfig& c, const at::TensorOptions& opts, int64_t rows, int64_t prompt,
                                 int64_t completion);
// Prints sdpa_calls() to stderr, with a warning for each call that gets the math fallback. Once
// per process and device type; nothing on CPU.
void log_sdpa_calls(const ModelConfig& c, const at::TensorOptions& opts, int64_t rows, int64_t prompt,
                    int64_t completion);

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
  // The same over the paged cache (generic ATen path): `p` of the call, `keys` for calls with past
  // keys (empty when p.fresh).
  at::Tensor forward_paged(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const PagedInput& p,
                           const PagedKeys& keys, PagedKVCache& cache, int64_t layer);
  // Queries [B, Hq, T, D] and keys, values [B, T, Hkv, D], normed and rotated.
  std::array<at::Tensor, 3> project(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
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
  at::Tensor forward_paged(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const PagedInput& p,
                           const PagedKeys& keys, PagedKVCache& cache, int64_t layer);
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
  // Final-norm hidden states [B, T, H] of a forward over the paged cache (PagedInput), the same math
  // as hidden() on each row's own tokens. One-token calls in float32 or bfloat16 on CPU run fused
  // kernels (policy/cpu_kernels.hpp; bfloat16: only the GEMMs in bfloat16); the rest ATen, where
  // calls with past keys gather them by block table.
  at::Tensor forward_paged(const PagedInput& in, PagedKVCache& cache);
  // Whether one-token paged calls run the fused CPU kernels (float32 or bfloat16 on CPU with AVX2
  // and a supported head_dim, outside grad mode).
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
  bool recomputes_layer(int64_t layer) const;
  // `run` on decoder layer `layer`, between layer_hooks' calls.
  std::vector<at::Tensor> hooked(int64_t layer, const std::function<std::vector<at::Tensor>()>& run);
  at::Tensor fused_decode(const PagedInput& in, PagedKVCache& cache);  // [B, H]
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
