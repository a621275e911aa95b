#include "policy/model.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "policy/cpu_kernels.hpp"
#include "policy/fused_ops.hpp"
#include "policy/recompute.hpp"

namespace r1 {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({out, in}, opts));
  if (with_bias) bias = register_parameter("bias", at::empty({out}, opts));
}

// Few-row inference calls (decode steps) take the weight-streaming kernel; the rest ATen. An
// adapted projection under autograd runs lora_linear (fused_ops.hpp), or with dropout the composite.
at::Tensor LinearImpl::forward(const at::Tensor& x) {
  const bool lora = lora_A && lora_enabled, grad = at::GradMode::is_enabled();
  const bool drop = lora && lora_dropout > 0 && is_training() && grad;
  if (lora && grad && !drop) return lora_linear(x, weight, bias, lora_A->weight, lora_B->weight, lora_scale);
  at::Tensor y = cpu::linear(x, weight, bias);  // [.., out]
  if (!lora) return y;
  at::Tensor low = cpu::linear(drop ? at::dropout(x, lora_dropout, true) : x, lora_A->weight, {});  // [.., r]
  at::Tensor delta = cpu::linear(low, lora_B->weight, {});                                          // [.., out]
  if (grad) return y + delta * lora_scale;
  return y.add_(delta.mul_(lora_scale));  // as lora_linear rounds
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({vocab, dim}, opts));
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids); }

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const at::TensorOptions& opts) : eps(eps_) {
  weight = register_parameter("weight", at::empty({dim}, opts));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) { return rms_norm(x, weight, eps); }

KVCache KVCache::allocate(const ModelConfig& c, int64_t batch, int64_t max_len, const at::TensorOptions& opts) {
  KVCache kv;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    kv.k.push_back(at::empty({batch, c.num_key_value_heads, max_len, c.head_dim}, opts));
    kv.v.push_back(at::empty({batch, c.num_key_value_heads, max_len, c.head_dim}, opts));
  }
  return kv;
}

RopeTable RopeTable::make(const ModelConfig& c, const at::Device& device) {
  // HF: 1 / theta^(arange(0, D, 2) / D), computed in float32.
  const int64_t d = c.head_dim;
  at::Tensor exps = at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv = 1.0 / at::pow(c.rope_theta, exps);
  if (c.rope_scaling.type == "llama3") {
    const auto& s = c.rope_scaling;
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / s.factor, inv);
    at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  return RopeTable{inv.to(device)};
}

std::pair<at::Tensor, at::Tensor> RopeTable::cos_sin(const at::Tensor& positions, at::ScalarType dtype) const {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [B, T, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                          // [B, T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

AttentionImpl::AttentionImpl(const ModelConfig& c, const at::TensorOptions& opts)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, heads * head_dim, c.qkv_bias, opts));
  k_proj = register_module("k_proj", Linear(c.hidden_size, kv_heads * head_dim, c.qkv_bias, opts));
  v_proj = register_module("v_proj", Linear(c.hidden_size, kv_heads * head_dim, c.qkv_bias, opts));
  o_proj = register_module("o_proj", Linear(heads * head_dim, c.hidden_size, c.o_bias, opts));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps, opts));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps, opts));
  }
}

std::array<at::Tensor, 3> AttentionImpl::project(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = q_proj(x).view({B, T, heads, head_dim});     // [B, T, Hq, D]
  at::Tensor k = k_proj(x).view({B, T, kv_heads, head_dim});  // [B, T, Hkv, D]
  at::Tensor v = v_proj(x).view({B, T, kv_heads, head_dim});  // [B, T, Hkv, D]
  const double eps = q_norm ? q_norm->eps : 0.0;
  q = norm_rope(q, q_norm ? q_norm->weight : at::Tensor(), eps, cos, sin).transpose(1, 2);  // [B, Hq, T, D]
  k = norm_rope(k, k_norm ? k_norm->weight : at::Tensor(), eps, cos, sin);                  // [B, T, Hkv, D]
  return {q, k, v};
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                  const at::Tensor& mask, KVCache* cache, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  auto [q, k, v] = project(x, cos, sin);
  k = k.transpose(1, 2), v = v.transpose(1, 2);  // [B, Hkv, T, D]
  bool causal = !mask.defined();
  if (cache) {
    const int64_t L = cache->length;
    TORCH_CHECK(L + T <= cache->capacity(), "KV cache full: ", L, " + ", T, " tokens > capacity ", cache->capacity());
    cache->k[layer].narrow(2, L, T).copy_(k);
    cache->v[layer].narrow(2, L, T).copy_(v);
    k = cache->k[layer].narrow(2, 0, L + T);  // [B, Hkv, S, D]
    v = cache->v[layer].narrow(2, 0, L + T);
    if (L > 0) {
      TORCH_CHECK(mask.defined() || T == 1, "cached forward of ", T, " tokens needs an explicit mask");
      causal = false;
    }
  }
  std::optional<at::Tensor> attn_mask;
  bool gqa = heads != kv_heads;
  if (mask.defined()) {
    attn_mask = mask;
    // LibTorch's fused CUDA kernels take a mask only without grouped-query heads: expand K/V there.
    if (gqa && !k.device().is_cpu())
      k = k.repeat_interleave(heads / kv_heads, 1), v = v.repeat_interleave(heads / kv_heads, 1), gqa = false;
  }
  at::Tensor out = at::scaled_dot_product_attention(q, k, v, attn_mask, /*dropout_p=*/0.0, causal,
                                                    /*scale=*/1.0 / std::sqrt(static_cast<double>(head_dim)),
                                                    gqa);  // [B, Hq, T, D]
  return o_proj(out.transpose(1, 2).reshape({B, T, heads * head_dim}));
}

