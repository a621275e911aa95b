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

int main(int argc, char** argv) {
  r1::keep_freed_memory();
  std::string model_dir, workload, schedule_name = "continuous";
  int threads = 2, repeats = 1;
  int64_t max_new = 512, max_batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      model_dir = v;
    else if (k == "--workload")
      workload = v;
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--max-new")
      max_new = std::stoll(v);
    else if (k == "--max-batch")
      max_batch = std::stoll(v);
    else if (k == "--repeats")
      repeats = std::stoi(v);
    else if (k == "--schedule")
      schedule_name = v;
    else
      return fmt::print(stderr, "unknown flag {}\n", k), 2;
  }
  if (model_dir.empty() || workload.empty())
    return fmt::print(stderr, "usage: bench_longtail --model DIR --workload FILE [--threads N] [--max-new N]\n"), 2;
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);

  std::vector<r1::GenerationRequest> reqs;
  std::ifstream f(workload);
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
  r1::CausalLM model = r1::load_pretrained(model_dir, r1::tensor_options(r1::Dtype::float32, "cpu"));
  model->eval();
  r1::SamplingOptions s;
  s.temperature = 0.0;
  s.max_new_tokens = max_new;
  s.ignore_eos = true;  // lengths come from forced_stop alone
  // Today's preallocation for the same batches (requests packed up to max_batch rows): each batch's
  // prompts once at its longest prompt, plus max_new_tokens slots per row.
  int64_t static_tokens = 0;
  for (size_t i = 0; i < reqs.size();) {
    int64_t rows = 0, prompts = 0, longest = 0;
    for (; i < reqs.size() && rows + reqs[i].n <= max_batch; ++i)
      rows += reqs[i].n, ++prompts, longest = std::max<int64_t>(longest, reqs[i].prompt.size());
    static_tokens = std::max(static_tokens, prompts * longest + rows * max_new);
  }
  const auto parsed = r1::cfg::parse_enum<r1::Schedule>(schedule_name);
  if (!parsed) return fmt::print(stderr, "--schedule: continuous or drained\n"), 2;
  const r1::Schedule schedule = *parsed;
  r1::Engine engine(model, nullptr, {.max_batch = max_batch, .schedule = schedule});
  engine.generate({{reqs[0].prompt, 1, 0, 4}}, s);  // warm-up
  std::vector<double> tok_s, secs;
  int64_t tokens = 0, steps = 0;
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a over every completion's tokens
  const r1::EngineStats warm = engine.stats();
  for (int r = 0; r < repeats; ++r) {
    const int64_t steps0 = engine.stats().decode_steps;
    auto t0 = Clock::now();
    auto outs = engine.generate(reqs, s);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    tokens = 0, hash = 1469598103934665603ULL;
    for (const auto& c : outs) {
      tokens += static_cast<int64_t>(c.tokens.size());
      for (auto t : c.tokens) hash = (hash ^ static_cast<uint64_t>(t)) * 1099511628211ULL;
    }
    steps = engine.stats().decode_steps - steps0;
    tok_s.push_back(tokens / dt), secs.push_back(dt);
  }
  const auto& st = engine.stats();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print(
      "{{\"kind\":\"longtail\",\"schedule\":\"{}\",\"tokens\":{},\"tokens_hash\":\"{:016x}\",\"median_s\":{:.3f},"
      "\"median_tok_s\":{:.2f},\"decode_steps\":{},\"kv_peak_mib\":{:.2f},\"kv_pool_mib\":{:.2f},"
      "\"kv_static_mib\":{:.2f},\"peak_rss_mib\":{:.1f},\"prefill_s\":{:.3f},\"decode_s\":{:.3f},"
      "\"prefill_calls\":{}}}\n",
      r1::cfg::name_of(schedule), tokens, hash, median(secs), median(tok_s), steps,
      st.kv_peak_blocks * st.kv_block_bytes / 1048576.0, st.kv_capacity_blocks * st.kv_block_bytes / 1048576.0,
      static_tokens * st.kv_block_bytes / 16 / 1048576.0, static_cast<double>(ru.ru_maxrss) / 1024.0,
      (st.prefill_seconds - warm.prefill_seconds) / repeats, (st.decode_seconds - warm.decode_seconds) / repeats,
      (st.prefill_calls - warm.prefill_calls) / repeats);
  return 0;
}
