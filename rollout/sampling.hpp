// Sampling parameters and the batched sampler: temperature, top-k, top-p, min-p over a batch of
// logits, with one random stream per sequence so a sample never depends on what else shares the
// batch. The log-prob recorded for a sampled token is under the full softmax(logits / temperature),
// the distribution the trainer's forward computes.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <vector>

#include "rollout/options.hpp"

namespace r1 {

// One deterministic random stream per sequence.
class SequenceRng {
 public:
  SequenceRng(uint64_t seed, uint64_t prompt, uint64_t sample);
  double uniform();  // [0, 1)

 private:
  std::mt19937_64 gen_;
};

struct SampledTokens {
  at::Tensor tokens;    // [B] int64
  at::Tensor logprobs;  // [B] float32: log softmax(logits / T)[token] (T = 1 when greedy)
};

// Masks logits [B, V] (already divided by the temperature) to -inf outside top-k, then top-p,
// then min-p, in that order (as Hugging Face's warpers). Always keeps the most likely token.
at::Tensor filter_logits(const at::Tensor& scaled, const SamplingOptions& o);

// Samples one token per row of logits [B, V] float32. `rngs[b]` serves row b.
SampledTokens sample_tokens(const at::Tensor& logits, const SamplingOptions& o, std::vector<SequenceRng*>& rngs);

}  // namespace r1