MLPImpl::MLPImpl(const ModelConfig& c, const at::TensorOptions& opts) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, opts));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, opts));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, c.mlp_bias, opts));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) { return down_proj(at::silu(gate_proj(x)) * up_proj(x)); }

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, const at::TensorOptions& opts) {
  self_attn = register_module("self_attn", Attention(c, opts));
  mlp = register_module("mlp", MLP(c, opts));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                     const at::Tensor& mask, KVCache* cache, int64_t layer) {
  at::Tensor h = x + self_attn(input_layernorm(x), cos, sin, mask, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

at::Tensor DecoderLayerImpl::forward_paged(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                           const PagedInput& p, const PagedKeys& keys, PagedKVCache& cache,
                                           int64_t layer) {
  at::Tensor h = x + self_attn->forward_paged(input_layernorm(x), cos, sin, p, keys, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const ModelConfig& c, const at::TensorOptions& opts) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, opts));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, opts));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, opts));
}

CausalLMImpl::CausalLMImpl(ModelConfig c, const at::TensorOptions& opts)
    : config_(std::move(c)), opts_(opts), rope_(RopeTable::make(config_, opts.device())) {
  model = register_module("model", Decoder(config_, opts));
  if (!config_.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(config_.hidden_size, config_.vocab_size, false, opts));
}

const at::Tensor& CausalLMImpl::lm_head_weight() const {
  return config_.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

void CausalLMImpl::set_activation_checkpointing(int64_t every) {
  TORCH_CHECK(every >= 0, "activation checkpointing: every must be >= 0, got ", every);
  checkpoint_every_ = every;
}

std::vector<at::Tensor> CausalLMImpl::hooked(int64_t layer, const std::function<std::vector<at::Tensor>()>& run) {
  if (!layer_hooks) return run();
  layer_hooks->before(layer);
  std::vector<at::Tensor> y = run();
  layer_hooks->after(layer, y);
  return y;
}

bool CausalLMImpl::recomputes_layer(int64_t layer) const {
  return checkpoint_every_ > 0 && layer % checkpoint_every_ == 0 && at::GradMode::is_enabled();
}

at::Tensor CausalLMImpl::hidden(const ForwardInput& in, KVCache* cache) {
  TORCH_CHECK(in.input_ids.dim() == 2, "input_ids must be [B, T], got ", in.input_ids.sizes());
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  const int64_t past = cache ? cache->length : 0;
  at::Tensor positions = in.positions;
  if (!positions.defined())
    positions = at::arange(past, past + T, in.input_ids.options().dtype(at::kLong)).unsqueeze(0).expand({B, T});
  at::Tensor mask = in.mask;
  if (!mask.defined() && past > 0 && T > 1)
    mask = causal_mask(at::ones({B, past + T}, in.input_ids.options().dtype(at::kBool)), T);

  at::Tensor x = model->embed_tokens(in.input_ids);  // [B, T, H]
  auto [cos, sin] = rope_.cos_sin(positions, x.scalar_type());
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers->ptr<DecoderLayerImpl>(i);
    const auto l = static_cast<int64_t>(i);
    if (!cache && recomputes_layer(l))
      x = recompute_in_backward(
          [this, l, layer, cos, sin, mask](const std::vector<at::Tensor>& v) -> std::vector<at::Tensor> {
            return hooked(l, [&] { return std::vector<at::Tensor>{layer->forward(v[0], cos, sin, mask, nullptr, 0)}; });
          },
          {x})[0];
    else
      x = hooked(l, [&] { return std::vector<at::Tensor>{layer->forward(x, cos, sin, mask, cache, l)}; })[0];
  }
  if (cache) cache->length += T;
  return model->norm(x);
}

