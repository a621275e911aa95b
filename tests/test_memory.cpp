// Memory features of training: activation checkpointing (same loss and gradients, fewer bytes kept
// for backward), packed completions (same log-probs and gradients as each sequence alone, and
// little padding on long-tailed lengths), and the memory plan against the measured peak RSS of
// real runs (the demo, a 25M model and a Qwen2.5-0.5B-shaped one).
#include <doctest/doctest.h>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/csrc/autograd/autograd.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "common/config.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "rl/memory_plan.hpp"
#include "rl/pretrain.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace fs = std::filesystem;
using namespace r1;

namespace {

fs::path model_dir(const std::string& name) { return test::fixtures() / "models" / name; }
CausalLM load_f32(const fs::path& dir) { return load_pretrained(dir, at::TensorOptions().dtype(at::kFloat)); }

// Bytes of CPU tensors allocated on this thread while it is installed, and their peak.
struct AllocationMeter : c10::MemoryReportingInfoBase {
  int64_t now = 0, peak = 0;
  void reportMemoryUsage(void*, int64_t bytes, size_t, size_t, c10::Device) override {
    now += bytes;
    peak = std::max(peak, now);
  }
  bool memoryProfilingEnabled() const override { return true; }
};

struct Rows {
  std::vector<std::vector<TokenId>> seqs;
  std::vector<CompletionRef> refs;
};

// Completions of `lens` tokens, `prompts` distinct prompts of 3..6 tokens in turn.
Rows random_rows(const std::vector<int64_t>& lens, int64_t prompts, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto tok = [&] { return static_cast<TokenId>(1 + rng() % static_cast<uint64_t>(vocab - 1)); };
  std::vector<std::vector<TokenId>> prompt(static_cast<size_t>(prompts));
  for (auto& p : prompt)
    for (uint64_t n = 3 + rng() % 4; n > 0; --n) p.push_back(tok());
  Rows r;
  for (size_t i = 0; i < lens.size(); ++i) {
    std::vector<TokenId> s = prompt[i % prompt.size()];
    for (int64_t t = 0; t < lens[i]; ++t) s.push_back(tok());
    r.seqs.push_back(std::move(s));
  }
  for (size_t i = 0; i < lens.size(); ++i)
    r.refs.push_back({r.seqs[i].data(), static_cast<int64_t>(prompt[i % prompt.size()].size()), lens[i],
                      static_cast<int64_t>(i % prompt.size())});
  return r;
}

struct Backward {
  double loss = 0;
  std::vector<at::Tensor> grads;
  int64_t kept_bytes = 0;  // allocated by the forward and still alive when backward starts
};

// (log-probs . probe).sum() through completion_logprobs, with every parameter's gradient.
Backward run_backward(CausalLM& m, const Rows& rows, const at::Tensor& probe) {
  for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
  auto meter = std::make_shared<AllocationMeter>();
  Backward b;
  at::Tensor loss;
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, meter);
    loss = (completion_logprobs(*m, rows.refs, {.entropy = true}).logprobs * probe).sum();
    b.kept_bytes = meter->now;
  }
  loss.backward();
  b.loss = loss.item<double>();
  for (auto& p : m->parameters()) b.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  return b;
}

// The largest gradient difference relative to the largest gradient entry.
double max_grad_gap(const Backward& a, const Backward& b) {
  double gap = 0, scale = 0;
  for (size_t i = 0; i < a.grads.size(); ++i) {
    REQUIRE(a.grads[i].defined() == b.grads[i].defined());
    if (!a.grads[i].defined()) continue;
    gap = std::max(gap, (a.grads[i] - b.grads[i]).abs().max().item<double>());
    scale = std::max(scale, b.grads[i].abs().max().item<double>());
  }
  return gap / std::max(scale, 1e-30);
}

}  // namespace

