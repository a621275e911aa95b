#include "rollout/sampling.hpp"

#include <limits>

namespace r1 {

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

SequenceRng::SequenceRng(uint64_t seed, uint64_t prompt, uint64_t sample)
    : gen_(splitmix64(splitmix64(splitmix64(seed) ^ prompt) ^ sample)) {}

double SequenceRng::uniform() { return std::generate_canonical<double, 53>(gen_); }

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

SampledTokens sample_tokens(const at::Tensor& logits, const SamplingOptions& o, std::vector<SequenceRng*>& rngs) {
  TORCH_CHECK(logits.dim() == 2 && static_cast<size_t>(logits.size(0)) == rngs.size(),
              "sample_tokens: logits [B, V] and one rng per row expected");
  const int64_t B = logits.size(0);
  if (o.temperature == 0.0) {
    at::Tensor tok = logits.argmax(-1);
    at::Tensor lp = logits.log_softmax(-1).gather(1, tok.unsqueeze(1)).squeeze(1);
    return {tok, lp};
  }
  at::Tensor scaled = o.temperature == 1.0 ? logits : logits / o.temperature;
  at::Tensor logp = scaled.log_softmax(-1);                 // [B, V]
  at::Tensor probs = filter_logits(scaled, o).softmax(-1);  // [B, V]
  at::Tensor cdf = probs.cumsum(-1);                        // [B, V]
  std::vector<double> u(B);
  for (int64_t b = 0; b < B; ++b) u[b] = rngs[b]->uniform();
  at::Tensor uu =
      at::tensor(u, at::kDouble).to(cdf.device(), at::kFloat).unsqueeze(1) * cdf.narrow(1, cdf.size(1) - 1, 1);
  at::Tensor tok =
      at::searchsorted(cdf, uu, /*out_int32=*/false, /*right=*/true).squeeze(1).clamp_max(logits.size(1) - 1);
  // Guard against rounding at the top of the cdf landing on a filtered token.
  at::Tensor chosen_p = probs.gather(1, tok.unsqueeze(1)).squeeze(1);
  tok = at::where(chosen_p > 0, tok, probs.argmax(-1));
  return {tok, logp.gather(1, tok.unsqueeze(1)).squeeze(1)};
}

}  // namespace r1
