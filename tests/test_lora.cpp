// LoRA (policy/lora.hpp) against Hugging Face PEFT's committed fixtures
// (scripts/fixtures/make_lora_fixtures.py): PEFT's adapters load with its logits, adapters off give
// the base model, r1's saves are PEFT's layout bit for bit, merging equals the adapted forward, only
// adapters get gradients, and a LoRA training run checkpoints, resumes exactly and exports.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "policy/fused_ops.hpp"
#include "policy/lora.hpp"
#include "policy/safetensors.hpp"
#include "rl/memory_plan.hpp"
#include "rl/trainer.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1;

namespace {

const std::vector<std::string> kBases = {"qwen3", "llama-bias"};

fs::path model_dir(const std::string& name) { return test::fixtures() / "models" / name; }
CausalLM load_f32(const fs::path& dir) { return load_pretrained(dir, at::TensorOptions().dtype(at::kFloat)); }

struct Parity {
  at::Tensor ids, mask, logits, base_logits, merged_logits;
};

Parity parity(const std::string& base) {
  SafetensorsReader r(test::fixtures() / "parity" / (base + "-lora.safetensors"));
  return {r.get("input_ids").clone(), r.get("attention_mask").clone(), r.get("logits").clone(),
          r.get("base_logits").clone(), r.get("merged_logits").clone()};
}

at::Tensor padded_logits(CausalLM& m, const at::Tensor& ids, const at::Tensor& mask) {
  at::NoGradGuard ng;
  at::Tensor pos = (mask.cumsum(-1) - 1).clamp_min(0);
  return m->logits(m->hidden({ids, pos, causal_mask(mask.to(at::kBool), ids.size(1))}));
}

double gap_on_valid(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
  return (a - b).abs().masked_select(mask.to(at::kBool).unsqueeze(-1)).max().item<double>();
}

fs::path saved(const std::string& name) {  // what make_lora_fixtures.py verify loads with PEFT
  fs::path p = test::binary_dir() / "tests" / "saved" / name;
  fs::remove_all(p);
  return p;
}

using test::error_of;
using test::scratch;

// Sequences of random tokens for completion_logprobs: two prompts, completions of `lens` tokens.
struct Rows {
  std::vector<std::vector<TokenId>> seqs;
  std::vector<CompletionRef> refs;
};

Rows rows_for(int64_t vocab, const std::vector<int64_t>& lens) {
  Rows r;
  for (size_t i = 0; i < lens.size(); ++i) {
    std::vector<TokenId> s;
    for (int64_t t = 0; t < 4 + lens[i]; ++t) s.push_back(static_cast<TokenId>(1 + (i % 2 * 7 + t * 13) % (vocab - 1)));
    if (i % 2 == 0)
      for (int64_t t = 0; t < 4; ++t) s[static_cast<size_t>(t)] = static_cast<TokenId>(3 + t);  // shared prompt
    r.seqs.push_back(std::move(s));
  }
  for (size_t i = 0; i < lens.size(); ++i)
    r.refs.push_back({r.seqs[i].data(), 4, lens[i], i % 2 == 0 ? 0 : static_cast<int64_t>(i)});
  return r;
}

}  // namespace

TEST_CASE("LoRA: PEFT's adapters load every tensor, with PEFT's logits (1e-4); adapters off give the base") {
  for (const auto& base : kBases) {
    CAPTURE(base);
    CausalLM m = load_f32(model_dir(base + "-lora"));  // an adapter folder: its base, adapters attached
    REQUIRE(has_lora(m));
    SafetensorsReader file(model_dir(base + "-lora") / "adapter_model.safetensors");
    const NamedTensors adapters = lora_parameters(m);
    CHECK(adapters.size() == file.entries().size());
    for (const auto& [name, t] : adapters) {
      CAPTURE(name);
      CHECK(t.equal(file.get(peft_key(name))));
      CHECK(t.requires_grad());
    }
    for (auto& p : m->named_parameters())
      if (!is_lora_parameter(p.key())) CHECK_FALSE(p.value().requires_grad());  // the base is frozen
    const Parity p = parity(base);
    const double err = gap_on_valid(padded_logits(m, p.ids, p.mask), p.logits, p.mask);
    MESSAGE(base << "-lora: max |logit - PEFT| = " << err);
    CHECK(err <= 1e-4);
    CHECK(gap_on_valid(p.logits, p.base_logits, p.mask) > 0.1);  // the adapters matter
    {
      LoraDisabled off(m);
      CausalLM plain = load_f32(model_dir(base));
      const at::Tensor without = padded_logits(m, p.ids, p.mask);
      CHECK(without.equal(padded_logits(plain, p.ids, p.mask)));  // bit for bit the base model
      CHECK(gap_on_valid(without, p.base_logits, p.mask) <= 1e-4);
    }
    // A small change of one adapter shows: the comparison is not vacuous.
    at::NoGradGuard ng;
    lora_parameters(m).back().second.mul_(1.05);
    CHECK(gap_on_valid(padded_logits(m, p.ids, p.mask), p.logits, p.mask) > 1e-4);
  }
}

