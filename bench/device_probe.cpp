// The GPU probe of scripts/device-check.sh, one JSON report: which SDPA kernel each attention call
// shape gets; device vs CPU agreement on the policy fixtures (logits, and the gradient of one
// training loss); rollouts on the fixtures with the decode step as CUDA graphs and without (same
// tokens); generation tokens/s and peak device memory of a Qwen2.5-0.5B-shaped random model at
// batch 64 and on the long-tailed workload (continuous vs static batches, with and without CUDA
// graphs); the time to publish its weights to a sampler copy. Runs on CPU too (how it is tested without a GPU), with
// --small.
//
//   device_probe --device cuda --fixtures tests/fixtures/models --config bench/qwen2.5-0.5b.json --out FILE
//                [--save DIR]   also write the random model there (for a GRPO step with r1 train)
//                [--small]      workloads of 32 and 64 tokens instead of 256 and 512 (CPU tests)
//   device_probe --compare DIR_A DIR_B    {"max_abs_diff": ...} between two model folders' weights
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "policy/device.hpp"
#include "policy/safetensors.hpp"
#include "rollout/engine.hpp"
#include "rollout/weights.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string device = "cuda", fixtures = "tests/fixtures/models", config, out, save;
  bool small = false;
};

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sync(const at::Device& d) {
  if (d.is_cuda()) at::zeros({1}, at::TensorOptions().device(d)).item<float>();  // waits for the stream
}

json::array sdpa_report(const r1::ModelConfig& c, const at::TensorOptions& opts) {
  json::array out;
  for (const auto& call : r1::sdpa_calls(c, opts, 64, 256, 512))
    out.push_back({{"call", call.call},
                   {"backend", call.backend},
                   {"q", json::value_from(call.q)},
                   {"k", json::value_from(call.k)},
                   {"mask", call.mask}});
  return out;
}

