// CausalLM::forward_paged: forwards over the paged KV cache (policy/paged_kv.hpp). One-token calls
// on CPU in float32 or bfloat16 are a few fused loops around the GEMMs (policy/cpu_kernels.hpp), reading each
// row's keys block by block with no mask; the rest is ATen: a call where no row holds keys yet is
// plain causal attention over its own keys, a call with past keys gathers them by block table.
#include <ATen/SDPBackend.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>

#include "policy/cpu_kernels.hpp"
#include "policy/fused_ops.hpp"
#include "policy/model.hpp"

namespace r1 {

std::string sdpa_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const std::optional<at::Tensor>& mask, bool causal, bool gqa) {
  const auto b = static_cast<at::SDPBackend>(at::_fused_sdp_choice(q, k, v, mask, 0.0, causal, std::nullopt, gqa));
  switch (b) {
    case at::SDPBackend::math: return "math";
    case at::SDPBackend::flash_attention: return "flash_attention";
    case at::SDPBackend::efficient_attention: return "efficient_attention";
    case at::SDPBackend::cudnn_attention: return "cudnn_attention";
    case at::SDPBackend::overrideable: return "overrideable";
    default: return "error";
  }
}

void PagedBatch::add(PagedKVCache& cache, BlockTable& table, const std::vector<int64_t>& tokens) {
  TORCH_CHECK(!tokens.empty(), "PagedBatch: a row needs at least one new token");
  past_.push_back(table.length);
  any_past_ = any_past_ || table.length > 0;
  slots_.emplace_back();
  cache.append(table, static_cast<int64_t>(tokens.size()), slots_.back());
  lengths_.push_back(table.length);
  ids_.push_back(tokens);
  tables_.push_back(&table);
  width_ = std::max<int64_t>(width_, static_cast<int64_t>(tokens.size()));
}

int64_t PagedBatch::max_blocks() const {
  size_t mb = 1;
  for (const auto* t : tables_) mb = std::max(mb, t->blocks.size());
  return static_cast<int64_t>(mb);
}

at::Tensor PagedBatch::host(int64_t rows, int64_t max_blocks) const {
  const int64_t B = this->rows(), T = width_;
  TORCH_CHECK(B > 0 && rows >= B && max_blocks >= this->max_blocks(), "PagedBatch: ", B, " rows of up to ",
              this->max_blocks(), " blocks do not fit [", rows, ", ", max_blocks, "]");
  // Padding: token 0, position 0, scratch slot 0, scratch block 0.
  at::Tensor host = at::zeros({rows, 3 * T + 2 + max_blocks}, at::kLong);
  auto h = host.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t t = 0; t < ids_[b].size(); ++t) {
      h[b][t] = ids_[b][t];
      h[b][T + t] = past_[b] + static_cast<int64_t>(t);
      h[b][2 * T + t] = slots_[b][t];
    }
    h[b][3 * T] = past_[b], h[b][3 * T + 1] = lengths_[b];
    for (size_t j = 0; j < tables_[b]->blocks.size(); ++j) h[b][3 * T + 2 + j] = tables_[b]->blocks[j];
  }
  for (int64_t b = B; b < rows; ++b) h[b][3 * T + 1] = 1;  // a padding row sees the scratch slot
  return host;
}

PagedInput paged_input(const at::Tensor& d, int64_t T, int64_t max_len, bool fresh) {
  const int64_t MB = d.size(1) - 3 * T - 2;
  TORCH_CHECK(d.dim() == 2 && MB >= 1, "paged_input: columns [B, 3 T + 2 + max_blocks] expected for T = ", T, ", got ",
              d.sizes());
  PagedInput in;
  in.input_ids = d.narrow(1, 0, T), in.positions = d.narrow(1, T, T), in.slots = d.narrow(1, 2 * T, T).contiguous();
  in.past = d.select(1, 3 * T), in.lengths = d.select(1, 3 * T + 1);
  in.block_tables = d.narrow(1, 3 * T + 2, MB).to(at::kInt);
  in.max_len = max_len, in.fresh = fresh;
  return in;
}

PagedInput PagedBatch::to(const at::Device& device) const {
  TORCH_CHECK(rows() > 0, "PagedBatch: no rows");
  // One host tensor for every int64 column: one copy to the device.
  return paged_input(host(rows(), max_blocks()).to(device), width_, *std::max_element(lengths_.begin(), lengths_.end()),
                     !any_past_);
}