TEST_CASE("activation checkpointing: the same loss and gradients, and far fewer bytes kept for backward") {
  for (const std::string name : {"qwen3", "llama"}) {
    CAPTURE(name);
    CausalLM m = load_f32(model_dir(name));
    m->train();
    const Rows rows = random_rows({24, 9, 17, 3, 30, 1}, 2, m->config().vocab_size, 5);
    at::manual_seed(3);
    const at::Tensor probe = at::randn({6, 30});
    const Backward plain = run_backward(m, rows, probe);
    for (int64_t every : {1, 2}) {
      CAPTURE(every);
      m->set_activation_checkpointing(every);
      const Backward ckpt = run_backward(m, rows, probe);
      m->set_activation_checkpointing(0);
      CHECK(std::abs(ckpt.loss - plain.loss) <= 1e-6 * std::max(1.0, std::abs(plain.loss)));
      CHECK(max_grad_gap(ckpt, plain) <= 1e-6);
      MESSAGE(name << " every " << every << ": kept " << ckpt.kept_bytes << " B, without " << plain.kept_bytes);
      // Each layer keeps its inputs instead of every intermediate; every other layer: about half.
      CHECK(ckpt.kept_bytes < plain.kept_bytes * (every == 1 ? 0.35 : 0.75));
    }
    // The plain forward (hidden(), no cache) too.
    at::Tensor ids = at::randint(1, m->config().vocab_size, {2, 20}, at::kLong),
               w = at::randn({2, 20, m->config().hidden_size});
    auto grads_of = [&] {  // backward(), which checkpointing needs (policy/recompute.hpp)
      for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
      (m->hidden({ids}) * w).sum().backward();
      std::vector<at::Tensor> g;
      for (auto& p : m->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
      return g;
    };
    auto g0 = grads_of();
    m->set_activation_checkpointing(1);
    auto g1 = grads_of();
    m->set_activation_checkpointing(0);
    double gap = 0;
    for (size_t i = 0; i < g0.size(); ++i)
      if (g0[i].defined()) gap = std::max(gap, (g0[i] - g1[i]).abs().max().item<double>());
    CHECK(gap <= 1e-6);
  }
}

TEST_CASE("packed completions: each equals its own forward, gradients included, with the padding gone") {
  CausalLM m = load_f32(model_dir("qwen3"));
  // Two prompts; continuations of 11, 4, 3, 2, 1, 0 and 6, 6 tokens (a completion's last token predicts nothing).
  const std::vector<int64_t> lens = {12, 7, 5, 4, 3, 2, 1, 7};
  const Rows rows = random_rows(lens, 2, m->config().vocab_size, 9);
  CompletionLogprobs packed = completion_logprobs(*m, rows.refs);
  // Width 11: rows [11], [6 + 4 + 1], [6 + 3 + 2]: 3 rows of 11 where one per completion needs 7.
  CHECK(packed.slots == 33);
  CHECK(packed.tokens == 11 + 6 + 4 + 3 + 2 + 1 + 0 + 6);
  at::manual_seed(4);
  const at::Tensor probe = at::randn({8, 12});
  std::vector<at::Tensor> params = m->parameters();
  auto g_packed = torch::autograd::grad({(packed.logprobs * probe).sum()}, params, {}, {}, false, true);
  at::Tensor ref_loss = at::zeros({});
  double worst = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    const CompletionRef& r = rows.refs[i];
    at::Tensor ids = at::tensor(std::vector<int64_t>(r.tokens, r.tokens + r.prompt_len + r.completion_len), at::kLong);
    at::Tensor h = m->hidden({ids.unsqueeze(0)})[0].narrow(0, r.prompt_len - 1, r.completion_len);
    at::Tensor own = token_logprobs(h, m->lm_head_weight(), ids.narrow(0, r.prompt_len, r.completion_len)).logprobs;
    worst = std::max(worst, (own - packed.logprobs[i].narrow(0, 0, r.completion_len)).abs().max().item<double>());
    ref_loss = ref_loss + (own * probe[i].narrow(0, 0, r.completion_len)).sum();
  }
  CHECK(worst <= 1e-5);
  auto g_ref = torch::autograd::grad({ref_loss}, params, {}, {}, false, true);
  double gd = 0, scale = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!g_ref[i].defined()) continue;
    gd = std::max(gd, (g_packed[i] - g_ref[i]).abs().max().item<double>());
    scale = std::max(scale, g_ref[i].abs().max().item<double>());
  }
  CHECK(scale > 0);
  CHECK(gd <= 1e-5 * std::max(1.0, scale));
}

TEST_CASE("packed completions: padding of a long-tailed micro-batch stays under 10%") {
  // The rollout issue's workload: 10% of completions run to the budget (512), the rest stop between
  // 32 and 256. Micro-batches of 8 sequences from groups of 8, as the trainer cuts them.
  CausalLM m = load_f32(model_dir("qwen3"));
  at::NoGradGuard ng;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> stop(32, 256);
  int64_t slots = 0, tokens = 0, unpacked = 0;
  for (int micro = 0; micro < 8; ++micro) {
    std::vector<int64_t> lens;
    for (int i = 0; i < 8; ++i) lens.push_back(rng() % 10 == 0 ? 512 : stop(rng));
    const Rows rows = random_rows(lens, 1, m->config().vocab_size, static_cast<uint64_t>(micro));
    CompletionLogprobs lp = completion_logprobs(*m, rows.refs);
    slots += lp.slots, tokens += lp.tokens;
    unpacked += 8 * (*std::max_element(lens.begin(), lens.end()) - 1);
  }
  const double padding = 1.0 - static_cast<double>(tokens) / static_cast<double>(slots);
  MESSAGE("padding " << padding << " packed, " << 1.0 - static_cast<double>(tokens) / unpacked << " unpacked");
  CHECK(padding <= 0.10);
}