// Largest |device - CPU| of the logits and of the gradient of the completion log-prob sum, float32.
json::object agreement(const fs::path& dir, const at::Device& dev) {
  auto run = [&](const at::Device& d) {
    r1::CausalLM m = r1::load_pretrained(dir, at::TensorOptions().dtype(at::kFloat).device(d));
    r1::SafetensorsReader r(dir.parent_path().parent_path() / "parity" / (dir.filename().string() + ".safetensors"));
    at::Tensor ids = r.get("input_ids").select(0, 0).to(at::kLong);  // [T]
    std::vector<r1::TokenId> toks(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    at::Tensor logits = m->logits(m->hidden({ids.unsqueeze(0).to(d)})).cpu();  // [1, T, V]
    const auto T = static_cast<int64_t>(toks.size());
    at::Tensor loss = r1::completion_logprobs(*m, {{toks.data(), T / 2, T - T / 2, 0}}).logprobs.sum();
    loss.backward();
    std::vector<at::Tensor> grads;
    for (const auto& p : m->parameters()) grads.push_back(p.grad().defined() ? p.grad().cpu() : at::zeros({1}));
    return std::pair{logits, grads};
  };
  auto [lc, gc] = run(at::kCPU);
  auto [ld, gd] = run(dev);
  double gmax = 0, gscale = 0;
  for (size_t i = 0; i < gc.size(); ++i) {
    gmax = std::max(gmax, (gc[i] - gd[i]).abs().max().item<double>());
    gscale = std::max(gscale, gc[i].abs().max().item<double>());
  }
  return {{"logits_max_abs_diff", (lc - ld).abs().max().item<double>()},
          {"grad_max_abs_diff", gmax},
          {"grad_max_abs", gscale}};
}

r1::CausalLM random_model(const r1::ModelConfig& c, const at::TensorOptions& opts) {
  at::manual_seed(0);
  r1::CausalLM m(c, opts);
  at::NoGradGuard ng;
  for (auto& p : m->parameters()) p.dim() > 1 ? p.normal_(0, 0.02) : p.fill_(1.0);
  for (const auto& item : m->named_parameters())
    if (item.key().find("bias") != std::string::npos) item.value().zero_();
  m->eval();
  return m;
}

// Tokens/s and peak device memory of one generate() call.
json::object timed_generate(r1::Engine& e, const std::vector<r1::GenerationRequest>& reqs, const r1::SamplingOptions& s,
                            const at::Device& dev) {
  r1::reset_device_peak(dev);
  const r1::EngineStats before = e.stats();
  auto t0 = Clock::now();
  auto outs = e.generate(reqs, s);
  sync(dev);
  const double secs = since(t0);
  int64_t tokens = 0;
  for (const auto& c : outs) tokens += static_cast<int64_t>(c.tokens.size());
  const auto& st = e.stats();
  return {{"tokens", tokens},
          {"seconds", secs},
          {"tok_s", tokens / secs},
          {"decode_steps", st.decode_steps - before.decode_steps},
          {"kv_peak_mib", st.kv_peak_blocks * st.kv_block_bytes / 1048576.0},
          {"device_peak_mib", r1::device_peak_bytes(dev) / 1048576.0}};
}

// Batch 64 with every row at max_new; then 64 prompts x 8 with 10% of the completions at max_new
// and the rest at 32..256 (scaled down with --small), continuous and in static batches.
json::object generation(r1::CausalLM& m, const Args& a, const at::Device& dev) {
  const int64_t max_new = a.small ? 64 : 512, V = m->config().vocab_size;
  std::mt19937 rng(0);
  auto prompt = [&](int64_t n) {
    std::vector<r1::TokenId> p;
    for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<r1::TokenId>(3 + rng() % (V - 3)));
    return p;
  };
  r1::SamplingOptions s;
  s.temperature = 0, s.ignore_eos = true, s.max_new_tokens = a.small ? 32 : 256;
  std::vector<r1::GenerationRequest> batch;
  for (uint64_t i = 0; i < 64; ++i) batch.push_back({prompt(128), 1, i});
  json::object out;
  for (auto graphs : {r1::DecodeGraphMode::cuda, r1::DecodeGraphMode::off}) {
    r1::Engine warm(m, nullptr, {.max_batch = 64, .graphs = graphs});
    warm.generate({{prompt(16), 1, 0, 4}}, s);
    auto t = timed_generate(warm, batch, s, dev);
    t["graphs_captured"] = warm.stats().graphs_captured;
    out[graphs == r1::DecodeGraphMode::cuda ? "batch64" : "batch64_no_graphs"] = t;
  }
  std::vector<r1::GenerationRequest> tail;
  for (uint64_t i = 0; i < 64; ++i) {
    r1::GenerationRequest r{prompt(32 + rng() % 64), 8, i};
    for (int j = 0; j < 8; ++j)
      r.forced_stop.push_back(rng() % 10 == 0 ? max_new : (max_new / 16) + rng() % (max_new / 2 - max_new / 16 + 1));
    tail.push_back(std::move(r));
  }
  s.max_new_tokens = max_new;
  for (auto sched : {r1::Schedule::continuous, r1::Schedule::drained}) {
    r1::Engine e(m, nullptr, {.max_batch = 64, .schedule = sched, .graphs = r1::DecodeGraphMode::cuda});
    out[fmt::format("longtail_{}", r1::cfg::name_of(sched))] = timed_generate(e, tail, s, dev);
  }
  r1::Engine e(m, nullptr, {.max_batch = 64, .graphs = r1::DecodeGraphMode::off});
  out["longtail_continuous_no_graphs"] = timed_generate(e, tail, s, dev);
  return out;
}

