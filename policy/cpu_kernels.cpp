#include "policy/cpu_kernels.hpp"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "policy/cpu_simd.hpp"
#include "policy/onednn.hpp"

namespace r1::cpu {

using simd::exp256;
using simd::hsum256;

namespace {

// Rows of x the kernel takes (bench_linear, 2 threads): up to 16 always; up to 64 for weights of at
// least 1 MiB, which it streams 1.3-2.1x faster than MKL's sgemm. Smaller (cache-resident) weights
// give too few weight groups for both threads, and MKL wins there above 16 rows.
constexpr int64_t kMaxRows = 16;
constexpr int64_t kMaxRowsLargeWeights = 64;
constexpr int64_t kLargeWeightBytes = 1 << 20;
constexpr int64_t kGroupN = 12;           // weight rows per task unit (a multiple of every tile width)
constexpr int64_t kPrefetchBytes = 8192;  // ahead of each weight stream (measured: bench_linear)

// W floats of a vector register, written with GCC vector extensions so that one kernel body
// compiles to AVX-512 or AVX2 (+FMA) code depending on the target of the function it is inlined in.
typedef float v16f __attribute__((vector_size(64)));
typedef float v16f_u __attribute__((vector_size(64), aligned(4), __may_alias__));  // unaligned loads of float*
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), __may_alias__));
typedef float v4f __attribute__((vector_size(16)));
template <int W>
struct Vec;
template <>
struct Vec<16> {
  using T = v16f;
  using U = v16f_u;
};
template <>
struct Vec<8> {
  using T = v8f;
  using U = v8f_u;
};

// W weights as floats: float32 loaded as is, bfloat16 widened (exact: a bfloat16's bits are the
// high half of a float32's), so a bfloat16 weight streams half the bytes into the same FMAs.
template <int W>
[[gnu::always_inline]] inline typename Vec<W>::T load_w(const float* p) {
  return *reinterpret_cast<const typename Vec<W>::U*>(p);
}
template <int W>
[[gnu::always_inline]] inline typename Vec<W>::T load_w(const c10::BFloat16* p) {
  typedef uint16_t h16 __attribute__((vector_size(32)));
  typedef uint32_t w16 __attribute__((vector_size(64)));
  typedef uint16_t h8 __attribute__((vector_size(16)));
  typedef uint32_t w8 __attribute__((vector_size(32)));
  using H = std::conditional_t<W == 16, h16, h8>;
  using Wide = std::conditional_t<W == 16, w16, w8>;
  H h;
  std::memcpy(&h, p, sizeof(h));  // an unaligned vector load
  const Wide wide = __builtin_convertvector(h, Wide) << 16;
  typename Vec<W>::T f;
  std::memcpy(&f, &wide, sizeof(f));  // a register bit cast
  return f;
}

