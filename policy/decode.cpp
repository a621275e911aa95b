// CausalLM::decode: one token per row against the KV cache. On CPU in float32 the step is a few
// fused loops around the GEMMs (policy/cpu_kernels.hpp) instead of ~30 ATen ops per layer and a
// [B, 1, 1, S] mask; elsewhere it is hidden() with an explicit mask.
#include "policy/cpu_kernels.hpp"
#include "policy/model.hpp"

namespace r1 {

bool CausalLMImpl::fused_decode_available() const {
  return opts_.device().is_cpu() && opts_.dtype() == at::kFloat && cpu::decode_attention_supports(config_.head_dim) &&
         !at::GradMode::is_enabled();
}

bool CausalLMImpl::fused_decode_applies(const KVCache& cache) const {
  if (!fused_decode_available()) return false;
  auto ok = [](const at::Tensor& t) {
    return t.is_contiguous() && t.scalar_type() == at::kFloat && t.device().is_cpu();
  };
  for (size_t l = 0; l < cache.k.size(); ++l)
    if (!ok(cache.k[l]) || !ok(cache.v[l])) return false;
  for (size_t l = 0; l < cache.prefix_k.size(); ++l)
    if (!ok(cache.prefix_k[l]) || !ok(cache.prefix_v[l])) return false;
  return true;
}

at::Tensor CausalLMImpl::decode(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_valid,
                                KVCache& cache) {
  TORCH_CHECK(ids.dim() == 1 && positions.sizes() == ids.sizes(), "decode: ids and positions must be [B], got ",
              ids.sizes(), " and ", positions.sizes());
  TORCH_CHECK(key_valid.dim() == 2 && key_valid.size(0) == ids.size(0) && key_valid.size(1) > cache.length,
              "decode: key_valid must be [B, > ", cache.length, "], got ", key_valid.sizes());
  TORCH_CHECK(cache.length < cache.capacity(), "KV cache full: ", cache.length, " + 1 tokens > capacity ",
              cache.capacity());
  if (fused_decode_applies(cache)) return fused_decode(ids, positions, key_valid, cache);
  at::Tensor mask = causal_mask(key_valid.narrow(1, 0, cache.length + 1), 1);  // [B, 1, 1, S]
  return hidden({ids.unsqueeze(1), positions.unsqueeze(1), mask}, &cache).squeeze(1);
}

at::Tensor CausalLMImpl::fused_decode(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_valid,
                                      KVCache& cache) {
  const int64_t B = ids.size(0), H = config_.hidden_size, D = config_.head_dim;
  const int64_t Hq = config_.num_attention_heads, Hkv = config_.num_key_value_heads;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const at::Tensor valid = key_valid.to(at::kBool).contiguous();
  const int64_t P = cache.prefix_len();
  const at::Tensor prefix_of = P > 0 ? cache.prefix_of.contiguous() : at::Tensor();
  auto [cos3, sin3] = rope_.cos_sin(positions.unsqueeze(1), at::kFloat);  // [B, 1, D]
  const at::Tensor cos = cos3.reshape({B, D}).contiguous(), sin = sin3.reshape({B, D}).contiguous();

  at::Tensor x = model->embed_tokens->weight.index_select(0, ids).contiguous();  // [B, H] residual stream
  at::Tensor xn = at::empty_like(x);                                             // [B, H]
  at::Tensor attn = at::empty({B, Hq * D}, x.options());                         // [B, Hq * D]
  for (size_t l = 0; l < model->layers->size(); ++l) {
    auto& layer = *model->layers[l]->as<DecoderLayer>();
    auto& sa = *layer.self_attn;
    cpu::rms_norm(x.data_ptr<float>(), layer.input_layernorm->weight.data_ptr<float>(), xn.data_ptr<float>(), B, H,
                  eps);
    const at::Tensor q = sa.q_proj(xn), k = sa.k_proj(xn), v = sa.v_proj(xn);  // [B, Hq*D], [B, Hkv*D] x2
    cpu::DecodeAttention a;
    a.q = q.data_ptr<float>(), a.k = k.data_ptr<float>(), a.v = v.data_ptr<float>();
    if (sa.q_norm) a.q_norm = sa.q_norm->weight.data_ptr<float>(), a.k_norm = sa.k_norm->weight.data_ptr<float>();
    a.eps = eps;
    a.cos = cos.data_ptr<float>(), a.sin = sin.data_ptr<float>();
    a.k_cache = cache.k[l].data_ptr<float>(), a.v_cache = cache.v[l].data_ptr<float>();
    if (P > 0) {
      a.prefix_k = cache.prefix_k[l].data_ptr<float>(), a.prefix_v = cache.prefix_v[l].data_ptr<float>();
      a.prefix_of = prefix_of.data_ptr<int64_t>(), a.P = P;
    }
    a.key_valid = valid.data_ptr<bool>(), a.valid_stride = valid.size(1);
    a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.D = D, a.S_max = cache.k[l].size(2), a.pos = cache.length - P;
    a.out = attn.data_ptr<float>();
    cpu::decode_attention(a);
    x.add_(sa.o_proj(attn));
    cpu::rms_norm(x.data_ptr<float>(), layer.post_attention_layernorm->weight.data_ptr<float>(), xn.data_ptr<float>(),
                  B, H, eps);
    auto& mlp = *layer.mlp;
    at::Tensor g = mlp.gate_proj(xn);
    at::silu_(g).mul_(mlp.up_proj(xn));  // [B, I]
    x.add_(mlp.down_proj(g));
  }
  cache.length += 1;
  cpu::rms_norm(x.data_ptr<float>(), model->norm->weight.data_ptr<float>(), xn.data_ptr<float>(), B, H, eps);
  return xn;
}

}  // namespace r1
