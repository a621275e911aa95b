// Per-token log-probs (and entropies) of target tokens under softmax(h W^T / temperature), computed
// in row chunks so the [N, V] float32 logits never exist at once, with a backward that recomputes
// each chunk. This is what the trainer and the rollout log-prob check use.
#pragma once
#include <ATen/ATen.h>

namespace r1 {

struct TokenLogprobs {
  at::Tensor logprobs;  // [N] float32
  at::Tensor entropy;   // [N] float32; undefined unless requested
};

// One chunk's float32 logits [rows, V] at most (backward keeps about four such tensors alive).
constexpr int64_t kLogitChunkBytes = int64_t{64} << 20;
// Rows per chunk for a vocabulary of `vocab`: kLogitChunkBytes / (4 V), in [16, 1024].
int64_t logit_chunk_rows(int64_t vocab);

struct LogprobOptions {
  double temperature = 1.0;
  int64_t chunk_rows = 0;  // rows of logits alive at once; 0: as many as fit kLogitChunkBytes
  bool entropy = false;
  at::Tensor banned;  // [V] bool: ids that are never produced (CausalLM::banned_ids()); undefined: none
};

// hidden [N, H], weight [V, H], targets [N] int64. Differentiable w.r.t. hidden and weight.
TokenLogprobs token_logprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                             const LogprobOptions& options = {});

// Reference: the same quantities through a full float32 log_softmax (for tests and checks).
TokenLogprobs token_logprobs_dense(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   const LogprobOptions& options = {});

}  // namespace r1