// y[m, n] = sum_k x[m, k] w[n, k] + b[n] for one tile of MT rows of x and NT rows of w; K % W == 0.
// One pass over K loads each weight vector once and uses it for all MT rows, so weight streaming
// (the bound at few rows) overlaps the FMAs. MT * NT accumulators + NT weights + 1 x must fit the
// register file (32 zmm for W = 16, 16 ymm for W = 8). WT: the weights' type (float, BFloat16).
template <int W, int MT, int NT, class WT>
[[gnu::always_inline]] inline void tile_body(const float* x, int64_t K, const WT* const* w, const float* b, int64_t nn,
                                             float* y, int64_t ldy) {
  using T = typename Vec<W>::T;
  using U = typename Vec<W>::U;
  T acc[MT][NT];
#pragma GCC unroll 16
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = T{};
  for (int64_t k = 0; k < K; k += W) {
    T wv[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      if (k % 16 == 0) __builtin_prefetch(reinterpret_cast<const char*>(w[j] + k) + kPrefetchBytes);
      wv[j] = load_w<W>(w[j] + k);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MT; ++i) {
      const T xv = *reinterpret_cast<const U*>(x + i * K + k);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[i][j] += xv * wv[j];  // contracted to FMA
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int64_t j = 0; j < nn; ++j) {
      v8f h8;  // horizontal sum as a tree: 16 -> 8 -> 4 lanes, then scalars
      if constexpr (W == 16)
        h8 = __builtin_shufflevector(acc[i][j], acc[i][j], 0, 1, 2, 3, 4, 5, 6, 7) +
             __builtin_shufflevector(acc[i][j], acc[i][j], 8, 9, 10, 11, 12, 13, 14, 15);
      else
        h8 = acc[i][j];
      const v4f h4 = __builtin_shufflevector(h8, h8, 0, 1, 2, 3) + __builtin_shufflevector(h8, h8, 4, 5, 6, 7);
      y[i * ldy + j] = (h4[0] + h4[2]) + (h4[1] + h4[3]) + (b ? b[j] : 0.f);
    }
}

template <int MT, int NT, class WT>
__attribute__((target("avx512f"))) void tile_avx512(const float* x, int64_t K, const WT* const* w, const float* b,
                                                    int64_t nn, float* y, int64_t ldy) {
  tile_body<16, MT, NT>(x, K, w, b, nn, y, ldy);
}

template <int MT, int NT, class WT>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, int64_t K, const WT* const* w, const float* b,
                                                   int64_t nn, float* y, int64_t ldy) {
  tile_body<8, MT, NT>(x, K, w, b, nn, y, ldy);
}

// The best kernel this CPU runs; R1_CPU_ISA=avx2|none caps it (tests run every kernel on one CPU).
Isa detect() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  Isa best = __builtin_cpu_supports("avx512f") ? Isa::avx512 : avx2 ? Isa::avx2 : Isa::none;
  const char* cap = std::getenv("R1_CPU_ISA");
  if (cap && std::string(cap) == "none") best = Isa::none;
  if (cap && std::string(cap) == "avx2" && best == Isa::avx512) best = Isa::avx2;
  return best;
}

template <class WT>
using TileFn = void (*)(const float*, int64_t, const WT* const*, const float*, int64_t, float*, int64_t);

// The tile kernels of one ISA and weight type, by rows of x per pass (1 .. max_mt), with the weight
// rows each takes.
template <class WT>
struct Plan {
  int max_mt;
  TileFn<WT> fn[9];
  int64_t nt[9];
};

template <class WT>
const Plan<WT>& plan() {
  static const Plan<WT> avx512{
      8,
      {nullptr, tile_avx512<1, 4, WT>, tile_avx512<2, 4, WT>, tile_avx512<3, 4, WT>, tile_avx512<4, 4, WT>,
       tile_avx512<5, 3, WT>, tile_avx512<6, 3, WT>, tile_avx512<7, 3, WT>, tile_avx512<8, 3, WT>},
      {0, 4, 4, 4, 4, 3, 3, 3, 3}};
  static const Plan<WT> avx2{6,
                             {nullptr, tile_avx2<1, 4, WT>, tile_avx2<2, 4, WT>, tile_avx2<3, 2, WT>,
                              tile_avx2<4, 2, WT>, tile_avx2<5, 2, WT>, tile_avx2<6, 2, WT>, nullptr, nullptr},
                             {0, 4, 4, 2, 2, 2, 2, 0, 0}};
  return isa() == Isa::avx512 ? avx512 : avx2;
}

// Rows [0, M) of x against weight rows [n0, n1): for each group of kGroupN weight rows, every block
// of up to max_mt rows of x in one pass per tile (the group's weights stay in L1 between blocks).
template <class WT>
void gemm_rows(const Plan<WT>& p, const float* x, int64_t M, int64_t K, const WT* W, const float* bias, float* y,
               int64_t N, int64_t n0, int64_t n1) {
  for (int64_t g = n0; g < n1; g += kGroupN)
    for (int64_t m = 0; m < M;) {
      const int64_t mt = std::min<int64_t>(p.max_mt, M - m);
      const int64_t nt = p.nt[mt];
      for (int64_t n = g; n < std::min(n1, g + kGroupN); n += nt) {
        const int64_t nn = std::min(nt, n1 - n);
        const WT* w[4];
        for (int64_t j = 0; j < nt; ++j) w[j] = W + (n + std::min(j, nn - 1)) * K;  // a short tile repeats its last row
        p.fn[mt](x + m * K, K, w, bias ? bias + n : nullptr, nn, y + m * N + n, N);
      }
      m += mt;
    }
}

