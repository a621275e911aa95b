// Generation tokens/s of the rollout engine (greedy, eos ignored so every row generates exactly
// --new tokens), plus this machine's memory bandwidth for the batch-1 decode bound. Driven by
// bench_generate.py, which runs Hugging Face generate on the same model and prompts.
//
//   bench_generate --model DIR --prompts FILE --threads 2 --new 64 --batches 1,8,32,64 --repeats 3
//
// FILE: one prompt per line, token ids separated by spaces. Batch B uses the first B lines.
// Prints one JSON object per line: {"kind":"bandwidth",...}, {"kind":"gen","batch":B,...}.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/memory.hpp"
#include "policy/checkpoint.hpp"
#include "rollout/engine.hpp"

using Clock = std::chrono::steady_clock;
static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// STREAM-style bandwidth over `threads` threads on arrays far larger than the caches. copy counts
// read + write bytes (STREAM convention); read is a vectorisable sum over one array.
static std::pair<double, double> bandwidth_gbs(int threads, size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  auto parallel = [&](auto fn) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      size_t lo = n * t / threads, hi = n * (t + 1) / threads;
      ts.emplace_back([=, &fn] { fn(lo, hi, t); });
    }
    for (auto& t : ts) t.join();
  };
  std::vector<double> copy, read;
  std::vector<double> sinks(threads);
  for (int r = 0; r < repeats + 1; ++r) {
    auto t0 = Clock::now();
    parallel([&](size_t lo, size_t hi, int) { std::memcpy(b.data() + lo, a.data() + lo, (hi - lo) * sizeof(float)); });
    double s = since(t0);
    if (r) copy.push_back(2.0 * bytes / s / 1e9);
    t0 = Clock::now();
    parallel([&](size_t lo, size_t hi, int t) {
      float acc[16] = {};
      for (size_t i = lo; i + 16 <= hi; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += b[i + j];
      double total = 0;
      for (float x : acc) total += x;
      sinks[t] = total;
    });
    s = since(t0);
    if (r) read.push_back(1.0 * bytes / s / 1e9);
  }
  if (sinks[0] < 0) fmt::print(stderr, "impossible\n");
  return {median(copy), median(read)};
}

namespace {

struct Args {
  std::string model_dir, prompts_file, batches = "1,8,32,64";
  int threads = 2, repeats = 3;
  int64_t max_new = 64;
  size_t bw_mb = 512;
  r1::Dtype dtype = r1::Dtype::float32;
};

// False on an unknown flag or a missing --model / --prompts (after a usage line).
bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model_dir = v;
    else if (k == "--prompts")
      a.prompts_file = v;
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--new")
      a.max_new = std::stoll(v);
    else if (k == "--batches")
      a.batches = v;
    else if (k == "--repeats")
      a.repeats = std::stoi(v);
    else if (k == "--bw-mb")
      a.bw_mb = std::stoul(v);
    else if (k == "--dtype" && (v == "float32" || v == "bfloat16"))
      a.dtype = v == "float32" ? r1::Dtype::float32 : r1::Dtype::bfloat16;
    else
      return fmt::print(stderr, "unknown flag {}\n", k), false;
  }
  if (a.model_dir.empty() || a.prompts_file.empty())
    return fmt::print(stderr,
                      "usage: bench_generate --model DIR --prompts FILE [--threads N] [--new N] [--batches 1,8] "
                      "[--repeats R] [--bw-mb MB] [--dtype float32|bfloat16]\n"),
           false;
  return true;
}

// One prompt per line of space-separated token ids.
std::vector<std::vector<r1::TokenId>> read_prompts(const std::string& file) {
  std::vector<std::vector<r1::TokenId>> prompts;
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    std::istringstream ss(line);
    std::vector<r1::TokenId> p;
    long x;
    while (ss >> x) p.push_back(static_cast<r1::TokenId>(x));
    if (!p.empty()) prompts.push_back(std::move(p));
  }
  return prompts;
}

std::vector<int64_t> parse_batches(const std::string& list) {
  std::vector<int64_t> batches;
  std::istringstream ss(list);
  for (std::string part; std::getline(ss, part, ',');) batches.push_back(std::stoll(part));
  return batches;
}

