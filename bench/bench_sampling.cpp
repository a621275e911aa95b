// The decode step's sampler on CPU: r1's fused sampler against the ATen composition it replaces
// (sample_tokens_aten: log-softmax, softmax, cumsum, searchsorted, gathers) on the same logits and
// threads, repeats interleaved. Logits: at::randn(B, V) * 3 after at::manual_seed(0), the tensor
// that torch.manual_seed(0); torch.randn(B, V) * 3 gives, so bench_sampling.py can time PyTorch on
// the same input. Prints one JSON line per case: {"batch", "vocab", "mode", "fused_ms", "aten_ms"}.
//
//   bench_sampling [--threads 2] [--batches 1,8,64] [--vocabs 32000,151936] [--repeats 21]
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "rollout/sampling.hpp"

using Clock = std::chrono::steady_clock;

namespace {

std::vector<int64_t> ints(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');) out.push_back(std::stoll(p));
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_ms(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 21;
  std::string batches = "1,8,64", vocabs = "32000,151936";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::stoi(v);
    if (k == "--batches") batches = v;
    if (k == "--vocabs") vocabs = v;
    if (k == "--repeats") repeats = std::stoi(v);
  }
  at::set_num_threads(threads);
  for (int64_t V : ints(vocabs))
    for (int64_t B : ints(batches)) {
      at::manual_seed(0);
      const at::Tensor logits = at::randn({B, V}) * 3;
      std::vector<r1::DrawKey> keys;
      for (int64_t b = 0; b < B; ++b) keys.push_back({0, static_cast<uint64_t>(b), 0});
      const at::Tensor u = r1::philox_uniforms(1, keys);
      for (double T : {0.0, 1.0}) {
        r1::SamplingOptions o;
        o.temperature = T;
        if (!r1::fused_sampler_applies(logits, o)) {
          fmt::print(stderr, "bench_sampling: the fused sampler does not apply on this CPU (R1_CPU_ISA?)\n");
          return 1;
        }
        std::vector<double> fused, aten;
        for (int r = 0; r < repeats + 2; ++r) {  // two warm-up rounds
          const double f = time_ms([&] { r1::sample_tokens_fused(logits, o, u); });
          const double a = time_ms([&] { r1::sample_tokens_aten(logits, o, u); });
          if (r >= 2) fused.push_back(f), aten.push_back(a);
        }
        fmt::print("{{\"batch\": {}, \"vocab\": {}, \"mode\": \"{}\", \"fused_ms\": {:.4f}, \"aten_ms\": {:.4f}}}\n", B,
                   V, T == 0 ? "greedy" : "T=1", median(fused), median(aten));
      }
    }
  return 0;
}