// y [M, N] = x [M, K] W^T + b on the calling thread team, threads splitting the weight matrix.
template <class WT>
void small_gemm(const float* xp, int64_t M, int64_t K, const WT* wp, const float* bp, float* yp, int64_t N) {
  const int64_t groups = (N + kGroupN - 1) / kGroupN;
  // Each task streams >= ~256 KiB of weights, so threads split the weight matrix, not the rows.
  const int64_t grain = std::max<int64_t>(1, (256 * 1024) / (kGroupN * K * static_cast<int64_t>(sizeof(WT))));
  const Plan<WT>& p = plan<WT>();
  at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
    gemm_rows(p, xp, M, K, wp, bp, yp, N, g0 * kGroupN, std::min(N, g1 * kGroupN));
  });
}

}  // namespace

Isa isa() {
  static const Isa i = detect();
  return i;
}

const char* small_linear_isa() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "none";
  }
}

bool small_linear_applies(const at::Tensor& x, const at::Tensor& w) {
  const bool types =
      (x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat) ||
      (w.scalar_type() == at::kBFloat16 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16));
  if (isa() == Isa::none || !x.device().is_cpu() || !types) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad())) return false;
  if (w.dim() != 2 || x.dim() < 1 || x.size(-1) != w.size(1) || w.size(1) % 16 != 0 || !w.is_contiguous()) return false;
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  if (rows < 1) return false;
  if (w.scalar_type() == at::kBFloat16) return rows <= kMaxRows;  // beyond, oneDNN's bfloat16 GEMM
  return rows <= kMaxRows || (rows <= kMaxRowsLargeWeights && w.numel() * 4 >= kLargeWeightBytes);
}

at::Tensor small_linear(const at::Tensor& x_in, const at::Tensor& w, const at::Tensor& bias) {
  TORCH_CHECK(small_linear_applies(x_in, w),
              "small_linear: needs a float32 (or bfloat16 with bfloat16 w) CPU x with <= ", kMaxRows, " rows (",
              kMaxRowsLargeWeights, " for weights of >= 1 MiB) and K % 16 == 0, got x ", x_in.sizes(), " ",
              x_in.scalar_type(), ", w ", w.sizes(), " ", w.scalar_type());
  const int64_t K = w.size(1), N = w.size(0);
  const at::Tensor x = x_in.reshape({-1, K}).to(at::kFloat).contiguous();  // [M, K]
  const int64_t M = x.size(0);
  at::Tensor b;
  if (bias.defined()) b = bias.to(at::kFloat).contiguous();
  std::vector<int64_t> out_shape(x_in.sizes().begin(), x_in.sizes().end());
  out_shape.back() = N;
  at::Tensor y = at::empty({M, N}, x.options());  // [M, N] float32
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  if (w.scalar_type() == at::kFloat)
    small_gemm(x.data_ptr<float>(), M, K, w.data_ptr<float>(), bp, y.data_ptr<float>(), N);
  else
    small_gemm(x.data_ptr<float>(), M, K, w.data_ptr<c10::BFloat16>(), bp, y.data_ptr<float>(), N);
  return y.view(out_shape).to(x_in.scalar_type());
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  // bench_linear, 2 threads, weights streamed from memory: the few-row kernel wins up to 16 rows, and
  // up to 64 for weights up to a few MiB with K < 1024; oneDNN's blocked GEMM wins from 32 rows for a
  // weight beyond the last-level cache (an lm_head), from 48 rows for K >= 1024, and from 64 on.
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  if (w.scalar_type() == at::kBFloat16 && x.scalar_type() == at::kFloat && !at::GradMode::is_enabled()) {
    // A bfloat16 model's fused decode step (float32 activations): few rows stream the bfloat16
    // weights through r1's kernel, more run ATen's bfloat16 GEMM (oneDNN: AMX or AVX-512 BF16).
    if (small_linear_applies(x, w)) return small_linear(x, w, bias);
    return at::linear(x.to(at::kBFloat16), w, bias).to(at::kFloat);
  }
  const bool dnnl = onednn::supports(x, w);
  const bool dnnl_first =
      dnnl && ((rows >= 32 && w.numel() * 4 >= (int64_t{24} << 20)) || (rows >= 48 && w.size(1) >= 1024));
  if (!dnnl_first && small_linear_applies(x, w)) return small_linear(x, w, bias);  // also bfloat16 x and w
  if (dnnl_first || onednn::linear_applies(x, w)) return onednn::linear(x, w, bias);
  return at::linear(x, w, bias);
}

}  // namespace r1::cpu