TEST_CASE("LoRA: saves are PEFT's layout and reload bit for bit") {
  for (const auto& base : kBases) {
    CAPTURE(base);
    CausalLM m = load_f32(model_dir(base + "-lora"));
    const fs::path out = saved(base + "-lora");
    save_pretrained(m, out, {.copy_tokenizer_from = model_dir(base)});
    CHECK_FALSE(fs::exists(out / "config.json"));
    CHECK_FALSE(fs::exists(out / "model.safetensors"));
    SafetensorsReader mine(out / "adapter_model.safetensors"),
        peft(model_dir(base + "-lora") / "adapter_model.safetensors");
    std::set<std::string> a, b;
    for (const auto& [k, e] : mine.entries()) a.insert(k);
    for (const auto& [k, e] : peft.entries()) b.insert(k);
    CHECK(a == b);  // PEFT's keys: base_model.model.<parameter>
    for (const auto& k : a) CHECK(mine.get(k).equal(peft.get(k)));
    const boost::json::value v = json::parse_file(out / "adapter_config.json");
    json::Object c(v, "adapter_config.json");
    CHECK(c.string("peft_type") == "LORA");
    CHECK(c.string("task_type") == "CAUSAL_LM");
    CHECK(fs::equivalent(c.string("base_model_name_or_path"), model_dir(base)));
    const AdapterConfig theirs = read_adapter_config(model_dir(base + "-lora")), ours = read_adapter_config(out);
    CHECK(ours.lora.rank == theirs.lora.rank);
    CHECK(ours.lora.alpha == theirs.lora.alpha);
    CausalLM back = load_f32(out);
    const NamedTensors x = lora_parameters(m), y = lora_parameters(back);
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) CHECK(x[i].second.equal(y[i].second));
  }
}

TEST_CASE("LoRA: merging equals the adapted forward (1e-5), and the export is a plain checkpoint") {
  for (const auto& base : kBases) {
    CAPTURE(base);
    const Parity p = parity(base);
    CausalLM adapted = load_f32(model_dir(base + "-lora"));
    const at::Tensor want = padded_logits(adapted, p.ids, p.mask);
    const fs::path out = saved(base + "-lora-merged");
    export_merged(model_dir(base + "-lora"), out, Dtype::float32);
    CHECK(fs::exists(out / "config.json"));
    CHECK(fs::exists(out / "tokenizer.json") == fs::exists(model_dir(base) / "tokenizer.json"));
    CausalLM merged = load_f32(out);
    CHECK_FALSE(has_lora(merged));
    const double err = gap_on_valid(padded_logits(merged, p.ids, p.mask), want, p.mask);
    MESSAGE(base << ": max |merged - adapted| = " << err);
    CHECK(err <= 1e-5);
    CHECK(gap_on_valid(padded_logits(merged, p.ids, p.mask), p.merged_logits, p.mask) <= 1e-4);  // PEFT's merge
    CHECK(gap_on_valid(padded_logits(merged, p.ids, p.mask), p.base_logits, p.mask) > 0.1);
  }
}

