// One training step (PolicyUpdate: forward, loss, backward, gradient accumulation, AdamW) of a
// Hugging Face model in [train] precision fp32 or bf16-mixed on random sequences, and the GEMM
// throughput of each dtype. bench_precision.py runs each precision in its own process (peak RSS
// from the OS) and prints them side by side.
//
//   bench_precision --model DIR --precision fp32|bf16-mixed [--seqs 8] [--prompt 32] [--completion 96]
//                   [--micro 4] [--steps 3] [--threads 2]
//   bench_precision --gemm MxNxK [--threads 2]
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "policy/checkpoint.hpp"
#include "policy/onednn.hpp"
#include "rl/distributed.hpp"
#include "rl/precision.hpp"
#include "rl/update.hpp"

using namespace r1;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Args {
  std::string model, precision = "fp32", gemm;
  int64_t seqs = 8, prompt = 32, completion = 96, micro = 4, steps = 3, threads = 2;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model = v;
    else if (k == "--precision")
      a.precision = v;
    else if (k == "--gemm")
      a.gemm = v;
    else if (k == "--seqs")
      a.seqs = std::stoll(v);
    else if (k == "--prompt")
      a.prompt = std::stoll(v);
    else if (k == "--completion")
      a.completion = std::stoll(v);
    else if (k == "--micro")
      a.micro = std::stoll(v);
    else if (k == "--steps")
      a.steps = std::stoll(v);
    else if (k == "--threads")
      a.threads = std::stoll(v);
  }
  return a;
}

// y = x W^T at [M, K] x [N, K]: GFLOP/s of at::linear in float32 (MKL), r1's oneDNN float32 path,
// and at::linear in bfloat16 (oneDNN's AVX-512 BF16 kernels).
void bench_gemm(const std::string& shape) {
  int64_t M = 0, N = 0, K = 0;
  std::sscanf(shape.c_str(), "%ldx%ldx%ld", &M, &N, &K);
  at::Tensor x = at::randn({M, K}), w = at::randn({N, K}) * 0.02;
  auto time = [&](auto&& f) {
    f();
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = Clock::now();
      f();
      t.push_back(seconds_since(t0));
    }
    return 2.0 * M * N * K / median(t) / 1e9;
  };
  at::Tensor xb = x.to(at::kBFloat16), wb = w.to(at::kBFloat16);
  const double mkl = time([&] { (void)at::linear(x, w); });
  const double dnn = onednn::supports(x, w) ? time([&] { (void)onednn::matmul_nt(x, w); }) : 0.0;
  const double bf16 = time([&] { (void)at::linear(xb, wb); });
  fmt::print(
      "{{\"gemm\": \"{}\", \"fp32_mkl_gflops\": {:.1f}, \"fp32_onednn_gflops\": {:.1f}, \"bf16_gflops\": {:.1f}}}\n",
      shape, mkl, dnn, bf16);
}

std::vector<Sequence> random_sequences(const Args& a, int64_t vocab) {
  std::mt19937_64 rng(3);
  std::vector<Sequence> seqs;
  for (int64_t i = 0; i < a.seqs; ++i) {
    Sequence s;
    for (int64_t t = 0; t < a.prompt + a.completion; ++t) s.ids.push_back(static_cast<TokenId>(rng() % vocab));
    s.prompt_len = a.prompt, s.comp_len = a.completion, s.group = i;
    s.advantage = i % 2 ? 1.0 : -1.0;
    s.old_logprobs.assign(static_cast<size_t>(a.completion), -5.f);
    s.sampler_logprobs = s.old_logprobs;
    seqs.push_back(std::move(s));
  }
  return seqs;
}

void bench_step(const Args& a) {
  const Precision p = a.precision == "bf16-mixed" ? Precision::bf16_mixed : Precision::fp32;
  const Dtype dtype = p == Precision::bf16_mixed ? Dtype::bfloat16 : Dtype::float32;
  CausalLM policy = load_pretrained(a.model, tensor_options(dtype, "cpu"));
  policy->train();
  std::vector<std::pair<std::string, at::Tensor>> masters;
  if (p == Precision::bf16_mixed) {
    CausalLM m = load_pretrained(a.model, tensor_options(Dtype::float32, "cpu"));
    masters = named_tensors(m);
  }
  TrainWeights weights(policy, p, masters);
  masters.clear();
  torch::optim::AdamW opt(weights.params(), torch::optim::AdamWOptions(1e-6));
  Distributed one_rank(LaunchEnv{}, DistributedOptions{}, at::kCPU);
  const auto seqs = random_sequences(a, policy->config().vocab_size);
  GrpoOptions grpo;
  grpo.loss_aggregation = LossAggregation::token_mean;
  TrainOptions train;
  train.micro_batch = a.micro;
  SkipGuard guard;
  std::vector<double> times;
  std::mt19937_64 rng(1);
  for (int64_t s = 0; s <= a.steps; ++s) {  // the first is a warm-up
    StepMetrics m;
    const auto t0 = Clock::now();
    PolicyUpdate(policy, weights, opt, one_rank, guard, {.grpo = grpo, .train = train}).run(seqs, 0, 1e-6, rng, m);
    if (s > 0) times.push_back(seconds_since(t0));
  }
  const double tokens = static_cast<double>(a.seqs * (a.prompt + a.completion));
  fmt::print("{{\"precision\": \"{}\", \"step_s\": {:.3f}, \"tokens_per_s\": {:.1f}, \"skipped\": {}}}\n", a.precision,
             median(times), tokens / median(times), guard.total);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  at::set_num_threads(static_cast<int>(a.threads));
  if (!a.gemm.empty()) {
    bench_gemm(a.gemm);
    return 0;
  }
  if (a.model.empty()) {
    fmt::print(stderr, "usage: bench_precision --model DIR --precision fp32|bf16-mixed ... | --gemm MxNxK\n");
    return 2;
  }
  bench_step(a);
  return 0;
}