namespace r1::cpu {

namespace {

// 8 keys or values of a pool as floats: float32 as is, bfloat16 widened (exact: its bits are the
// high half of a float32's).
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const c10::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// A pool slot written from D floats, rounded to nearest-even for a bfloat16 pool (as at::Tensor::to).
inline void store_slot(const float* x, float* y, int64_t D) { std::copy(x, x + D, y); }
inline void store_slot(const float* x, c10::BFloat16* y, int64_t D) {
  for (int64_t d = 0; d < D; ++d) y[d] = c10::BFloat16(x[d]);
}

__attribute__((target("avx2,fma"))) void rms_row(const float* x, const float* w, float* y, int64_t dim, float eps) {
  __m256 acc = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    const __m256 v = _mm256_loadu_ps(x + d);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  float ss = hsum256(acc);
  for (int64_t t = d; t < dim; ++t) ss += x[t] * x[t];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t t = 0; t < dim; ++t) y[t] = w[t] * (x[t] * r);
}

// y = rope(norm(x)) for one head of D floats (HF: t * cos + rotate_half(t) * sin).
void norm_rope(const float* x, const float* norm_w, float eps, const float* cos, const float* sin, float* tmp, float* y,
               int64_t D) {
  const float* t = x;
  if (norm_w) rms_row(x, norm_w, tmp, D, eps), t = tmp;
  const int64_t half = D / 2;
  for (int64_t j = 0; j < half; ++j) {
    y[j] = t[j] * cos[j] + (-t[j + half]) * sin[j];
    y[j + half] = t[j + half] * cos[j + half] + t[j] * sin[j + half];
  }
}

// Sums of each of 8 vectors, as one vector [sum(a0), ..., sum(a7)].
__attribute__((target("avx2,fma"))) inline __m256 hsum8x8(const __m256* a) {
  const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20), _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

// Scores q . K[s] * scale of n keys (key s at K + s * stride) into out, 8 keys at a time (one
// transpose-add instead of 8 horizontal sums); q in registers.
template <int DV, class T>
__attribute__((target("avx2,fma"))) inline void scores_fixed(const __m256* qv, const T* K, int64_t n, int64_t stride,
                                                             float* out) {
  constexpr int64_t D = 8 * DV;
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(D)));
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    __m256 a[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const T* k = K + (s + j) * stride;
      __m256 t = _mm256_mul_ps(qv[0], load8(k));
#pragma GCC unroll 16
      for (int i = 1; i < DV; ++i) t = _mm256_fmadd_ps(qv[i], load8(k + 8 * i), t);
      a[j] = t;
    }
    _mm256_storeu_ps(out + s, _mm256_mul_ps(hsum8x8(a), scale));
  }
  for (; s < n; ++s) {
    const T* k = K + s * stride;
    __m256 t = _mm256_mul_ps(qv[0], load8(k));
#pragma GCC unroll 16
    for (int i = 1; i < DV; ++i) t = _mm256_fmadd_ps(qv[i], load8(k + 8 * i), t);
    out[s] = hsum256(t) * (1.0f / std::sqrt(static_cast<float>(D)));
  }
}

