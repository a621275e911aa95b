#include "policy/fused_ops.hpp"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "policy/cpu_kernels.hpp"
#include "policy/onednn.hpp"

namespace r1 {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), __may_alias__));  // unaligned loads of float*

#define R1_AVX2 __attribute__((target("avx2,fma")))

R1_AVX2 inline v8f ld(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }
R1_AVX2 inline void st(float* p, v8f v) { *reinterpret_cast<v8f_u*>(p) = v; }
R1_AVX2 inline float hsum(v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
R1_AVX2 inline v8f splat(float f) { return v8f{f, f, f, f, f, f, f, f}; }

// ---- RMSNorm over rows of D floats (D % 8 == 0) ----

// One row: y = w * x * r with r = 1 / sqrt(mean(x^2) + eps); returns r.
R1_AVX2 inline float rms_row(const float* xr, const float* w, float* yr, int64_t D, float eps) {
  v8f acc = {};
  for (int64_t d = 0; d < D; d += 8) acc += ld(xr + d) * ld(xr + d);
  const float rr = 1.0f / std::sqrt(hsum(acc) / static_cast<float>(D) + eps);
  const v8f rv = splat(rr);
  for (int64_t d = 0; d < D; d += 8) st(yr + d, ld(w + d) * (ld(xr + d) * rv));
  return rr;
}

R1_AVX2 void rms_forward(const float* x, const float* w, float* y, float* rstd, int64_t r0, int64_t r1, int64_t D,
                         float eps) {
  for (int64_t r = r0; r < r1; ++r) rstd[r] = rms_row(x + r * D, w, y + r * D, D, eps);
}

// Given g = dL/d(x * r) (the incoming gradient times w): dL/dx = r (g - xhat mean(g xhat)), xhat = x r.
R1_AVX2 inline void rms_backward_row(const float* xr, float rr, const float* g, float* gx, int64_t D) {
  const v8f rv = splat(rr);
  v8f acc = {};
  for (int64_t d = 0; d < D; d += 8) acc += ld(g + d) * (ld(xr + d) * rv);
  const v8f m = splat(hsum(acc) / static_cast<float>(D));
  for (int64_t d = 0; d < D; d += 8) st(gx + d, rv * (ld(g + d) - ld(xr + d) * rv * m));
}

// Rows [r0, r1): gx, and this chunk's share of dL/dw = sum over rows of gy * xhat into gw_part [D].
R1_AVX2 void rms_backward(const float* x, const float* w, const float* rstd, const float* gy, float* gx, float* gw_part,
                          int64_t r0, int64_t r1, int64_t D, std::vector<float>& g) {
  g.resize(static_cast<size_t>(D));
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    const float* gr = gy + r * D;
    const v8f rv = splat(rstd[r]);
    for (int64_t d = 0; d < D; d += 8) {
      st(g.data() + d, ld(gr + d) * ld(w + d));
      if (gw_part) st(gw_part + d, ld(gw_part + d) + ld(gr + d) * (ld(xr + d) * rv));
    }
    rms_backward_row(xr, rstd[r], g.data(), gx + r * D, D);
  }
}

// ---- RoPE (after an optional RMSNorm) over head rows of D floats, (D / 2) % 8 == 0 ----

// Row i of x [N = B T H, D] sits at position row i / H of cos, sin [B T, D].
R1_AVX2 void rope_forward(const float* x, const float* nw, float eps, const float* cos, const float* sin, float* y,
                          float* rstd, int64_t i0, int64_t i1, int64_t H, int64_t D, std::vector<float>& t) {
  const int64_t half = D / 2;
  t.resize(static_cast<size_t>(D));
  for (int64_t i = i0; i < i1; ++i) {
    const float* src = x + i * D;
    if (nw) {
      rstd[i] = rms_row(src, nw, t.data(), D, eps);
      src = t.data();
    }
    const float* c = cos + (i / H) * D;
    const float* s = sin + (i / H) * D;
    float* yr = y + i * D;
    for (int64_t j = 0; j < half; j += 8) {
      const v8f a = ld(src + j), b = ld(src + half + j);
      st(yr + j, a * ld(c + j) - b * ld(s + j));
      st(yr + half + j, b * ld(c + half + j) + a * ld(s + half + j));
    }
  }
}

