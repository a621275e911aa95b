#include "rollout/sampling.hpp"

#include <cstring>
#include <limits>

namespace r1 {

namespace {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kKey0 = 0x9E3779B9u, kKey1 = 0xBB67AE85u;  // Weyl key increments

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32), lo = static_cast<uint32_t>(p);
}

}  // namespace

float philox_uniform(uint64_t seed, uint64_t stream, uint64_t sample, uint64_t step) {
  // Counter: (step, sample, stream lo, stream hi); key: the seed. Sample indices and steps fit 32 bits.
  uint32_t c[4] = {static_cast<uint32_t>(step), static_cast<uint32_t>(sample), static_cast<uint32_t>(stream),
                   static_cast<uint32_t>(stream >> 32)};
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c[0], hi0, lo0);
    mulhilo(kMul1, c[2], hi1, lo1);
    const uint32_t n[4] = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
    c[0] = n[0], c[1] = n[1], c[2] = n[2], c[3] = n[3];
    k0 += kKey0, k1 += kKey1;
  }
  return static_cast<float>(c[0] >> 8) * (1.0f / 16777216.0f);
}

at::Tensor philox_uniforms(uint64_t seed, const std::vector<DrawKey>& keys) {
  at::Tensor u = at::empty({static_cast<int64_t>(keys.size())}, at::kFloat);
  float* p = u.data_ptr<float>();
  for (size_t i = 0; i < keys.size(); ++i) p[i] = philox_uniform(seed, keys[i].stream, keys[i].sample, keys[i].step);
  return u;
}

at::Tensor filter_logits(const at::Tensor& scaled, const SamplingOptions& o) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor z = scaled;
  const int64_t V = z.size(-1);
  if (o.top_k > 0 && o.top_k < V) {
    at::Tensor kth = std::get<0>(z.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);  // [B, 1]
    z = z.masked_fill(z < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    auto [sorted, idx] = z.sort(-1, /*descending=*/true);
    at::Tensor probs = sorted.softmax(-1);
    // Drop a token when the mass before it already reaches top_p (so the first always stays).
    at::Tensor before = probs.cumsum(-1) - probs;
    at::Tensor drop_sorted = before >= o.top_p;
    z = z.masked_fill(at::zeros_like(drop_sorted).scatter(-1, idx, drop_sorted), neg_inf);
  }
  if (o.min_p > 0.0) {
    at::Tensor probs = z.softmax(-1);
    at::Tensor thr = probs.amax(-1, /*keepdim=*/true) * o.min_p;
    z = z.masked_fill(probs < thr, neg_inf);
  }
  return z;
}

SampledTokens sample_tokens(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms) {
  return fused_sampler_applies(logits, o) ? sample_tokens_fused(logits, o, uniforms)
                                          : sample_tokens_aten(logits, o, uniforms);
}

SampledTokens sample_tokens_aten(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms) {
  TORCH_CHECK(logits.dim() == 2, "sample_tokens: logits must be [B, V], got ", logits.sizes());
  if (o.temperature == 0.0) {
    at::Tensor tok = logits.argmax(-1);
    at::Tensor lp = logits.log_softmax(-1).gather(1, tok.unsqueeze(1)).squeeze(1);
    return {tok, lp};
  }
  TORCH_CHECK(uniforms.dim() == 1 && uniforms.size(0) == logits.size(0),
              "sample_tokens: one uniform per row of logits expected, got ", uniforms.sizes(), " for ", logits.sizes());
  at::Tensor scaled = o.temperature == 1.0 ? logits : logits / o.temperature;
  at::Tensor logp = scaled.log_softmax(-1);                                                   // [B, V]
  at::Tensor probs = filter_logits(scaled, o).softmax(-1);                                    // [B, V]
  at::Tensor cdf = probs.cumsum(-1);                                                          // [B, V]
  at::Tensor uu = uniforms.to(cdf.dtype()).unsqueeze(1) * cdf.narrow(1, cdf.size(1) - 1, 1);  // [B, 1]
  at::Tensor tok =
      at::searchsorted(cdf, uu, /*out_int32=*/false, /*right=*/true).squeeze(1).clamp_max(logits.size(1) - 1);
  // Guard against rounding at the top of the cdf landing on a filtered token.
  at::Tensor chosen_p = probs.gather(1, tok.unsqueeze(1)).squeeze(1);
  tok = at::where(chosen_p > 0, tok, probs.argmax(-1));
  return {tok, logp.gather(1, tok.unsqueeze(1)).squeeze(1)};
}

at::Tensor sample_packed(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms,
                         const at::Tensor& stop_ids) {
  SampledTokens st = sample_tokens(logits, o, uniforms);
  // A broadcast compare, not at::isin: isin sorts and de-duplicates (a device-to-host size read)
  // once the batch outgrows a few stop ids.
  at::Tensor stop = stop_ids.numel() > 0 ? (st.tokens.unsqueeze(1) == stop_ids.unsqueeze(0)).any(1)  // [B]
                                         : at::zeros_like(st.tokens, at::kBool);
  return at::stack({st.tokens.to(at::kDouble), st.logprobs.to(at::kDouble), stop.to(at::kDouble)}, 1);
}

std::vector<std::array<double, 3>> packed_rows(const at::Tensor& packed, int64_t rows) {
  const at::Tensor host = packed.narrow(0, 0, rows).to(at::kCPU).contiguous();  // [rows, 3] float64
  std::vector<std::array<double, 3>> out(static_cast<size_t>(rows));
  std::memcpy(out.data(), host.data_ptr<double>(), out.size() * sizeof(out[0]));
  return out;
}

}  // namespace r1
