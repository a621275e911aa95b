// Generated tokens/s and KV memory of the rollout engine on a long-tailed workload: each line of
// --workload is {"prompt": [ids], "stop": [L_0, .., L_{G-1}]}, G samples whose lengths are forced
// (GenerationRequest::forced_stop emits eos as token L_j, as a logit bias would). Greedy, so both
// schedules produce identical tokens; the run checks that they do. Driven by bench_longtail.py,
// which runs Hugging Face generate on the same model, prompts and lengths.
//
//   bench_longtail --model DIR --workload FILE --threads 2 --max-new 512 --max-batch 64 --repeats 1
//
// --schedule continuous|drained: one schedule per process, so that the peak RSS (getrusage) is its
// own. Prints one JSON object {"kind":"longtail","schedule":...,"tokens_hash":...}: the script checks
// that both schedules generated the same tokens.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "common/memory.hpp"
#include "policy/checkpoint.hpp"
#include "rollout/engine.hpp"

using Clock = std::chrono::steady_clock;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

struct Args {
  std::string model_dir, workload, schedule = "continuous";
  int threads = 2, repeats = 1;
  int64_t max_new = 512, max_batch = 64;
  r1::Dtype dtype = r1::Dtype::float32;
};

// False on an unknown flag.
bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model_dir = v;
    else if (k == "--workload")
      a.workload = v;
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--max-new")
      a.max_new = std::stoll(v);
    else if (k == "--max-batch")
      a.max_batch = std::stoll(v);
    else if (k == "--repeats")
      a.repeats = std::stoi(v);
    else if (k == "--schedule")
      a.schedule = v;
    else if (k == "--dtype" && r1::cfg::parse_enum<r1::Dtype>(v))
      a.dtype = *r1::cfg::parse_enum<r1::Dtype>(v);
    else
      return fmt::print(stderr, "unknown flag {}\n", k), false;
  }
  return true;
}

std::vector<r1::GenerationRequest> read_workload(const std::string& file) {
  std::vector<r1::GenerationRequest> reqs;
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    if (line.empty()) continue;
    const auto o = boost::json::parse(line).as_object();
    r1::GenerationRequest r;
    for (const auto& x : o.at("prompt").as_array()) r.prompt.push_back(static_cast<r1::TokenId>(x.as_int64()));
    for (const auto& x : o.at("stop").as_array()) r.forced_stop.push_back(x.as_int64());
    r.n = static_cast<int64_t>(r.forced_stop.size());
    r.stream = reqs.size();
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// The old engine's preallocation for the same batches (requests packed up to max_batch rows), in
// tokens: each batch's prompts once at its longest prompt, plus max_new_tokens slots per row.
int64_t static_kv_tokens(const std::vector<r1::GenerationRequest>& reqs, int64_t max_batch, int64_t max_new) {
  int64_t most = 0;
  for (size_t i = 0; i < reqs.size();) {
    int64_t rows = 0, prompts = 0, longest = 0;
    for (; i < reqs.size() && rows + reqs[i].n <= max_batch; ++i)
      rows += reqs[i].n, ++prompts, longest = std::max<int64_t>(longest, reqs[i].prompt.size());
    most = std::max(most, prompts * longest + rows * max_new);
  }
  return most;
}

struct Timed {
  std::vector<double> tok_s, secs;
  int64_t tokens = 0, steps = 0;
  uint64_t hash = 0;  // FNV-1a over every completion's tokens
};

Timed run(r1::Engine& engine, const std::vector<r1::GenerationRequest>& reqs, const r1::SamplingOptions& s,
          int repeats) {
  Timed t;
  for (int r = 0; r < repeats; ++r) {
    const int64_t steps0 = engine.stats().decode_steps;
    auto t0 = Clock::now();
    auto outs = engine.generate(reqs, s);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    t.tokens = 0, t.hash = 1469598103934665603ULL;
    for (const auto& c : outs) {
      t.tokens += static_cast<int64_t>(c.tokens.size());
      for (auto tok : c.tokens) t.hash = (t.hash ^ static_cast<uint64_t>(tok)) * 1099511628211ULL;
    }
    t.steps = engine.stats().decode_steps - steps0;
    t.tok_s.push_back(t.tokens / dt), t.secs.push_back(dt);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  r1::keep_freed_memory();
  Args a;
  if (!parse_args(argc, argv, a)) return 2;
  const auto schedule = r1::cfg::parse_enum<r1::Schedule>(a.schedule);
  if (a.model_dir.empty() || a.workload.empty() || !schedule)
    return fmt::print(stderr,
                      "usage: bench_longtail --model DIR --workload FILE [--threads N] [--max-new N] "
                      "[--schedule continuous|drained] [--dtype float32|bfloat16]\n"),
           2;
  at::set_num_threads(a.threads);
  at::set_num_interop_threads(1);
  const std::vector<r1::GenerationRequest> reqs = read_workload(a.workload);
  r1::CausalLM model = r1::load_pretrained(a.model_dir, r1::tensor_options(a.dtype, "cpu"));
  model->eval();
  r1::SamplingOptions s;
  s.temperature = 0.0;
  s.max_new_tokens = a.max_new;
  s.ignore_eos = true;  // lengths come from forced_stop alone
  r1::Engine engine(model, nullptr, {.max_batch = a.max_batch, .schedule = *schedule});
  engine.generate({{reqs.at(0).prompt, 1, 0, 4}}, s);  // warm-up
  const r1::EngineStats warm = engine.stats();
  const Timed t = run(engine, reqs, s, a.repeats);
  const auto& st = engine.stats();
  const double mib = 1048576.0, token_bytes = static_cast<double>(st.kv_block_bytes) / engine.options().block_size;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print(
      "{{\"kind\":\"longtail\",\"schedule\":\"{}\",\"tokens\":{},\"tokens_hash\":\"{:016x}\",\"median_s\":{:.3f},"
      "\"median_tok_s\":{:.2f},\"decode_steps\":{},\"kv_peak_mib\":{:.2f},\"kv_pool_mib\":{:.2f},"
      "\"kv_static_mib\":{:.2f},\"peak_rss_mib\":{:.1f},\"prefill_s\":{:.3f},\"decode_s\":{:.3f},"
      "\"prefill_calls\":{}}}\n",
      r1::cfg::name_of(*schedule), t.tokens, t.hash, median(t.secs), median(t.tok_s), t.steps,
      st.kv_peak_blocks * st.kv_block_bytes / mib, st.kv_capacity_blocks * st.kv_block_bytes / mib,
      static_kv_tokens(reqs, a.max_batch, a.max_new) * token_bytes / mib, static_cast<double>(ru.ru_maxrss) / 1024.0,
      (st.prefill_seconds - warm.prefill_seconds) / a.repeats, (st.decode_seconds - warm.decode_seconds) / a.repeats,
      (st.prefill_calls - warm.prefill_calls) / a.repeats);
  return 0;
}