R1_AVX2 void rope_backward(const float* x, const float* nw, const float* rstd, const float* cos, const float* sin,
                           const float* gy, float* gx, float* gw_part, int64_t i0, int64_t i1, int64_t H, int64_t D,
                           std::vector<float>& g) {
  const int64_t half = D / 2;
  g.resize(static_cast<size_t>(D));
  for (int64_t i = i0; i < i1; ++i) {
    const float* c = cos + (i / H) * D;
    const float* s = sin + (i / H) * D;
    const float* gr = gy + i * D;
    float* gt = nw ? g.data() : gx + i * D;  // dL/d(normed x) before the norm's backward
    for (int64_t j = 0; j < half; j += 8) {
      const v8f ga = ld(gr + j), gb = ld(gr + half + j);
      st(gt + j, ga * ld(c + j) + gb * ld(s + half + j));
      st(gt + half + j, gb * ld(c + half + j) - ga * ld(s + j));
    }
    if (!nw) continue;
    const float* xr = x + i * D;
    const v8f rv = splat(rstd[i]);
    for (int64_t d = 0; d < D; d += 8) {
      st(gw_part + d, ld(gw_part + d) + ld(gt + d) * (ld(xr + d) * rv));
      st(gt + d, ld(gt + d) * ld(nw + d));
    }
    rms_backward_row(xr, rstd[i], gt, gx + i * D, D);
  }
}

// Per-thread partial sums of dL/dw, reduced after the parallel loop.
struct WeightGrad {
  explicit WeightGrad(int64_t D) : D(D), parts(static_cast<size_t>(at::get_num_threads()) * D, 0.f) {}
  float* part() {
    const int t = at::get_thread_num();  // parallel_for uses at most get_num_threads() of the calling thread
    TORCH_INTERNAL_ASSERT(static_cast<size_t>(t + 1) * D <= parts.size(), "WeightGrad: thread ", t, " has no buffer");
    return parts.data() + static_cast<size_t>(t) * D;
  }
  at::Tensor sum() const {
    at::Tensor p =
        at::from_blob(const_cast<float*>(parts.data()), {static_cast<int64_t>(parts.size()) / D, D}, at::kFloat);
    return p.sum(0);
  }
  int64_t D;
  std::vector<float> parts;
};

constexpr int64_t kGrainBytes = 32 * 1024;  // rows per task: about this many bytes of x

int64_t grain_rows(int64_t D) { return std::max<int64_t>(1, kGrainBytes / (4 * D)); }

struct RMSNormFn : public torch::autograd::Function<RMSNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w, double eps) {
    const int64_t D = x_in.size(-1);
    const at::Tensor x = x_in.contiguous();
    const int64_t N = x.numel() / D;
    at::Tensor y = at::empty_like(x), rstd = at::empty({N}, x.options());
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
    float *yp = y.data_ptr<float>(), *rp = rstd.data_ptr<float>();
    at::parallel_for(0, N, grain_rows(D),
                     [&](int64_t r0, int64_t r1) { rms_forward(xp, wp, yp, rp, r0, r1, D, static_cast<float>(eps)); });
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const at::Tensor gy = grads[0].contiguous();
    const int64_t D = x.size(-1), N = x.numel() / D;
    at::Tensor gx = at::empty_like(x);
    const bool need_w = ctx->needs_input_grad(1);
    WeightGrad gw(need_w ? D : 1);
    at::parallel_for(0, N, grain_rows(D), [&](int64_t r0, int64_t r1) {
      thread_local std::vector<float> g;
      rms_backward(x.data_ptr<float>(), w.data_ptr<float>(), rstd.data_ptr<float>(), gy.data_ptr<float>(),
                   gx.data_ptr<float>(), need_w ? gw.part() : nullptr, r0, r1, D, g);
    });
    return {gx, need_w ? gw.sum() : at::Tensor(), at::Tensor()};
  }
};