namespace {

// Keys or values [B, heads, S, D] as a masked SDPA call takes them: on CUDA LibTorch's fused kernels
// take no grouped-query heads with a mask, so there they are expanded to the query heads.
bool expand_for_mask(const at::Tensor& k) { return !k.device().is_cpu(); }

// [B, Hkv, S, D] -> [B, Hkv * n, S, D], each head n times in a row (repeat_interleave on dim 1,
// written as a view and one copy, whatever the LibTorch version does for an int repeat count).
at::Tensor repeat_heads(const at::Tensor& k, int64_t n) {
  const int64_t B = k.size(0), H = k.size(1), S = k.size(2), D = k.size(3);
  return k.unsqueeze(2).expand({B, H, n, S, D}).reshape({B, H * n, S, D});
}

}  // namespace

std::vector<SdpaCall> sdpa_calls(const ModelConfig& c, const at::TensorOptions& opts, int64_t rows, int64_t prompt,
                                 int64_t completion) {
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const int64_t prompts = std::max<int64_t>(1, rows / 8), S = prompt + completion;
  const bool gqa = Hq != Hkv;
  std::vector<SdpaCall> out;
  auto probe = [&](std::string call, std::vector<int64_t> q, std::vector<int64_t> k, bool masked, bool causal) {
    const bool expand = masked && gqa && expand_for_mask(at::empty({0}, opts));
    if (expand) k[1] = Hq;
    at::Tensor qt = at::empty(q, opts), kt = at::empty(k, opts);
    std::optional<at::Tensor> mask;
    if (masked) mask = at::ones({q[0], 1, q[2], k[2]}, opts.dtype(at::kBool));
    out.push_back({std::move(call), sdpa_backend(qt, kt, kt, mask, causal, gqa && !expand), q, k, masked});
  };
  probe("training prompt pass", {prompts, Hq, prompt, D}, {prompts, Hkv, prompt, D}, false, true);
  probe("training completion pass", {rows, Hq, completion, D}, {rows, Hkv, S, D}, true, false);
  probe("prefill", {prompts, Hq, prompt, D}, {prompts, Hkv, prompt, D}, false, true);
  probe("decode", {rows, Hq, 1, D}, {rows, Hkv, S, D}, true, false);
  return out;
}

void log_sdpa_calls(const ModelConfig& c, const at::TensorOptions& opts, int64_t rows, int64_t prompt,
                    int64_t completion) {
  static std::mutex mu;
  static std::set<int> logged;
  if (opts.device().is_cpu()) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!logged.insert(static_cast<int>(opts.device().type())).second) return;
  }
  for (const auto& call : sdpa_calls(c, opts, rows, prompt, completion)) {
    fmt::print(stderr, "r1: attention, {}: q {} k {}{} -> {}\n", call.call, fmt::join(call.q, "x"),
               fmt::join(call.k, "x"), call.mask ? " masked" : " causal", call.backend);
    if (call.backend == "math")
      fmt::print(stderr, "r1: warning: the {} gets LibTorch's math attention (slow, memory-hungry) on {}\n", call.call,
                 opts.device().str());
  }
}

namespace {

// Keys or values [B, Hkv, S, D] of each row, gathered from `pool` [blocks, bs, Hkv, D] by block
// table [B, MB] (int64), zeroed where `key_ok` [B, 1, S, 1] is false (slots past a row's length
// hold whatever an earlier sequence left there).
at::Tensor gather_rows(const at::Tensor& pool, const at::Tensor& tables, int64_t S, const at::Tensor& key_ok) {
  const int64_t B = tables.size(0), MB = tables.size(1), bs = pool.size(1);
  at::Tensor g = pool.index_select(0, tables.flatten()).view({B, MB * bs, pool.size(2), pool.size(3)});
  return g.narrow(1, 0, S).transpose(1, 2).masked_fill(key_ok.logical_not(), 0);
}

}  // namespace