// acc += sum_t p[t] V[t] over n values (value t at V + t * stride).
template <int DV, class T>
__attribute__((target("avx2,fma"))) inline void accumulate_fixed(const float* p, const T* V, int64_t n, int64_t stride,
                                                                 __m256* acc) {
  for (int64_t t = 0; t < n; ++t) {
    const __m256 pv = _mm256_set1_ps(p[t]);
    const T* vr = V + t * stride;
#pragma GCC unroll 16
    for (int i = 0; i < DV; ++i) acc[i] = _mm256_fmadd_ps(pv, load8(vr + 8 * i), acc[i]);
  }
}

// scores[t] = exp(scores[t] - max) over n scores; returns their sum (the softmax's denominator).
__attribute__((target("avx2,fma"))) inline float softmax_in_place(float* scores, int64_t n) {
  float m = scores[0];
  for (int64_t t = 1; t < n; ++t) m = std::max(m, scores[t]);
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum8 = _mm256_setzero_ps();
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    const __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(scores + s), mv));
    _mm256_storeu_ps(scores + s, p);
    sum8 = _mm256_add_ps(sum8, p);
  }
  float sum = hsum256(sum8);
  for (; s < n; ++s) {
    float tail[8] = {scores[s] - m, 0, 0, 0, 0, 0, 0, 0}, e[8];
    _mm256_storeu_ps(e, exp256(_mm256_loadu_ps(tail)));
    scores[s] = e[0];
    sum += scores[s];
  }
  return sum;
}

// The keys and values of one (row, kv head) in the paged pools: key t is at
// K + blocks[t / bs] * block_stride + (t % bs) * stride. T: the pools' element type.
template <class T>
struct PagedKeys {
  const T *K, *V;         // pool base of this kv head
  const int32_t* blocks;  // the row's block table
  int64_t n;              // keys (the new token's included)
  int64_t bs, stride, block_stride;
};

// Softmax(q . K / sqrt(D)) V over a row's n keys, block by block, for D = 8 * DV known at compile
// time. Every key is valid: a block table holds no padding.
template <int DV, class T>
__attribute__((target("avx2,fma"))) void attend_fixed(const float* q, const PagedKeys<T>& pk, float* scores,
                                                      float* out) {
  const int64_t n = pk.n, nb = (n + pk.bs - 1) / pk.bs;
  __m256 qv[DV];
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) qv[i] = _mm256_loadu_ps(q + 8 * i);
  for (int64_t j = 0; j < nb; ++j)
    scores_fixed<DV, T>(qv, pk.K + pk.blocks[j] * pk.block_stride, std::min(pk.bs, n - j * pk.bs), pk.stride,
                        scores + j * pk.bs);
  const float sum = softmax_in_place(scores, n);
  __m256 acc[DV];
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < nb; ++j)
    accumulate_fixed<DV, T>(scores + j * pk.bs, pk.V + pk.blocks[j] * pk.block_stride, std::min(pk.bs, n - j * pk.bs),
                            pk.stride, acc);
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

// AVX-512 versions of the above: 16 floats per vector, D = 16 * DV.
__attribute__((target("avx512f"))) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline __m512 load16(const c10::BFloat16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// q . k of one key in a 16-lane vector whose lanes sum to it.
template <int DV, class T>
__attribute__((target("avx512f"))) inline __m512 dot16(const __m512* qv, const T* k) {
  __m512 t = _mm512_mul_ps(qv[0], load16(k));
#pragma GCC unroll 16
  for (int i = 1; i < DV; ++i) t = _mm512_fmadd_ps(qv[i], load16(k + 16 * i), t);
  return t;
}

template <int DV, class T>
__attribute__((target("avx512f,avx512dq,avx2,fma"))) inline void scores512(const __m512* qv, const T* K, int64_t n,
                                                                           int64_t stride, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(16 * DV));
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    __m256 a[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512 t = dot16<DV>(qv, K + (s + j) * stride);
      a[j] = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps(t, 1));
    }
    _mm256_storeu_ps(out + s, _mm256_mul_ps(hsum8x8(a), _mm256_set1_ps(scale)));
  }
  for (; s < n; ++s) out[s] = _mm512_reduce_add_ps(dot16<DV>(qv, K + s * stride)) * scale;
}

