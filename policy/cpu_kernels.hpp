// Hand-written CPU kernels for the decode step, where LibTorch's general ops lose to per-call
// overhead and MKL's small-M GEMM leaves memory bandwidth unused: a weight-streaming GEMM for a few
// rows (y = x W^T + b with M <= 16, or <= 64 for large weights), fused RMSNorm, RoPE and
// single-query attention over the KV cache. float32 only, inference only (no autograd); callers
// fall back to ATen otherwise.
#pragma once
#include <ATen/ATen.h>

namespace r1::cpu {

// The vector ISA of r1's CPU kernels (these, policy/fused_ops.hpp, policy/onednn.hpp): AVX-512 when
// the CPU has it, else AVX2+FMA, else none (ATen paths). R1_CPU_ISA=avx2|none caps it, so tests can
// run every path on one machine.
enum class Isa { none, avx2, avx512 };
Isa isa();

// True when `small_linear` applies: float32 CPU tensors, no grad needed, x has at most 16 rows (64
// when w has >= 1 MiB), and the CPU has AVX2+FMA or AVX-512. x [.., K], w [N, K] contiguous, bias
// [N] or undefined.
bool small_linear_applies(const at::Tensor& x, const at::Tensor& w);
at::Tensor small_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);  // [.., N]

// y = x W^T + b through small_linear when it applies, else oneDNN for many rows (policy/onednn.hpp),
// else at::linear.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// isa() as a name, for logs: "avx512", "avx2" or "none".
const char* small_linear_isa();

// RMSNorm of `rows` rows of `dim` floats: y = w * x / sqrt(mean(x^2) + eps), like HF in float32.
// y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

// Attention of one new token per row against the KV cache (grouped-query): applies the optional
// q/k RMSNorm and RoPE, writes the new k and v into cache slot `pos`, and attends over the valid
// keys: the shared prefix's (if any), then own slots [0, pos]. Rows of one prefix should be adjacent,
// so that its keys are read from memory once and from cache for the others. Every pointer is to
// contiguous float32 (bool for key_valid, int64 for prefix_of).
struct DecodeAttention {
  const float* q = nullptr;       // [B, Hq, D] projected queries
  const float* k = nullptr;       // [B, Hkv, D] projected key of the new token
  const float* v = nullptr;       // [B, Hkv, D]
  const float* q_norm = nullptr;  // [D] or null (Qwen3's q_norm / k_norm)
  const float* k_norm = nullptr;  // [D] or null
  float eps = 1e-6f;              // of q_norm / k_norm
  const float* cos = nullptr;     // [B, D] RoPE of each row's position
  const float* sin = nullptr;     // [B, D]
  float* k_cache = nullptr;       // [B, Hkv, S_max, D] the rows' own slots
  float* v_cache = nullptr;       // [B, Hkv, S_max, D]
  // Optional shared prefix: keys [0, P) of row b are row prefix_of[b] of these (KVCache::share_prefix).
  const float* prefix_k = nullptr;     // [R, Hkv, P, D] or null
  const float* prefix_v = nullptr;     // [R, Hkv, P, D]
  const int64_t* prefix_of = nullptr;  // [B]
  int64_t P = 0;
  const bool* key_valid = nullptr;  // [B, valid_stride] over keys P + slot: false = padding
  int64_t valid_stride = 0;         // (the new token always attends to itself)
  int64_t B = 0, Hq = 0, Hkv = 0, D = 0, S_max = 0;
  int64_t pos = 0;       // own cache slot of the new token (key P + pos)
  float* out = nullptr;  // [B, Hq, D]
};
void decode_attention(const DecodeAttention& a);
bool decode_attention_supports(int64_t head_dim);  // AVX2+FMA and a head_dim with a kernel

}  // namespace r1::cpu