at::Tensor AttentionImpl::forward_paged(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                        const PagedInput& p, const PagedKeys& keys, PagedKVCache& cache,
                                        int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  auto [q, k, v] = project(x, cos, sin);  // [B, Hq, T, D], [B, T, Hkv, D] x2
  const at::Tensor slots = p.slots.reshape({B * T});
  at::Tensor& kp = cache.k[layer];  // [blocks, bs, Hkv, D]
  at::Tensor& vp = cache.v[layer];
  kp.view({-1, kv_heads, head_dim}).index_copy_(0, slots, k.reshape({B * T, kv_heads, head_dim}).to(kp.dtype()));
  vp.view({-1, kv_heads, head_dim}).index_copy_(0, slots, v.reshape({B * T, kv_heads, head_dim}).to(vp.dtype()));
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const bool gqa = heads != kv_heads;
  at::Tensor out;  // [B, Hq, T, D]
  if (p.fresh) {
    out = at::scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), {}, 0.0, /*is_causal=*/true, scale,
                                           gqa);
  } else {
    const int64_t S = keys.mask.size(3);
    at::Tensor ks = gather_rows(kp, keys.tables, S, keys.key_ok), vs = gather_rows(vp, keys.tables, S, keys.key_ok);
    const bool expand = gqa && expand_for_mask(ks);
    if (expand) ks = repeat_heads(ks, heads / kv_heads), vs = repeat_heads(vs, heads / kv_heads);
    out = at::scaled_dot_product_attention(q, ks.to(q.dtype()), vs.to(q.dtype()), keys.mask, 0.0, false, scale,
                                           gqa && !expand);
  }
  return o_proj(out.transpose(1, 2).reshape({B, T, heads * head_dim}));
}

bool CausalLMImpl::fused_decode_available() const {
  const bool dtype_ok = opts_.dtype() == at::kFloat || opts_.dtype() == at::kBFloat16;
  return opts_.device().is_cpu() && dtype_ok && cpu::decode_attention_supports(config_.head_dim) &&
         !at::GradMode::is_enabled();
}

at::Tensor CausalLMImpl::forward_paged(const PagedInput& in, PagedKVCache& cache) {
  TORCH_CHECK(in.input_ids.dim() == 2 && in.positions.sizes() == in.input_ids.sizes() &&
                  in.slots.sizes() == in.input_ids.sizes(),
              "forward_paged: input_ids, positions and slots must be [B, T], got ", in.input_ids.sizes(), ", ",
              in.positions.sizes(), " and ", in.slots.sizes());
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  TORCH_CHECK(in.block_tables.dim() == 2 && in.block_tables.size(0) == B && in.past.dim() == 1 &&
                  in.past.size(0) == B && in.lengths.sizes() == in.past.sizes() && in.max_len >= 1 &&
                  in.max_len <= in.block_tables.size(1) * cache.block_size(),
              "forward_paged: block_tables must be [B = ", B, ", max_blocks] covering max_len ", in.max_len,
              " and past, lengths [B]; got ", in.block_tables.sizes(), " and ", in.past.sizes());
  TORCH_CHECK(static_cast<int64_t>(cache.k.size()) == config_.num_hidden_layers, "forward_paged: the KV cache has ",
              cache.k.size(), " layers, the model ", config_.num_hidden_layers);
  if (T == 1 && !in.fresh && fused_decode_available() && cache.k[0].scalar_type() == opts_.dtype())
    return fused_decode(in, cache).unsqueeze(1);
  PagedKeys keys;  // padding queries see their row's keys
  if (!in.fresh) {
    const int64_t S = cache.blocks_for(in.max_len) * cache.block_size();
    const auto opts = in.past.options();
    const at::Tensor slots = at::arange(S, opts);                               // [S]
    at::Tensor last = in.past.unsqueeze(1) + at::arange(T, opts).unsqueeze(0);  // [B, T]
    last = at::minimum(last, (in.lengths - 1).unsqueeze(1));
    keys.mask = (slots.view({1, 1, S}) <= last.unsqueeze(2)).unsqueeze(1);            // [B, 1, T, S]
    keys.key_ok = (slots.view({1, S}) < in.lengths.unsqueeze(1)).view({B, 1, S, 1});  // [B, 1, S, 1]
    keys.tables = in.block_tables.to(at::kLong);
  }
  at::Tensor x = model->embed_tokens(in.input_ids);  // [B, T, H]
  auto [cos, sin] = rope_.cos_sin(in.positions, x.scalar_type());
  for (size_t i = 0; i < model->layers->size(); ++i)
    x = model->layers->ptr<DecoderLayerImpl>(i)->forward_paged(x, cos, sin, in, keys, cache, static_cast<int64_t>(i));
  return model->norm(x);
}