namespace {

// What every layer of a shared-prefix forward sees besides its inputs.
struct SharedLayerContext {
  at::Tensor cos_p, sin_p;  // [U, P, D] the prefixes' RoPE
  at::Tensor cos_s, sin_s;  // [B, T, D] the continuations' RoPE
  at::Tensor mask;          // [B, 1, T, M P + T] what each continuation token attends to
  at::Tensor of;            // [B, M] int64 in [0, U): the prefixes each row's keys start with
};

// One decoder layer over the prefixes xp [U, P, H] and the rows continuing them xs [B, T, H]:
// the prefixes causally, then each row against its prefixes' keys and values (whose gradients sum
// back per prefix). Returns {yp [U, P, H], ys [B, T, H]}.
std::vector<at::Tensor> shared_layer(DecoderLayerImpl& layer, const SharedLayerContext& c, const at::Tensor& xp,
                                     const at::Tensor& xs) {
  const int64_t U = xp.size(0), P = xp.size(1), B = xs.size(0), T = xs.size(1), M = c.of.size(1);
  const int64_t kv_heads = layer.self_attn->kv_heads, D = layer.self_attn->head_dim;
  KVCache kv;  // one layer: [U, Hkv, P, D]
  kv.k = {at::empty({U, kv_heads, P, D}, xp.options())};
  kv.v = {at::empty({U, kv_heads, P, D}, xp.options())};
  at::Tensor yp = layer.forward(xp, c.cos_p, c.sin_p, {}, &kv, 0);  // causal: right padding reaches no valid token
  // Each row's keys: its M prefixes, then room for its own T tokens (written before they are read).
  KVCache rows;
  for (auto [src, dst] : {std::pair{&kv.k, &rows.k}, std::pair{&kv.v, &rows.v}}) {
    std::vector<at::Tensor> parts;
    for (int64_t m = 0; m < M; ++m) parts.push_back((*src)[0].index_select(0, c.of.select(1, m)));  // [B, Hkv, P, D]
    parts.push_back(at::empty({B, kv_heads, T, D}, xp.options()));
    dst->push_back(at::cat(parts, 2));  // [B, Hkv, M P + T, D]
  }
  rows.length = M * P;
  return {yp, layer.forward(xs, c.cos_s, c.sin_s, c.mask, &rows, 0)};
}

}  // namespace

