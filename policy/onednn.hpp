// float32 GEMMs on CPU through the oneDNN bundled in LibTorch (its `mkldnn::_linear_pointwise` op on
// plain dense tensors) instead of MKL's sgemm, which LibTorch uses by default: oneDNN has AVX-512
// kernels on AMD CPUs, where MKL takes its AVX2 path, and measures 1.6-2.4x faster here for the
// many-row GEMMs of prefill and training (bench/bench_linear --many-rows). Differentiable.
#pragma once
#include <ATen/ATen.h>

namespace r1::onednn {

// Whether oneDNN can run x [.., K] times w [N, K]: float32 CPU tensors, a CPU with AVX-512
// (R1_CPU_ISA=avx2|none turns it off, as for the decode kernels) and the op present in LibTorch.
bool supports(const at::Tensor& x, const at::Tensor& w);
// supports() and at least 64 rows, where oneDNN beats MKL and r1's few-row kernel on every shape
// measured: r1 routes such GEMMs here.
bool linear_applies(const at::Tensor& x, const at::Tensor& w);

// y = x W^T + b, [.., N]; gradients for x, w and b (their GEMMs through oneDNN too).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// y = a b^T for a [M, K], b [N, K] (any strides): the GEMM behind linear(), for callers with their own backward.
at::Tensor matmul_nt(const at::Tensor& a, const at::Tensor& b);

}  // namespace r1::onednn
