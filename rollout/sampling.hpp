// Sampling parameters and the batched sampler: temperature, top-k, top-p, min-p over a batch of
// logits on their device, driven by a counter-based generator, so that a sample depends only on
// (seed, prompt, sample index, step), never on what else shares the batch or when it arrived. The log-prob recorded for
// a sampled token is under the full softmax(logits / temperature), the distribution the trainer's forward computes.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

#include "rollout/options.hpp"

namespace r1 {

// Philox4x32-10 (Salmon et al., SC'11): a uniform in [0, 1) (24 bits) that is a pure function of
// the key (seed) and the counter (prompt stream, sample index, step).
float philox_uniform(uint64_t seed, uint64_t stream, uint64_t sample, uint64_t step);

// What one row draws from: its prompt's stream, its sample index and the step (0 = first token).
struct DrawKey {
  uint64_t stream = 0, sample = 0, step = 0;
};
// philox_uniform of each key, as a float32 CPU tensor [B].
at::Tensor philox_uniforms(uint64_t seed, const std::vector<DrawKey>& keys);

struct SampledTokens {
  at::Tensor tokens;    // [B] int64
  at::Tensor logprobs;  // [B] float32: log softmax(logits / T)[token] (T = 1 when greedy)
};

// Masks logits [B, V] (already divided by the temperature) to -inf outside top-k, then top-p,
// then min-p, in that order (as Hugging Face's warpers). Always keeps the most likely token.
at::Tensor filter_logits(const at::Tensor& scaled, const SamplingOptions& o);

// Samples one token per row of logits [B, V] float32 by inverting the filtered cdf at uniforms [B]
// (float32, the logits' device; unused when greedy). Everything stays on the logits' device. Greedy
// takes the first maximum. The fused CPU sampler when it applies, else sample_tokens_aten.
SampledTokens sample_tokens(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms);
// The same draw in ATen ops on any device: [B, V] tensors for the log-softmax, the filtered
// probabilities and their cdf. Fixed shapes only, so a CUDA graph can capture it.
SampledTokens sample_tokens_aten(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms);
// The fused CPU sampler (rollout/sampling_cpu.cpp) applies to float32 CPU logits [B, V] on a CPU with
// AVX2+FMA, greedy or without top-k, top-p and min-p: per row, two passes over the logits and no
// [B, V] temporaries. It inverts the same cdf as sample_tokens_aten up to float rounding of the terms.
bool fused_sampler_applies(const at::Tensor& logits, const SamplingOptions& o);
SampledTokens sample_tokens_fused(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms);

// A decode step's results on the logits' device, [B, 3] float64: the sampled token, its log-prob,
// and 1 where it is one of `stop_ids` [S] int64 (S may be 0), so one copy brings them to the host.
// Only fixed-shape device ops (no host read of a device value), so a CUDA graph can capture it.
at::Tensor sample_packed(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& uniforms,
                         const at::Tensor& stop_ids);
// The first `rows` rows of sample_packed's result as host values: the step's one device-to-host copy.
std::vector<std::array<double, 3>> packed_rows(const at::Tensor& packed, int64_t rows);

}  // namespace r1