TEST_CASE("LoRA: gradients reach only the adapters; dropout and checkpointing keep them exact") {
  CausalLM m = load_f32(model_dir("qwen3-lora"));
  m->train();
  const Rows rows = rows_for(m->config().vocab_size, {9, 5, 12, 3});
  auto grads = [&](int64_t every) {
    for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
    m->set_activation_checkpointing(every);
    at::manual_seed(11);  // the dropout masks
    completion_logprobs(*m, rows.refs, {}).logprobs.sum().backward();
    m->set_activation_checkpointing(0);
    std::map<std::string, at::Tensor> g;
    for (auto& p : m->named_parameters())
      if (p.value().grad().defined()) g[p.key()] = p.value().grad().clone();
    return g;
  };
  auto g = grads(0);
  CHECK(g.size() == lora_parameters(m).size());  // nothing else has a gradient
  for (const auto& [name, t] : g) {
    CAPTURE(name);
    CHECK(is_lora_parameter(name));
    CHECK(t.abs().max().item<double>() > 0);
  }
  // With dropout on the adapters' inputs, checkpointed layers replay the same masks.
  for (auto& [prefix, lin] : lora_targets(m, m->lora)) lin->lora_dropout = 0.3;
  auto d0 = grads(0), d1 = grads(1);
  double gap = 0, scale = 0, moved = 0;
  for (const auto& [name, t] : d0) {
    gap = std::max(gap, (t - d1.at(name)).abs().max().item<double>());
    scale = std::max(scale, t.abs().max().item<double>());
    moved = std::max(moved, (t - g.at(name)).abs().max().item<double>());
  }
  // Checkpointed backward sums the same products in another order: on oneDNN's AVX-512 kernels the
  // gradients differ by up to ~1.3e-6 of their scale (6e-7 without dropout); a replay that drew other
  // masks would move them like dropout itself does (> 1e-3).
  CHECK(gap <= 1e-5 * scale);
  CHECK(moved > 1e-3 * scale);  // dropout was on
}

TEST_CASE("LoRA: the fused projection's values and gradients are autograd's of the composite") {
  // Shapes of a Qwen-like projection with 80 rows: oneDNN runs its GEMMs in float32 on AVX-512.
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const bool with_bias : {false, true}) {
      for (const bool train_w : {false, true}) {
        CAPTURE(dtype);
        CAPTURE(with_bias);
        CAPTURE(train_w);
        at::manual_seed(5);
        const auto o = at::TensorOptions().dtype(dtype);
        auto leaf = [&](std::vector<int64_t> shape, bool grad, double s) {
          return (at::randn(shape, at::kFloat) * s).to(dtype).requires_grad_(grad);
        };
        const at::Tensor x = leaf({2, 40, 96}, true, 1.0), w = leaf({80, 96}, train_w, 0.1),
                         A = leaf({8, 96}, true, 0.1), B = leaf({80, 8}, true, 0.1);
        const at::Tensor bias = with_bias ? leaf({80}, train_w, 0.1) : at::Tensor();
        const at::Tensor gy = at::randn({2, 40, 80}, o);
        const double scale = 2.0;
        auto grads = [&](const at::Tensor& y) {
          for (const at::Tensor* t : {&x, &w, &A, &B, &bias})
            if (t->defined()) t->mutable_grad() = at::Tensor();
          (y.to(at::kFloat) * gy.to(at::kFloat)).sum().backward();
          std::vector<at::Tensor> g = {y.detach().to(at::kFloat)};
          for (const at::Tensor* t : {&x, &w, &A, &B, &bias})
            g.push_back(t->defined() && t->grad().defined() ? t->grad().to(at::kFloat) : at::Tensor());
          return g;
        };
        const auto fused = grads(lora_linear(x, w, bias, A, B, scale));
        const auto ref = grads(at::linear(x, w, bias) + at::linear(at::linear(x, A), B) * scale);
        const std::vector<std::string> names = {"y", "x", "w", "A", "B", "bias"};
        for (size_t i = 0; i < ref.size(); ++i) {
          CAPTURE(names[i]);
          REQUIRE(fused[i].defined() == ref[i].defined());
          if (!ref[i].defined()) continue;
          const double tol = (dtype == at::kFloat ? 1e-5 : 2e-2) * std::max(1.0, ref[i].abs().max().item<double>());
          CHECK((fused[i] - ref[i]).abs().max().item<double>() <= tol);
        }
      }
    }
  }
}

TEST_CASE("LoRA: the KL reference with adapters off equals the base model's log-probs") {
  CausalLM m = load_f32(model_dir("qwen3-lora"));
  CausalLM base = load_f32(model_dir("qwen3"));
  const Rows rows = rows_for(m->config().vocab_size, {6, 2, 9});
  at::NoGradGuard ng;
  at::Tensor ref;
  {
    LoraDisabled off(m);
    ref = completion_logprobs(*m, rows.refs, {}).logprobs;
  }
  CHECK(ref.equal(completion_logprobs(*base, rows.refs, {}).logprobs));
  CHECK((completion_logprobs(*m, rows.refs, {}).logprobs - ref).abs().max().item<double>() > 1e-2);
}

