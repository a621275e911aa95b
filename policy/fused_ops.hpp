// Fused RMSNorm and RoPE with their own backward: one pass over the rows each way instead of the
// ~6 ATen ops (and ~10 in backward) of the composite forms, which dominate the non-GEMM time of
// prefill and of the training forward/backward of small models. float32 on CPU with AVX2+FMA runs
// the fused kernels; anything else runs the composite ATen ops, which are the reference.
// A LoRA-adapted projection's training forward also has its own backward, on every device.
#pragma once
#include <ATen/ATen.h>

namespace r1 {

// w * x / sqrt(mean(x^2, -1) + eps), x [.., D], w [D]. Differentiable w.r.t. x and w.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// HF's apply_rotary_pos_emb for x [B, T, H, D] (heads third), after an optional RMSNorm over D
// (Qwen3's q_norm / k_norm; norm_w undefined: none): y = t * cos + rotate_half(t) * sin with
// cos, sin [B, T, D]. Returns [B, T, H, D]. Differentiable w.r.t. x and norm_w.
at::Tensor norm_rope(const at::Tensor& x, const at::Tensor& norm_w, double eps, const at::Tensor& cos,
                     const at::Tensor& sin);

// y = x W^T + b + scale (x A^T) B^T for x [.., in], W [out, in], A [r, in], B [out, r], bias [out]
// or undefined: a LoRA projection under autograd (no dropout). It saves x and x A^T [.., r] and no
// [.., out] tensor; its backward adds A's part of dx into W's in place, so a projection's backward
// holds one [.., in] and one [.., r] tensor beside dy where autograd's composite holds four
// [.., out] and [.., in] tensors. The values are those of the no-grad forward, op for op.
at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& A,
                       const at::Tensor& B, double scale);

// Whether the fused kernels run for this tensor (else the composite ops do).
bool fused_ops_apply(const at::Tensor& x);

}  // namespace r1