namespace {

// Peak RSS in bytes of the program `argv` run to completion (wait4's ru_maxrss); it must exit 0.
double peak_rss_of(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1), dup2(null, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  REQUIRE(wait4(pid, &status, 0, &ru) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return static_cast<double>(ru.ru_maxrss) * 1024.0;
}

// A random-weight model of `config` (initialised as r1 pretrain does) with `tokenizer_dir`'s tokenizer.
fs::path random_model(const fs::path& dir, const boost::json::object& config, const fs::path& tokenizer_dir) {
  fs::remove_all(dir);
  CausalLM m(ModelConfig::from_json(config, dir.string()), at::TensorOptions().dtype(at::kFloat));
  init_weights(m, 1);
  save_pretrained(m, dir, {.copy_tokenizer_from = tokenizer_dir});
  return dir;
}

struct PlanCase {
  std::string name;
  std::vector<std::string> sets;  // on configs/demo.toml
};

// Runs `r1 train configs/demo.toml --set ...` and compares its peak RSS with the plan's peak.
void check_plan(const PlanCase& c) {
  CAPTURE(c.name);
  const fs::path run = test::binary_dir() / "tests" / "scratch" / ("plan-" + c.name);
  fs::remove_all(run);
  std::vector<std::string> sets = c.sets;
  for (const char* s : {"train.save_every=0", "train.log_samples_every=0"}) sets.push_back(s);
  const RunConfig cfg = cfg::load<RunConfig>("configs/demo.toml", sets);
  const MemoryPlan plan = plan_memory(cfg, plan_inputs(cfg));
  std::vector<std::string> argv = {
      (test::binary_dir() / "r1").string(), "train", "configs/demo.toml", "--quiet", "--run-dir", run.string()};
  for (const auto& s : sets) argv.push_back("--set"), argv.push_back(s);
  const double measured = peak_rss_of(argv);
  MESSAGE(c.name << ": plan " << plan.peak / 1e9 << " GB, measured peak RSS " << measured / 1e9 << " GB\n"
                 << describe(plan));
  CHECK(plan.peak >= 0.8 * measured);
  CHECK(plan.peak <= 1.2 * measured);
  fs::remove_all(run);
}

boost::json::object qwen2_config(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t mlp,
                                 int64_t vocab, int64_t eos) {
  return {{"model_type", "qwen2"},
          {"vocab_size", vocab},
          {"hidden_size", hidden},
          {"intermediate_size", mlp},
          {"num_hidden_layers", layers},
          {"num_attention_heads", heads},
          {"num_key_value_heads", kv_heads},
          {"max_position_embeddings", 32768},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1e6},
          {"tie_word_embeddings", true},
          {"hidden_act", "silu"},
          {"use_sliding_window", false},
          {"eos_token_id", eos},
          {"torch_dtype", "float32"}};
}

}  // namespace

TEST_CASE("memory plan: within 20% of the measured peak RSS of the demo and a 25M model (LoRA, lag 1)") {
  check_plan({"demo", {"train.steps=3"}});
  const fs::path scratch = test::binary_dir() / "tests" / "scratch";
  const fs::path m25 =
      random_model(scratch / "model-h512-l8", qwen2_config(512, 8, 8, 4, 1536, 512, 0), "models/r1zero-tiny");
  const std::vector<std::string> sets = {"model.path=" + m25.string(), "train.steps=2", "eval.path=\"\"",
                                         "rollout.prompts_per_step=4"};
  check_plan({"h512-l8", sets});
  // LoRA, and max_policy_lag = 1 with its one sampler copy (the adapters alone under LoRA).
  std::vector<std::string> lora = sets, lag = sets;
  lora.insert(lora.end(), {"lora.rank=16", "rollout.max_policy_lag=1"});
  lag.push_back("rollout.max_policy_lag=1");
  check_plan({"h512-l8-lora-lag1", lora});
  check_plan({"h512-l8-lag1", lag});
  fs::remove_all(m25);
}