struct NormRopeFn : public torch::autograd::Function<NormRopeFn> {
  // x [B, T, H, D]; nw [D], or [0] for no norm (autograd inputs must be defined); cos, sin [B, T, D].
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& nw, double eps,
                            const at::Tensor& cos_in, const at::Tensor& sin_in) {
    const at::Tensor x = x_in.contiguous(), cos = cos_in.contiguous(), sin = sin_in.contiguous();
    const int64_t H = x.size(2), D = x.size(3), N = x.numel() / D;
    const bool norm = nw.numel() > 0;
    at::Tensor y = at::empty_like(x), rstd = at::empty({norm ? N : 0}, x.options());
    const float* nwp = norm ? nw.data_ptr<float>() : nullptr;
    at::parallel_for(0, N, grain_rows(D), [&](int64_t i0, int64_t i1) {
      thread_local std::vector<float> t;
      rope_forward(x.data_ptr<float>(), nwp, static_cast<float>(eps), cos.data_ptr<float>(), sin.data_ptr<float>(),
                   y.data_ptr<float>(), rstd.data_ptr<float>(), i0, i1, H, D, t);
    });
    ctx->save_for_backward({x, nw, rstd, cos, sin});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &nw = saved[1], &rstd = saved[2], &cos = saved[3], &sin = saved[4];
    const at::Tensor gy = grads[0].contiguous();
    const int64_t H = x.size(2), D = x.size(3), N = x.numel() / D;
    at::Tensor gx = at::empty_like(x);
    const bool norm = nw.numel() > 0;
    WeightGrad gw(norm ? D : 1);
    at::parallel_for(0, N, grain_rows(D), [&](int64_t i0, int64_t i1) {
      thread_local std::vector<float> g;
      rope_backward(x.data_ptr<float>(), norm ? nw.data_ptr<float>() : nullptr, norm ? rstd.data_ptr<float>() : nullptr,
                    cos.data_ptr<float>(), sin.data_ptr<float>(), gy.data_ptr<float>(), gx.data_ptr<float>(),
                    norm ? gw.part() : nullptr, i0, i1, H, D, g);
    });
    return {gx, norm && ctx->needs_input_grad(1) ? gw.sum() : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// a b^T for a [M, K], b [N, K] (any strides): oneDNN where it runs, else ATen.
at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b) {
  return onednn::supports(a, b) ? onednn::matmul_nt(a, b) : at::mm(a, b.t());
}

struct LoraLinearFn : public torch::autograd::Function<LoraLinearFn> {
  // x [M, K], w [N, K], bias [N] or [0] (autograd inputs must be defined), A [r, K], B [N, r].
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                            const at::Tensor& A, const at::Tensor& B, double scale) {
    at::Tensor y = cpu::linear(x, w, bias.numel() > 0 ? bias : at::Tensor());  // [M, N]
    at::Tensor low = cpu::linear(x, A, {});                                    // [M, r]
    y.add_(cpu::linear(low, B, {}).mul_(scale));                               // as LinearImpl's no-grad forward rounds
    ctx->save_for_backward({x, w, A, B, low});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["bias"] = bias.numel() > 0;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &A = saved[2], &B = saved[3], &low = saved[4];
    const double scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor gy = grads[0].contiguous();           // [M, N]
    const at::Tensor glow = mm_nt(gy, B.t()).mul_(scale);  // [M, r] = scale gy B
    at::Tensor gx, gw, gb, gA, gB;
    if (ctx->needs_input_grad(0)) gx = mm_nt(gy, w.t()).addmm_(glow, A);  // [M, K] = gy W + glow A
    if (ctx->needs_input_grad(1)) gw = mm_nt(gy.t(), x.t());              // [N, K] = gy^T x
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0);
    if (ctx->needs_input_grad(3)) gA = mm_nt(glow.t(), x.t());              // [r, K] = glow^T x
    if (ctx->needs_input_grad(4)) gB = mm_nt(gy.t(), low.t()).mul_(scale);  // [N, r] = scale gy^T low
    return {gx, gw, gb, gA, gB, at::Tensor()};
  }
};

// The composite forms (HF's code, op for op): the reference, and the path off CPU float32.
at::Tensor rms_norm_composite(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(var + eps);
  return w * h.to(x.scalar_type());
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

bool fused_ops_apply(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() >= 1 && x.size(-1) % 16 == 0 &&
         cpu::isa() != cpu::Isa::none;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (!fused_ops_apply(x) || w.scalar_type() != at::kFloat || !w.is_contiguous() || x.numel() == 0)
    return rms_norm_composite(x, w, eps);
  return RMSNormFn::apply(x, w, eps);
}

at::Tensor norm_rope(const at::Tensor& x, const at::Tensor& norm_w, double eps, const at::Tensor& cos,
                     const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 3 && cos.sizes() == sin.sizes() && cos.size(0) == x.size(0) &&
                  cos.size(1) == x.size(1) && cos.size(2) == x.size(3),
              "norm_rope: expected x [B, T, H, D] and cos, sin [B, T, D]; got ", x.sizes(), ", ", cos.sizes(), ", ",
              sin.sizes());
  const bool fused = fused_ops_apply(x) && x.numel() > 0 && cos.scalar_type() == at::kFloat &&
                     (!norm_w.defined() || (norm_w.scalar_type() == at::kFloat && norm_w.is_contiguous()));
  if (fused) return NormRopeFn::apply(x, norm_w.defined() ? norm_w : at::empty({0}, x.options()), eps, cos, sin);
  const at::Tensor t = norm_w.defined() ? rms_norm_composite(x, norm_w, eps) : x;
  const at::Tensor c = cos.unsqueeze(2).to(x.scalar_type()), s = sin.unsqueeze(2).to(x.scalar_type());  // [B, T, 1, D]
  return t * c + rotate_half(t) * s;
}

at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& A,
                       const at::Tensor& B, double scale) {
  const int64_t K = x.size(-1);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = w.size(0);
  const at::Tensor b = bias.defined() ? bias : at::empty({0}, w.options());
  return LoraLinearFn::apply(x.reshape({-1, K}), w, b, A, B, scale).view(out_shape);
}

}  // namespace r1
