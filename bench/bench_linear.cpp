// The decode-step GEMM y = x W^T for few rows of x: r1::cpu::small_linear (weight-streaming
// AVX-512/AVX2 kernel) against at::linear (MKL sgemm) on the same inputs and threads. Weights are
// cycled through a pool larger than the last-level cache, as in a decode step of a real model.
//
//   bench_linear [--threads 2] [--rows 1,2,4,8,16] [--shapes 1536x512,512x1536,32000x512] [--pool-mb 256]
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "policy/cpu_kernels.hpp"
#include "policy/onednn.hpp"

using Clock = std::chrono::steady_clock;

static std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, sep);) out.push_back(p);
  return out;
}

int main(int argc, char** argv) {
  int threads = 2;
  std::string rows_s = "1,2,4,8,16", shapes_s = "1536x512,512x1536,32000x512";
  int64_t pool_mb = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--rows")
      rows_s = v;
    else if (k == "--shapes")
      shapes_s = v;
    else if (k == "--pool-mb")
      pool_mb = std::stoll(v);
  }
  at::set_num_threads(threads);
  at::NoGradGuard ng;
  fmt::print("kernel: {}, {} threads; GB/s = weight bytes / time\n", r1::cpu::small_linear_isa(), threads);
  fmt::print(
      "| N x K | rows | MKL ms | oneDNN ms | r1 ms | MKL GB/s | r1 GB/s | r1 vs MKL | r1 vs oneDNN | max abs diff |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& sh : split(shapes_s, ',')) {
    const auto nk = split(sh, 'x');
    const int64_t N = std::stoll(nk[0]), K = std::stoll(nk[1]);
    const int64_t bytes = N * K * 4;
    const int64_t pool =
        std::max<int64_t>(1, (pool_mb << 20) / bytes);  // weights in rotation: more than the caches by default
    std::vector<at::Tensor> ws;
    for (int64_t p = 0; p < pool; ++p) ws.push_back(at::randn({N, K}) * 0.05);
    for (const auto& r : split(rows_s, ',')) {
      const int64_t M = std::stoll(r);
      at::Tensor x = at::randn({M, K});
      if (!r1::cpu::small_linear_applies(x, ws[0])) {  // r1 itself uses MKL here
        fmt::print("| {}x{} | {} | (MKL: small_linear does not apply) |\n", N, K, M);
        continue;
      }
      double diff = (at::linear(x, ws[0]) - r1::cpu::small_linear(x, ws[0], {})).abs().max().item<double>();
      auto time = [&](auto fn) {
        std::vector<double> t;
        for (int rep = 0; rep < 7; ++rep) {
          auto t0 = Clock::now();
          for (int64_t p = 0; p < pool; ++p) fn(ws[p]);
          t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(pool));
        }
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
      };
      const double mkl = time([&](const at::Tensor& w) { return at::linear(x, w); });
      const double ours = time([&](const at::Tensor& w) { return r1::cpu::small_linear(x, w, {}); });
      // oneDNN's inner product (policy/onednn.hpp) where it applies (>= 64 rows, AVX-512).
      const bool dnnl = r1::onednn::linear_applies(x, ws[0]);
      const double onednn = dnnl ? time([&](const at::Tensor& w) { return r1::onednn::linear(x, w, {}); }) : 0.0;
      fmt::print("| {}x{} | {} | {:.3f} | {} | {:.3f} | {:.1f} | {:.1f} | {:.2f}x | {} | {:.1e} |\n", N, K, M,
                 mkl * 1e3, dnnl ? fmt::format("{:.3f}", onednn * 1e3) : "-", ours * 1e3, bytes / mkl / 1e9,
                 bytes / ours / 1e9, mkl / ours, dnnl ? fmt::format("{:.2f}x", onednn / ours) : "-", diff);
    }
  }
}