// Greedy and sampled rollouts of a fixture in float32 on the device with the decode step as CUDA
// graphs and without: identical tokens expected, and greedy equal to transformers' tokens.
json::object graphs_agreement(const fs::path& dir, const at::Device& dev) {
  r1::CausalLM m = r1::load_pretrained(dir, at::TensorOptions().dtype(at::kFloat).device(dev));
  r1::SafetensorsReader r(dir.parent_path().parent_path() / "parity" / (dir.filename().string() + ".safetensors"));
  at::Tensor ids = r.get("input_ids"), mask = r.get("attention_mask"), want = r.get("greedy");
  std::vector<r1::GenerationRequest> reqs;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    std::vector<r1::TokenId> p;
    for (int64_t t = 0; t < ids.size(1); ++t)
      if (mask[b][t].item<int64_t>()) p.push_back(static_cast<r1::TokenId>(ids[b][t].item<int64_t>()));
    reqs.push_back({p, 3, static_cast<uint64_t>(b)});
  }
  json::object out;
  for (double temperature : {0.0, 1.0}) {
    r1::SamplingOptions s;
    s.temperature = temperature, s.ignore_eos = true, s.max_new_tokens = want.size(1), s.seed = 3;
    std::vector<std::vector<r1::Completion>> runs;
    int64_t captured = 0;
    for (auto graphs : {r1::DecodeGraphMode::cuda, r1::DecodeGraphMode::off}) {
      r1::Engine e(m, nullptr, {.max_batch = 8, .graphs = graphs});
      runs.push_back(e.generate(reqs, s));
      captured += e.stats().graphs_captured;
    }
    int64_t same = 0, hf = 0;
    for (size_t i = 0; i < runs[0].size(); ++i) {
      same += runs[0][i].tokens == runs[1][i].tokens;
      const at::Tensor w = want[runs[0][i].request];
      hf += std::equal(runs[0][i].tokens.begin(), runs[0][i].tokens.end(), w.data_ptr<int64_t>());
    }
    const std::string k = temperature == 0 ? "greedy" : "sampled";
    out[k + "_same_with_and_without_graphs"] = fmt::format("{}/{}", same, runs[0].size());
    if (temperature == 0) out["greedy_equal_to_transformers"] = fmt::format("{}/{}", hf, runs[0].size());
    out[k + "_graphs_captured"] = captured;
  }
  return out;
}

json::object run(const Args& a) {
  const at::Device dev = r1::parse_device(a.device);
  json::object report{{"device", r1::device_summary()}, {"probe_device", a.device}};
  r1::ModelConfig c = r1::ModelConfig::from_file(a.config);
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(dev);
  report["sdpa_bf16"] = sdpa_report(c, bf16);
  report["sdpa_float32"] = sdpa_report(c, bf16.dtype(at::kFloat));
  json::object agree;
  for (const char* name : {"qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"})
    agree[name] = agreement(fs::path(a.fixtures) / name, dev);
  report["agreement_float32"] = agree;
  json::object graphs;
  for (const char* name : {"qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"})
    graphs[name] = graphs_agreement(fs::path(a.fixtures) / name, dev);
  report["decode_graphs_float32"] = graphs;
  r1::CausalLM m = random_model(c, bf16);
  report["generation_bf16"] = generation(m, a, dev);
  r1::CausalLM sampler = random_model(c, bf16);
  auto t0 = Clock::now();
  r1::copy_weights(*sampler, *m);
  sync(dev);
  report["publish_seconds"] = since(t0);
  if (!a.save.empty()) r1::save_pretrained(m, a.save);
  return report;
}

}  // namespace

// Largest |a - b| over the weights of two model folders with the same tensors.
int compare(const fs::path& a, const fs::path& b) {
  r1::CausalLM ma = r1::load_pretrained(a, at::TensorOptions().dtype(at::kFloat));
  r1::CausalLM mb = r1::load_pretrained(b, at::TensorOptions().dtype(at::kFloat));
  auto pb = mb->named_parameters();
  double worst = 0;
  for (const auto& item : ma->named_parameters())
    worst = std::max(worst, (item.value() - pb[item.key()]).abs().max().template item<double>());
  fmt::print("{{\"max_abs_diff\":{}}}\n", worst);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--compare") {
    try {
      return compare(argv[2], argv[3]);
    } catch (const std::exception& e) {
      return fmt::print(stderr, "device_probe: {}\n", e.what()), 1;
    }
  }
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--device")
      a.device = next();
    else if (k == "--fixtures")
      a.fixtures = next();
    else if (k == "--config")
      a.config = next();
    else if (k == "--out")
      a.out = next();
    else if (k == "--save")
      a.save = next();
    else if (k == "--small")
      a.small = true;
    else
      return fmt::print(stderr, "unknown flag {}\n", k), 2;
  }
  if (a.config.empty() || a.out.empty())
    return fmt::print(stderr, "usage: device_probe --config CONFIG.json --out FILE [--device cuda] [--small]\n"), 2;
  try {
    const std::string text = json::serialize(run(a));
    r1::write_file_atomic(a.out, text + "\n");
    fmt::print("{}\n", text);
  } catch (const std::exception& e) {
    fmt::print(stderr, "device_probe: {}\n", e.what());
    return 1;
  }
  return 0;
}