namespace {

// A norm's weight as float32 for the fused kernels: itself, or [H] converted (bfloat16 models).
at::Tensor f32(const at::Tensor& w) { return w.to(at::kFloat).contiguous(); }

}  // namespace

// The decode step's activations are float32 in both dtypes (residual stream, norms, RoPE,
// attention, MLP). A bfloat16 model keeps its weights and KV pools in bfloat16: up to 16 rows its
// weights stream widened into float32 FMAs, beyond that each GEMM runs in bfloat16 with float32
// accumulation (oneDNN: AMX or AVX-512 BF16 where the CPU has them); see cpu::linear.
at::Tensor CausalLMImpl::fused_decode(const PagedInput& in, PagedKVCache& cache) {
  const int64_t B = in.input_ids.size(0), H = config_.hidden_size, D = config_.head_dim;
  const int64_t Hq = config_.num_attention_heads, Hkv = config_.num_key_value_heads;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const at::ScalarType dt = opts_.dtype().toScalarType();
  const at::Tensor tables = in.block_tables.to(at::kInt).contiguous();  // [B, MB]
  const at::Tensor lengths = in.lengths.contiguous();                   // [B] keys after this token
  auto [cos3, sin3] = rope_.cos_sin(in.positions, at::kFloat);          // [B, 1, D]
  const at::Tensor cos = cos3.reshape({B, D}).contiguous(), sin = sin3.reshape({B, D}).contiguous();

  at::Tensor x = model->embed_tokens->weight.index_select(0, in.input_ids.reshape({B})).to(at::kFloat);  // [B, H]
  at::Tensor xn = at::empty_like(x);                                                                     // [B, H]
  at::Tensor attn = at::empty({B, Hq * D}, x.options());                                                 // [B, Hq * D]
  for (size_t l = 0; l < model->layers->size(); ++l) {
    auto& layer = *model->layers[l]->as<DecoderLayer>();
    auto& sa = *layer.self_attn;
    cpu::rms_norm(x.data_ptr<float>(), f32(layer.input_layernorm->weight).data_ptr<float>(), xn.data_ptr<float>(), B, H,
                  eps);
    const at::Tensor q = sa.q_proj(xn), k = sa.k_proj(xn), v = sa.v_proj(xn);  // [B, Hq*D], [B, Hkv*D] x2
    at::Tensor q_norm, k_norm;                                                 // [D] float32, Qwen3
    if (sa.q_norm) q_norm = f32(sa.q_norm->weight), k_norm = f32(sa.k_norm->weight);
    cpu::DecodeAttention a;
    a.q = q.data_ptr<float>(), a.k = k.data_ptr<float>(), a.v = v.data_ptr<float>();
    if (sa.q_norm) a.q_norm = q_norm.data_ptr<float>(), a.k_norm = k_norm.data_ptr<float>();
    a.eps = eps;
    a.cos = cos.data_ptr<float>(), a.sin = sin.data_ptr<float>();
    a.k_pool = cache.k[l].data_ptr(), a.v_pool = cache.v[l].data_ptr(), a.pool_dtype = dt;
    a.block_tables = tables.data_ptr<int32_t>(), a.lengths = lengths.data_ptr<int64_t>();
    a.max_blocks = tables.size(1), a.block_size = cache.block_size();
    a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.D = D;
    a.out = attn.data_ptr<float>();
    cpu::decode_attention(a);
    x.add_(sa.o_proj(attn));
    cpu::rms_norm(x.data_ptr<float>(), f32(layer.post_attention_layernorm->weight).data_ptr<float>(),
                  xn.data_ptr<float>(), B, H, eps);
    auto& mlp = *layer.mlp;
    at::Tensor g = mlp.gate_proj(xn);
    at::silu_(g).mul_(mlp.up_proj(xn));  // [B, I]
    x.add_(mlp.down_proj(g));
  }
  cpu::rms_norm(x.data_ptr<float>(), f32(model->norm->weight).data_ptr<float>(), xn.data_ptr<float>(), B, H, eps);
  return xn.to(dt);  // the lm_head runs in the model's dtype
}

}  // namespace r1