template <int DV, class T>
__attribute__((target("avx512f"))) inline void accumulate512(const float* p, const T* V, int64_t n, int64_t stride,
                                                             __m512* acc) {
  for (int64_t t = 0; t < n; ++t) {
    const __m512 pv = _mm512_set1_ps(p[t]);
    const T* vr = V + t * stride;
#pragma GCC unroll 16
    for (int i = 0; i < DV; ++i) acc[i] = _mm512_fmadd_ps(pv, load16(vr + 16 * i), acc[i]);
  }
}

template <int DV, class T>
__attribute__((target("avx512f,avx512dq,avx2,fma"))) void attend512(const float* q, const PagedKeys<T>& pk,
                                                                    float* scores, float* out) {
  const int64_t n = pk.n, nb = (n + pk.bs - 1) / pk.bs;
  __m512 qv[DV];
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
  for (int64_t j = 0; j < nb; ++j)
    scores512<DV, T>(qv, pk.K + pk.blocks[j] * pk.block_stride, std::min(pk.bs, n - j * pk.bs), pk.stride,
                     scores + j * pk.bs);
  const float sum = softmax_in_place(scores, n);
  __m512 acc[DV];
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j)
    accumulate512<DV, T>(scores + j * pk.bs, pk.V + pk.blocks[j] * pk.block_stride, std::min(pk.bs, n - j * pk.bs),
                         pk.stride, acc);
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
#pragma GCC unroll 16
  for (int i = 0; i < DV; ++i) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(acc[i], inv));
}

// Softmax(q . K / sqrt(D)) V for one query head over one row's paged keys.
template <class T>
void attend(const float* q, const PagedKeys<T>& pk, int64_t D, float* scores, float* out) {
  if (isa() == Isa::avx512) switch (D) {
      case 16: return attend512<1, T>(q, pk, scores, out);
      case 32: return attend512<2, T>(q, pk, scores, out);
      case 64: return attend512<4, T>(q, pk, scores, out);
      case 96: return attend512<6, T>(q, pk, scores, out);
      case 128: return attend512<8, T>(q, pk, scores, out);
      default: break;
    }
  switch (D) {
    case 16: return attend_fixed<2, T>(q, pk, scores, out);
    case 32: return attend_fixed<4, T>(q, pk, scores, out);
    case 64: return attend_fixed<8, T>(q, pk, scores, out);
    case 96: return attend_fixed<12, T>(q, pk, scores, out);
    case 128: return attend_fixed<16, T>(q, pk, scores, out);
    default: TORCH_CHECK(false, "decode_attention: head_dim ", D, " has no kernel (see decode_attention_supports)");
  }
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  TORCH_CHECK(isa() != Isa::none, "rms_norm: needs AVX2+FMA");
  for (int64_t r = 0; r < rows; ++r) rms_row(x + r * dim, w, y + r * dim, dim, eps);
}

bool decode_attention_supports(int64_t head_dim) {
  return isa() != Isa::none &&
         (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 96 || head_dim == 128);
}