SharedPrefixHidden CausalLMImpl::hidden_shared(const SharedPrefixInput& in) {
  TORCH_CHECK(in.prefix_ids.dim() == 2 && in.suffix_ids.dim() == 2, "hidden_shared: prefix_ids and suffix_ids must be ",
              "[U, P] and [B, T], got ", in.prefix_ids.sizes(), " and ", in.suffix_ids.sizes());
  const int64_t U = in.prefix_ids.size(0), P = in.prefix_ids.size(1);
  const int64_t B = in.suffix_ids.size(0), T = in.suffix_ids.size(1);
  const at::Tensor of = in.prefix_of.dim() == 1 ? in.prefix_of.unsqueeze(1).to(at::kLong) : in.prefix_of.to(at::kLong);
  TORCH_CHECK(in.prefix_len.dim() == 1 && in.prefix_len.size(0) == U && of.dim() == 2 && of.size(0) == B,
              "hidden_shared: prefix_len must be [U = ", U, "] and prefix_of [B = ", B, "] or [B, M], got ",
              in.prefix_len.sizes(), " and ", in.prefix_of.sizes());
  TORCH_CHECK(U > 0 && in.prefix_len.min().item<int64_t>() >= 1 && in.prefix_len.max().item<int64_t>() <= P,
              "hidden_shared: prefix_len must be in [1, P = ", P, "]");
  TORCH_CHECK(B == 0 || (of.select(1, 0).min().item<int64_t>() >= 0 && of.max().item<int64_t>() < U),
              "hidden_shared: prefix_of must index the ", U, " prefixes (each row at least one)");
  for (const at::Tensor* t : {&in.suffix_pos, &in.suffix_seg, &in.suffix_src})
    TORCH_CHECK(!t->defined() || t->sizes() == in.suffix_ids.sizes(),
                "hidden_shared: suffix_pos, suffix_seg and suffix_src must be [B, T] like suffix_ids, got ",
                t->sizes());
  SharedPrefixHidden out;
  if (T == 0 || B == 0) {
    out.prefix = hidden({in.prefix_ids});
    out.suffix = at::empty({B, T, config_.hidden_size}, out.prefix.options());
    return out;
  }
  const auto ids_opts = in.prefix_ids.options().dtype(at::kLong);
  const int64_t M = of.size(1);
  SharedLayerContext c;
  c.of = of.clamp_min(0);  // unused list slots read prefix 0, masked out below
  const at::Tensor pos = in.suffix_pos.defined() ? in.suffix_pos.to(at::kLong)
                                                 : at::arange(T, ids_opts).unsqueeze(0).expand({B, T});  // [B, T]
  const at::Tensor seg = in.suffix_seg.defined() ? in.suffix_seg.to(at::kLong) : at::zeros({B, T}, ids_opts);
  const at::Tensor src = in.suffix_src.defined() ? in.suffix_src.to(at::kLong) : at::zeros({B, T}, ids_opts);
  const at::Tensor lens = in.prefix_len.to(at::kLong).index_select(0, c.of.flatten()).view({B, M});  // [B, M]
  const at::Tensor len = lens.gather(1, src);  // [B, T]: the length of each token's prefix
  // Key (m, j): prefix m's token j, seen by the tokens continuing prefix m while j is below its
  // length. Key M P + s: suffix token s, seen by its own continuation's tokens from its offset on.
  const at::Tensor m_of_key = at::arange(M, ids_opts).repeat_interleave(P);                     // [M P]
  const at::Tensor j_of_key = at::arange(P, ids_opts).repeat({M});                              // [M P]
  const at::Tensor prefix_ok = (src.unsqueeze(2) == m_of_key) & (j_of_key < len.unsqueeze(2));  // [B, T, M P]
  const at::Tensor suffix_ok = (seg.unsqueeze(2) == seg.unsqueeze(1)) & (pos.unsqueeze(1) <= pos.unsqueeze(2));
  c.mask = at::cat({prefix_ok, suffix_ok}, 2).unsqueeze(1);  // [B, 1, T, M P + T]
  at::Tensor xp = model->embed_tokens(in.prefix_ids), xs = model->embed_tokens(in.suffix_ids);
  std::tie(c.cos_p, c.sin_p) = rope_.cos_sin(at::arange(P, ids_opts).unsqueeze(0).expand({U, P}), xp.scalar_type());
  std::tie(c.cos_s, c.sin_s) = rope_.cos_sin(len + pos, xs.scalar_type());
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers->ptr<DecoderLayerImpl>(i);
    auto run = [this, l = static_cast<int64_t>(i), layer, c](const std::vector<at::Tensor>& v) {
      return hooked(l, [&] { return shared_layer(*layer, c, v[0], v[1]); });
    };
    std::vector<at::Tensor> y =
        recomputes_layer(static_cast<int64_t>(i)) ? recompute_in_backward(run, {xp, xs}) : run({xp, xs});
    xp = y[0], xs = y[1];
  }
  out.prefix = model->norm(xp);
  out.suffix = model->norm(xs);
  return out;
}

at::Tensor CausalLMImpl::logits(const at::Tensor& h) {
  at::Tensor z = cpu::linear(h, lm_head_weight(), {}).to(at::kFloat);
  return banned_.defined() ? z.masked_fill(banned_, -std::numeric_limits<float>::infinity()) : z;
}

void CausalLMImpl::ban_ids_without_token(const Tokenizer& tok) {
  if (banned_checked_) return;  // once: engines on a module that workers share call it again
  banned_checked_ = true;
  const int64_t V = config_.vocab_size;
  at::Tensor banned = at::zeros({V}, at::kBool);
  auto b = banned.accessor<bool, 1>();
  int64_t n = 0;
  for (int64_t id = 0; id < V; ++id)
    if (!tok.has_id(static_cast<TokenId>(id))) b[id] = true, ++n;
  banned_ = n > 0 ? banned.to(opts_.device()) : at::Tensor();
}

at::Tensor causal_mask(const at::Tensor& key_valid, int64_t query_len) {
  const int64_t S = key_valid.size(1);
  auto opts = key_valid.options().dtype(at::kLong);
  at::Tensor q_pos = at::arange(S - query_len, S, opts).unsqueeze(1);                         // [T, 1]
  at::Tensor k_pos = at::arange(0, S, opts).unsqueeze(0);                                     // [1, S]
  at::Tensor allowed = key_valid.to(at::kBool).unsqueeze(1).unsqueeze(1) & (k_pos <= q_pos);  // [B, 1, T, S]
  return allowed | (k_pos == q_pos);
}

}  // namespace r1