TEST_CASE("LoRA: a replica shares the frozen base storage and copies only the adapters") {
  CausalLM m = load_f32(model_dir("qwen3-lora"));
  CausalLM r = adapter_replica(m);
  auto mp = m->named_parameters(), rp = r->named_parameters();
  REQUIRE(mp.size() == rp.size());
  int64_t shared = 0, own = 0;
  for (auto& p : mp) {
    const at::Tensor& q = rp[p.key()];
    if (is_lora_parameter(p.key())) {
      CHECK(q.data_ptr() != p.value().data_ptr());
      CHECK(q.equal(p.value()));
      own += q.numel();
    } else {
      CHECK(q.data_ptr() == p.value().data_ptr());
      shared += q.numel();
    }
  }
  CHECK(own == adapter_parameter_count(m->config(), m->lora));
  CHECK(shared == parameter_count(m->config()));
  const Parity p = parity("qwen3");
  CHECK(padded_logits(r, p.ids, p.mask).equal(padded_logits(m, p.ids, p.mask)));
}

TEST_CASE("LoRA: adapter configs r1 cannot represent are refused, naming the reason") {
  auto with = [&](const std::function<void(boost::json::object&)>& edit) {
    const fs::path dir = scratch("lora-bad");
    fs::copy(model_dir("qwen3-lora"), dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    boost::json::value v = json::parse_file(dir / "adapter_config.json");
    edit(v.as_object());
    v.as_object()["base_model_name_or_path"] = fs::absolute(model_dir("qwen3")).string();
    std::ofstream(dir / "adapter_config.json") << boost::json::serialize(v);
    return error_of([&] { load_f32(dir); });
  };
  CHECK(with([](auto&) {}).empty());
  CHECK(with([](auto& o) { o["use_dora"] = true; }).find("use_dora") != std::string::npos);
  CHECK(with([](auto& o) {
          o["rank_pattern"] = boost::json::object{{"q_proj", 8}};
        }).find("rank_pattern") != std::string::npos);
  CHECK(with([](auto& o) { o["bias"] = "all"; }).find("bias") != std::string::npos);
  CHECK(with([](auto& o) {
          o["target_modules"] = boost::json::array{"q_proj", "lm_head"};
        }).find("lm_head") != std::string::npos);
  // The file's tensors must be exactly the adapters the config implies.
  CHECK(with([](auto& o) { o["target_modules"] = boost::json::array{"q_proj"}; }).find("unexpected") !=
        std::string::npos);
  CHECK(with([](auto& o) { o["r"] = 8; }).find("shape") != std::string::npos);
}

namespace {

std::string file_bytes(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<boost::json::object> read_jsonl(const fs::path& f) {
  std::vector<boost::json::object> out;
  std::ifstream in(f);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line, f.string()).as_object());
  return out;
}

// The tiny model, rewarded by completion length (rewards differ within groups, so every step
// moves the adapters), LoRA r 4 on every projection, with a KL penalty.
RunConfig lora_run(const fs::path& dir) {
  RunConfig c;
  c.model.path = (test::source_dir() / "models" / "tiny").string();
  c.model.threads = 2;
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "data.jsonl");
    for (int i = 0; i < 24; ++i) f << "{\"question\": \"What is " << i << " + 1?\", \"answer\": \"" << i + 1 << "\"}\n";
  }
  c.data.path = (dir / "data.jsonl").string();
  c.data.prompt_template = "User: {question} Assistant: <think>";
  c.sampling.max_new_tokens = 8;
  c.rollout.group_size = 4;
  c.rollout.prompts_per_step = 2;
  c.rollout.prompts_per_batch = 2;
  c.rollout.max_batch = 8;
  rewards::RewardEntry len;
  len.checker = "length";
  len.length.emplace();
  len.length->unit = rewards::LengthUnit::chars;
  len.length->max_length = 12;
  len.length->cache_length = 10;
  c.rewards.checkers = {len};
  c.lora.rank = 4;
  c.lora.alpha = 8;
  c.grpo.kl_coef = 0.05;
  c.train.steps = 3;
  c.train.lr = 1e-2;
  c.train.micro_batch = 3;
  c.train.save_every = 1;
  c.train.keep_checkpoints = 5;
  return c;
}

}  // namespace