// Prints the model line: parameters, and the bytes of weights one decode step reads (every
// parameter except the input embedding table, of which a step reads one row per sequence; when
// tied, the table is read whole as the lm_head).
void print_model(const r1::CausalLM& model) {
  int64_t weight_bytes = 0, params = 0;
  for (const auto& p : model->named_parameters()) {
    params += p.value().numel();
    if (p.key() == "model.embed_tokens.weight" && !model->config().tie_word_embeddings) continue;
    weight_bytes += p.value().numel() * static_cast<int64_t>(p.value().element_size());
  }
  fmt::print("{{\"kind\":\"model\",\"params\":{},\"decode_weight_bytes\":{}}}\n", params, weight_bytes);
}

// Times `repeats` generations of batch B and prints its line; false when a row did not generate
// exactly max_new_tokens.
bool run_batch(r1::Engine& engine, const std::vector<std::vector<r1::TokenId>>& prompts, int64_t B,
               const r1::SamplingOptions& s, int repeats) {
  std::vector<r1::GenerationRequest> reqs;
  for (int64_t i = 0; i < B; ++i) reqs.push_back({prompts[i], 1, static_cast<uint64_t>(i)});
  std::vector<double> wall, decode, prefill;
  for (int r = 0; r < repeats; ++r) {
    r1::EngineStats before = engine.stats();
    auto t0 = Clock::now();
    auto outs = engine.generate(reqs, s);
    double secs = since(t0);
    int64_t toks = 0;
    for (const auto& c : outs) toks += static_cast<int64_t>(c.tokens.size());
    if (toks != B * s.max_new_tokens)
      return fmt::print(stderr, "batch {}: generated {} tokens, expected {}\n", B, toks, B * s.max_new_tokens), false;
    const auto& st = engine.stats();
    wall.push_back(toks / secs);
    // decode_tokens counts the sampled tokens (the first one comes from the prefill's logits).
    decode.push_back((st.decode_tokens - before.decode_tokens) / (st.decode_seconds - before.decode_seconds));
    prefill.push_back(st.prefill_seconds - before.prefill_seconds);
  }
  fmt::print(
      "{{\"kind\":\"gen\",\"batch\":{},\"tok_s\":[{}],\"median_tok_s\":{:.3f},\"median_decode_tok_s\":{:.3f},"
      "\"median_prefill_s\":{:.5f}}}\n",
      B, fmt::format("{:.3f}", fmt::join(wall, ",")), median(wall), median(decode), median(prefill));
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  r1::keep_freed_memory();  // as r1 itself does (cli/main.cpp)
  Args a;
  if (!parse_args(argc, argv, a)) return 2;
  at::set_num_threads(a.threads);
  at::set_num_interop_threads(1);
  const auto prompts = read_prompts(a.prompts_file);
  const std::vector<int64_t> batches = parse_batches(a.batches);

  if (a.bw_mb > 0) {
    auto [copy, read] = bandwidth_gbs(a.threads, a.bw_mb << 20, 5);
    fmt::print("{{\"kind\":\"bandwidth\",\"threads\":{},\"mb\":{},\"copy_gbs\":{:.3f},\"read_gbs\":{:.3f}}}\n",
               a.threads, a.bw_mb, copy, read);
    std::fflush(stdout);
  }

  r1::CausalLM model = r1::load_pretrained(a.model_dir, r1::tensor_options(a.dtype, "cpu"));
  model->eval();
  print_model(model);
  const int64_t max_b = *std::max_element(batches.begin(), batches.end());
  r1::Engine engine(model, nullptr, {.max_batch = std::max<int64_t>(max_b, 1)});
  r1::SamplingOptions s;
  s.temperature = 0.0;
  s.ignore_eos = true;
  s.max_new_tokens = a.max_new;
  r1::SamplingOptions warm = s;  // allocator, oneDNN/MKL kernels
  warm.max_new_tokens = 4;
  engine.generate({{prompts[0], 1, 0}}, warm);

  for (int64_t B : batches) {
    if (B > static_cast<int64_t>(prompts.size()))
      return fmt::print(stderr, "batch {} needs {} prompts, have {}\n", B, B, prompts.size()), 2;
    if (!run_batch(engine, prompts, B, s, a.repeats)) return 1;
  }
  return 0;
}
