// Hand-written CPU kernels for the decode step, where LibTorch's general ops lose to per-call
// overhead and MKL's small-M GEMM leaves memory bandwidth unused: a weight-streaming GEMM for a few
// rows (y = x W^T + b with M <= 16, or <= 64 for large weights; float32 or bfloat16 weights), fused
// RMSNorm, RoPE and single-query attention over the KV cache (float32 or bfloat16 pools). float32
// activations, inference only (no autograd); callers fall back to ATen otherwise.
#pragma once
#include <ATen/ATen.h>

namespace r1::cpu {

// The vector ISA of r1's CPU kernels (these, policy/fused_ops.hpp, policy/onednn.hpp): AVX-512 when
// the CPU has it, else AVX2+FMA, else none (ATen paths). R1_CPU_ISA=avx2|none caps it, so tests can
// run every path on one machine.
enum class Isa { none, avx2, avx512 };
Isa isa();

// True when `small_linear` applies: CPU tensors, no grad needed, and either float32 x and w with x
// of at most 16 rows (64 when w has >= 1 MiB), or a bfloat16 w with a float32 or bfloat16 x of at
// most 16 rows (bfloat16 weights are widened to float32 as they stream: half the bytes, float32
// FMAs); the CPU has AVX2+FMA or AVX-512. x [.., K], w [N, K] contiguous, bias [N] or undefined.
bool small_linear_applies(const at::Tensor& x, const at::Tensor& w);
at::Tensor small_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);  // [.., N], x's dtype

// y = x W^T + b through small_linear when it applies, else oneDNN for many rows (policy/onednn.hpp),
// else at::linear. Outside grad mode a float32 x may meet a bfloat16 w (the fused decode step of a
// bfloat16 model): y is float32, and beyond 16 rows the GEMM runs in bfloat16 (ATen, oneDNN).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// isa() as a name, for logs: "avx512", "avx2" or "none".
const char* small_linear_isa();

// RMSNorm of `rows` rows of `dim` floats: y = w * x / sqrt(mean(x^2) + eps), like HF in float32.
// y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

// Attention of one new token per row against the paged KV cache (policy/paged_kv.hpp), grouped-
// query: applies the optional q/k RMSNorm and RoPE, writes the new k and v into the row's slot for
// key lengths[b] - 1, and attends over the row's keys [0, lengths[b]), block by block. No mask: a
// block table holds only the row's own keys. Rows that share blocks (a prompt's samples) should be
// adjacent, so those blocks come from cache for all but the first. Pointers are to contiguous float32
// (int32 block tables, int64 lengths), the pools float32 or bfloat16.
struct DecodeAttention {
  const float* q = nullptr;                // [B, Hq, D] projected queries
  const float* k = nullptr;                // [B, Hkv, D] projected key of the new token
  const float* v = nullptr;                // [B, Hkv, D]
  const float* q_norm = nullptr;           // [D] or null (Qwen3's q_norm / k_norm)
  const float* k_norm = nullptr;           // [D] or null
  float eps = 1e-6f;                       // of q_norm / k_norm
  const float* cos = nullptr;              // [B, D] RoPE of each row's position
  const float* sin = nullptr;              // [B, D]
  void* k_pool = nullptr;                  // [blocks, block_size, Hkv, D] of pool_dtype
  void* v_pool = nullptr;                  // [blocks, block_size, Hkv, D] of pool_dtype
  at::ScalarType pool_dtype = at::kFloat;  // float32, or bfloat16 (read as float32, written rounded)
  const int32_t* block_tables = nullptr;   // [B, max_blocks]
  const int64_t* lengths = nullptr;        // [B] keys of each row, the new token's included
  int64_t max_blocks = 0, block_size = 0;
  int64_t B = 0, Hq = 0, Hkv = 0, D = 0;
  float* out = nullptr;  // [B, Hq, D]
};
void decode_attention(const DecodeAttention& a);
bool decode_attention_supports(int64_t head_dim);  // AVX2+FMA and a head_dim with a kernel

}  // namespace r1::cpu