TEST_CASE("LoRA training: only adapters move; checkpoints are PEFT folders with no reference copy") {
  const fs::path dir = scratch("lora-train");
  RunConfig c = lora_run(dir);
  c.rollout.max_policy_lag = 1;  // workers sample from adapter replicas over the shared base
  c.train.old_logprobs = OldLogprobs::recompute;
  TrainSummary s = train(c, {.run_dir = dir / "run", .progress = false});
  const auto metrics = read_jsonl(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 3);
  CHECK(metrics[2].at("kl").to_number<double>() > 0);  // the policy left the base: adapters-off reference
  CHECK(metrics[2].at("policy_lag").to_number<double>() == doctest::Approx(1.0));
  for (const auto& m : metrics) CHECK(m.at("mismatch/logprob_abs_max").to_number<double>() < 1e-4);

  REQUIRE(is_adapter_dir(s.model_dir));
  CausalLM trained = load_f32(s.model_dir);
  CausalLM base = load_f32(c.model.path);
  auto bp = base->named_parameters();
  for (auto& p : trained->named_parameters())
    if (!is_lora_parameter(p.key())) CHECK(p.value().equal(bp[p.key()]));  // frozen
  double b_max = 0;
  for (const auto& [name, t] : lora_parameters(trained))
    if (name.find("lora_B") != std::string::npos) b_max = std::max(b_max, t.abs().max().item<double>());
  CHECK(b_max > 1e-3);  // B starts at 0: training moved it

  const fs::path ck = dir / "run" / "checkpoints" / "step-000003";
  CHECK(fs::exists(ck / "adapter_model.safetensors"));
  CHECK_FALSE(fs::exists(ck / "model.safetensors"));
  CHECK_FALSE(fs::exists(ck / "reference"));
  SafetensorsReader opt(ck / "optimizer" / "rank-00000-of-00001.safetensors");
  CHECK(opt.entries().size() == 2 * lora_parameters(trained).size() + 1);  // moments of the adapters alone, the step

  // The plan counts exactly the adapters this run trained.
  const MemoryPlan plan = plan_memory(c, plan_inputs(c));
  int64_t n = 0;
  for (const auto& [name, t] : lora_parameters(trained)) n += t.numel();
  CHECK(plan.adapter_params == n);
  for (const auto& part : plan.parts) CHECK(part.name != "reference");

  // An adapter folder is not a base model to train on: refused with the ways to go on.
  RunConfig again = c;
  again.model.path = s.model_dir.string();
  const std::string e = error_of([&] { train(again, {.run_dir = dir / "again", .progress = false}); });
  CHECK(e.find("PEFT adapter folder") != std::string::npos);
  CHECK(e.find("--resume") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "again"));
}

TEST_CASE("LoRA training in bf16-mixed resumes bit for bit (adapters, float32 masters, optimizer)") {
  const fs::path dir = scratch("lora-resume");
  RunConfig c = lora_run(dir);
  c.model.dtype = Dtype::bfloat16;
  c.train.precision = Precision::bf16_mixed;
  c.train.save_dtype = SaveDtype::bfloat16;  // so the checkpoints keep float32 masters beside them
  train(c, {.run_dir = dir / "a", .progress = false});
  fs::copy(dir / "a", dir / "b", fs::copy_options::recursive);
  fs::remove_all(dir / "b" / "checkpoints" / "step-000003");
  fs::remove_all(dir / "b" / "model");
  train(c, {.run_dir = dir / "b", .progress = false, .resume = true});
  const fs::path a = dir / "a" / "checkpoints" / "step-000003", b = dir / "b" / "checkpoints" / "step-000003";
  REQUIRE(fs::exists(a / "masters" / "adapter_model.safetensors"));
  for (const char* f : {"adapter_model.safetensors", "masters/adapter_model.safetensors",
                        "optimizer/rank-00000-of-00001.safetensors"}) {
    CAPTURE(f);
    CHECK(file_bytes(a / f) == file_bytes(b / f));
  }
  CHECK(file_bytes(dir / "a" / "metrics.jsonl").size() > 0);
  // The masters are float32 and differ from their bf16 rounding: they are what resumes.
  SafetensorsReader m(a / "masters" / "adapter_model.safetensors"), h(a / "adapter_model.safetensors");
  double rounding = 0;
  for (const auto& [key, e] : m.entries()) {
    CHECK(e.dtype == "F32");
    CHECK(h.entries().at(key).dtype == "BF16");
    rounding = std::max(rounding, (m.get(key) - h.get(key).to(at::kFloat)).abs().max().item<double>());
  }
  CHECK(rounding > 0);
}