TEST_CASE("memory plan: within 20% of the measured peak RSS of a Qwen2.5-0.5B-shaped model" *
          test::needs_shared("tokenizers/qwen3/tokenizer.json")) {
  const fs::path dir = test::binary_dir() / "tests" / "scratch" / "model-qwen2.5-0.5b-shape";
  const fs::path tok = test::shared_file("tokenizers/qwen3");
  const fs::path m = random_model(dir, qwen2_config(896, 24, 14, 2, 4864, 151669, 151645), tok);
  for (const std::string mode : {"checkpointed", "plain", "lora"}) {
    std::vector<std::string> sets = {"model.path=" + m.string(),
                                     "train.steps=2",  // the moments exist from the first update on
                                     "eval.path=\"\"",
                                     "sampling.stop=[]",
                                     "sampling.max_new_tokens=64",
                                     "rollout.group_size=4",
                                     "rollout.prompts_per_step=2",
                                     "rollout.workers=1",
                                     "rollout.prompts_per_batch=2",
                                     "train.micro_batch=8"};
    if (mode != "plain") sets.push_back("train.activation_checkpointing=\"layers\"");
    if (mode == "lora") sets.push_back("lora.rank=16");
    check_plan({"0.5b-" + mode, sets});
  }
  fs::remove_all(dir);
}

TEST_CASE("memory plan: r1 train --plan prints it, and r1 train refuses a run over [model] memory_limit_gb") {
  const std::string r1 = test::r1_exe();
  test::ProcessResult plan = test::run_shell(r1 + " train --plan");
  CHECK(plan.code == 0);
  for (const char* part :
       {"weights", "gradients", "optimizer", "activations", "KV cache", "logit chunks", "expected peak"})
    CHECK(plan.out.find(part) != std::string::npos);
  const fs::path run = test::binary_dir() / "tests" / "scratch" / "plan-refused";
  fs::remove_all(run);
  test::ProcessResult refused =
      test::run_shell(r1 + " train --quiet --run-dir " + run.string() + " --set model.memory_limit_gb=0.2");
  CHECK(refused.code == 2);
  CHECK(refused.out.find("memory: the run's plan needs") != std::string::npos);
  CHECK(refused.out.find("activations") != std::string::npos);  // a largest part, with its setting
  CHECK(refused.out.find("activation_checkpointing") != std::string::npos);
  CHECK(!fs::exists(run));  // nothing started
  // r1 config check refuses what r1 train refuses.
  test::ProcessResult check = test::run_shell(r1 + " config check configs/demo.toml --set model.memory_limit_gb=0.2");
  CHECK(check.code == 2);
}

// ZeRO in the plan: over W ranks each rank plans 1/W of what its stage shards (rl/zero.hpp).
TEST_CASE("memory plan: ZeRO stages shard masters and moments (1), gradients (2), layers outside generation (3)") {
  RunConfig cfg = cfg::load<RunConfig>(test::source_dir() / "configs" / "demo.toml");
  cfg.train.precision = Precision::bf16_mixed;
  cfg.model.dtype = Dtype::bfloat16;
  PlanInputs in = plan_inputs(cfg);
  in.world_size = 4;
  auto part = [&](int64_t stage, const std::string& name, MemoryPhase phase = MemoryPhase::resident) {
    RunConfig c = cfg;
    c.distributed.zero_stage = stage;
    for (const auto& p : plan_memory(c, in).parts)
      if (p.name == name && p.phase == phase) return p.bytes;
    return 0.0;
  };
  const double N = static_cast<double>(parameter_count(in.model));
  CHECK(part(0, "optimizer") == doctest::Approx(8 * N));
  CHECK(part(1, "optimizer") == doctest::Approx(2 * N));  // 8 B / 4 ranks
  CHECK(part(1, "masters") == doctest::Approx(N));
  CHECK(part(1, "gradients") > part(0, "gradients"));  // whole while accumulating, and two units in flight
  CHECK(part(2, "gradients") < part(0, "gradients"));  // chunks (1 B) and two units in flight
  CHECK(part(2, "weights") == doctest::Approx(2 * N));
  CHECK(part(3, "weights") < 2 * N);  // embeddings and two layers all run...
  CHECK(part(3, "weights") + part(3, "gathered layers", MemoryPhase::rollout) ==
        doctest::Approx(2 * N));  // ...the rest only while generating
  in.world_size = 1;
  CHECK(part(1, "optimizer") == doctest::Approx(8 * N));  // one rank holds every chunk
}
