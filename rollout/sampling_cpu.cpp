// The fused CPU sampler (rollout/sampling.hpp): per row of logits, one pass for the maximum and one
// for e^((x - max) / T) summed by blocks, then the inverse cdf walked over the block sums and inside
// one block. Nothing of size V is allocated; ATen's composition writes four [B, V] tensors.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "policy/cpu_kernels.hpp"
#include "policy/cpu_simd.hpp"
#include "rollout/sampling.hpp"

namespace r1 {

namespace {

using cpu::simd::exp256;
using cpu::simd::hsum256;

constexpr int64_t kBlock = 64;        // logits per block sum (8 vectors)
constexpr float kUnderflow = -87.3f;  // below this exp256 clamps: such terms count as 0

// 8 logits from x[i..i+n), n <= 8; lanes past n read as -inf (a term of 0).
__attribute__((target("avx2,fma"))) inline __m256 load_logits(const float* x, int64_t n) {
  if (n >= 8) return _mm256_loadu_ps(x);
  alignas(32) float buf[8];
  for (int64_t j = 0; j < 8; ++j) buf[j] = j < n ? x[j] : -std::numeric_limits<float>::infinity();
  return _mm256_load_ps(buf);
}

// e^((x - m) * inv_t) for 8 logits, 0 where that exponent is below the underflow bound.
__attribute__((target("avx2,fma"))) inline __m256 term8(__m256 x, __m256 m, __m256 inv_t) {
  const __m256 z = _mm256_mul_ps(_mm256_sub_ps(x, m), inv_t);
  return _mm256_and_ps(exp256(z), _mm256_cmp_ps(z, _mm256_set1_ps(kUnderflow), _CMP_GE_OQ));
}

// The largest logit and the first index holding it (0 when none compares equal: NaN logits).
__attribute__((target("avx2,fma"))) std::pair<float, int64_t> row_max(const float* x, int64_t V) {
  __m256 m8 = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < V; i += 8) m8 = _mm256_max_ps(m8, load_logits(x + i, V - i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m8);
  const float m = *std::max_element(lanes, lanes + 8);
  const __m256 mv = _mm256_set1_ps(m);
  for (int64_t i = 0; i < V; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(load_logits(x + i, V - i), mv, _CMP_EQ_OQ));
    if (hit != 0) return {m, i + __builtin_ctz(static_cast<unsigned>(hit))};
  }
  return {m, 0};
}

// Block sums of the row's terms into sums [ceil(V / kBlock)]; returns their sum, added in order.
__attribute__((target("avx2,fma"))) double block_sums(const float* x, int64_t V, float m, float inv_t, double* sums) {
  const __m256 mv = _mm256_set1_ps(m), tv = _mm256_set1_ps(inv_t);
  double total = 0;
  for (int64_t b = 0, i = 0; i < V; ++b, i += kBlock) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = i; j < std::min(V, i + kBlock); j += 8)
      acc = _mm256_add_ps(acc, term8(load_logits(x + j, V - j), mv, tv));
    sums[b] = hsum256(acc);
    total += sums[b];
  }
  return total;
}

// The token where the running sum of terms first exceeds target (< total), walking the block sums
// and then the terms of one block; rounding between the two ends on the block's last nonzero term.
__attribute__((target("avx2,fma"))) int64_t invert(const float* x, int64_t V, float m, float inv_t, const double* sums,
                                                   double target) {
  const int64_t blocks = (V + kBlock - 1) / kBlock;
  int64_t b = 0;
  for (double acc = 0; b < blocks; ++b) {
    if (acc + sums[b] > target) {
      target -= acc;
      break;
    }
    acc += sums[b];
  }
  b = std::min(b, blocks - 1);
  const int64_t i0 = b * kBlock, n = std::min(kBlock, V - i0);
  alignas(32) float terms[kBlock];
  for (int64_t j = 0; j < n; j += 8)
    _mm256_store_ps(terms + j, term8(load_logits(x + i0 + j, n - j), _mm256_set1_ps(m), _mm256_set1_ps(inv_t)));
  int64_t last = -1;
  double c = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (terms[j] == 0) continue;
    last = j;
    if ((c += terms[j]) > target) return i0 + j;
  }
  return last >= 0 ? i0 + last : row_max(x, V).second;
}

// One row's draw: greedy (the first maximum, log-prob under T = 1) or the inverse cdf at u.
struct Draw {
  int64_t token;
  float logprob;
};
Draw draw_row(const float* x, int64_t V, double temperature, float u, double* sums) {
  const auto [m, first_max] = row_max(x, V);
  const bool greedy = temperature == 0;
  const float inv_t = greedy ? 1.0f : static_cast<float>(1.0 / temperature);
  const double total = block_sums(x, V, m, inv_t, sums);
  const int64_t t = greedy ? first_max : invert(x, V, m, inv_t, sums, static_cast<double>(u) * total);
  return {t, static_cast<float>((x[t] - m) * inv_t - std::log(total))};
}

}  // namespace

bool fused_sampler_applies(const at::Tensor& logits, const SamplingOptions& o) {
  return cpu::isa() != cpu::Isa::none && logits.device().is_cpu() && logits.scalar_type() == at::kFloat &&
         logits.dim() == 2 && logits.size(1) > 0 &&
         (o.temperature == 0 || (o.top_k <= 0 && o.top_p >= 1.0 && o.min_p <= 0.0));
}

SampledTokens sample_tokens_fused(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms) {
  TORCH_CHECK(fused_sampler_applies(logits, o),
              "sample_tokens_fused: needs float32 CPU logits [B, V] and no filter, got ", logits.sizes(), " ",
              logits.scalar_type());
  const int64_t B = logits.size(0), V = logits.size(1);
  const bool greedy = o.temperature == 0;
  TORCH_CHECK(greedy || (uniforms.dim() == 1 && uniforms.size(0) == B && uniforms.scalar_type() == at::kFloat),
              "sample_tokens: one float32 uniform per row of logits expected, got ", uniforms.sizes(), " for ",
              logits.sizes());
  const at::Tensor x = logits.contiguous();
  const at::Tensor u = greedy ? at::Tensor() : uniforms.to(at::kCPU).contiguous();
  at::Tensor tokens = at::empty({B}, at::kLong), logprobs = at::empty({B}, at::kFloat);
  const float* xp = x.data_ptr<float>();
  const float* up = greedy ? nullptr : u.data_ptr<float>();
  int64_t* tp = tokens.data_ptr<int64_t>();
  float* lp = logprobs.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> sums(static_cast<size_t>((V + kBlock - 1) / kBlock));
    for (int64_t b = b0; b < b1; ++b) {
      const Draw d = draw_row(xp + b * V, V, o.temperature, greedy ? 0.0f : up[b], sums.data());
      tp[b] = d.token, lp[b] = d.logprob;
    }
  });
  return {tokens, logprobs};
}

}  // namespace r1