namespace {

// decode_attention over pools of T (float32 or bfloat16); keys are read as float32.
template <class T>
void decode_attention_pools(const DecodeAttention& a, T* k_pool, T* v_pool) {
  const int64_t D = a.D, group = a.Hq / a.Hkv, bs = a.block_size;
  const int64_t stride = a.Hkv * D, block_stride = bs * stride;
  int64_t n_max = 0;
  for (int64_t b = 0; b < a.B; ++b) {
    TORCH_CHECK(a.lengths[b] >= 1 && a.lengths[b] <= a.max_blocks * bs, "decode_attention: row ", b, " has ",
                a.lengths[b], " keys for a table of ", a.max_blocks, " blocks");
    n_max = std::max(n_max, a.lengths[b]);
  }
  // 1. The new token's keys (normed, rotated) and values into its slot, the row's key lengths[b] - 1.
  at::parallel_for(0, a.B * a.Hkv, std::max<int64_t>(1, 2048 / D), [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> tmp;  // scratch reused across steps: no allocation in the decode loop
    tmp.resize(static_cast<size_t>(2 * D));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / a.Hkv, h = i % a.Hkv, t = a.lengths[b] - 1;
      const int64_t slot = a.block_tables[b * a.max_blocks + t / bs] * block_stride + (t % bs) * stride + h * D;
      norm_rope(a.k + i * D, a.k_norm, a.eps, a.cos + b * D, a.sin + b * D, tmp.data(), tmp.data() + D, D);
      store_slot(tmp.data() + D, k_pool + slot, D);
      store_slot(a.v + i * D, v_pool + slot, D);
    }
  });
  // 2. Each query head against its key/value head, the (row, head) items split between threads by
  // their keys, not their count: rows of a continuous batch range from a few keys to thousands.
  const int64_t items = a.B * a.Hq;
  thread_local std::vector<int64_t> cost_buf;  // the caller's, reused across steps
  std::vector<int64_t>& cost = cost_buf;       // [items + 1] prefix sums of keys (+ a fixed cost per item)
  cost.assign(static_cast<size_t>(items + 1), 0);
  for (int64_t i = 0; i < items; ++i) cost[i + 1] = cost[i] + a.lengths[i / a.Hq] + 16;
  const int64_t parts =
      std::min<int64_t>(items, std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), cost[items] * D / 16384)));
  auto bound = [&](int64_t part) {  // first item of part `part`
    const int64_t want = cost[items] * part / parts;
    return static_cast<int64_t>(std::lower_bound(cost.begin(), cost.end(), want) - cost.begin());
  };
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    thread_local std::vector<float> qbuf, scores;  // scratch reused across steps
    qbuf.resize(static_cast<size_t>(2 * D)), scores.resize(static_cast<size_t>(n_max + 8));
    for (int64_t i = bound(p0), i1 = bound(p1); i < i1; ++i) {
      const int64_t b = i / a.Hq, h = i % a.Hq, kvh = h / group;
      norm_rope(a.q + i * D, a.q_norm, a.eps, a.cos + b * D, a.sin + b * D, qbuf.data() + D, qbuf.data(), D);
      const PagedKeys<T> pk{k_pool + kvh * D, v_pool + kvh * D, a.block_tables + b * a.max_blocks, a.lengths[b], bs,
                            stride,           block_stride};
      attend(qbuf.data(), pk, D, scores.data(), a.out + i * D);
    }
  });
}

}  // namespace

void decode_attention(const DecodeAttention& a) {
  TORCH_CHECK(decode_attention_supports(a.D) && a.Hq % a.Hkv == 0 && a.block_size >= 1,
              "decode_attention: needs AVX2+FMA, head_dim in {16, 32, 64, 96, 128} and Hq % Hkv == 0; got head_dim ",
              a.D, ", Hq ", a.Hq, ", Hkv ", a.Hkv);
  switch (a.pool_dtype) {
    case at::kFloat: return decode_attention_pools(a, static_cast<float*>(a.k_pool), static_cast<float*>(a.v_pool));
    case at::kBFloat16:
      return decode_attention_pools(a, static_cast<c10::BFloat16*>(a.k_pool), static_cast<c10::BFloat16*>(a.v_pool));
    default: TORCH_CHECK(false, "decode_attention: pools must be float32 or bfloat16, got ", a.pool_dtype);
  }
}

}  // namespace r1::cpu
