// The rollout engine: greedy equals transformers generate, sampling frequencies match the
// filtered distribution, stop strings across token boundaries, rollout log-probs equal the
// trainer-side forward, determinism, weight sync with versions and checksums, datasets, workers.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "common/error.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "policy/cpu_kernels.hpp"
#include "policy/logprobs.hpp"
#include "policy/safetensors.hpp"
#include "rollout/rollout.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1;

namespace {

CausalLM load_f32(const fs::path& dir) { return load_pretrained(dir, at::TensorOptions().dtype(at::kFloat)); }
fs::path tiny() { return test::source_dir() / "models" / "tiny"; }

SamplingOptions greedy(int64_t n) {
  SamplingOptions s;
  s.temperature = 0;
  s.ignore_eos = true;
  s.max_new_tokens = n;
  return s;
}

std::vector<std::vector<TokenId>> parity_prompts(const std::string& name, std::vector<std::vector<TokenId>>* want) {
  SafetensorsReader r(test::fixtures() / "parity" / (name + ".safetensors"));
  at::Tensor ids = r.get("input_ids"), mask = r.get("attention_mask"), g = r.get("greedy");
  std::vector<std::vector<TokenId>> prompts;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    std::vector<TokenId> p, w;
    for (int64_t t = 0; t < ids.size(1); ++t)
      if (mask[b][t].item<int64_t>()) p.push_back(static_cast<TokenId>(ids[b][t].item<int64_t>()));
    for (int64_t t = 0; t < g.size(1); ++t) w.push_back(static_cast<TokenId>(g[b][t].item<int64_t>()));
    prompts.push_back(p);
    want->push_back(w);
  }
  return prompts;
}

}  // namespace

TEST_CASE(
    "greedy rollouts equal transformers generate: mixed prompt lengths, shared prompt blocks, block sizes, "
    "chunked prefill, small batches") {
  for (std::string name : {"qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"}) {
    CAPTURE(name);
    std::vector<std::vector<TokenId>> want;
    auto prompts = parity_prompts(name, &want);
    // Whole batches, two rows at a time, one-token blocks with prompts prefilled 3 tokens per step.
    // And the CUDA graphs' fixed shapes (batch padded to a bucket, tables to the run's widest), eagerly.
    for (EngineOptions eo : {EngineOptions{.max_batch = 64}, EngineOptions{.max_batch = 2, .block_size = 4},
                             EngineOptions{.max_batch = 4, .block_size = 1, .prefill_tokens = 3},
                             EngineOptions{.max_batch = 64, .block_size = 4, .graphs = DecodeGraphMode::shapes_only}}) {
      CAPTURE(eo.max_batch);
      CAPTURE(eo.block_size);
      Engine engine(load_f32(test::fixtures() / "models" / name), nullptr, eo);
      std::vector<GenerationRequest> reqs;
      for (auto& p : prompts) reqs.push_back({p, 2, 0});
      auto out = engine.generate(reqs, greedy(20));
      REQUIRE(out.size() == 2 * prompts.size());
      for (const auto& c : out) {
        CHECK(c.tokens == want[c.request]);
        CHECK(c.finish_reason == FinishReason::length);
        CHECK(c.logprobs.size() == c.tokens.size());
      }
    }
  }
}

TEST_CASE("sampling frequencies match the temperature / top-k / top-p / min-p distribution") {
  at::Tensor logits = at::tensor({2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -3.0f}).unsqueeze(0);  // [1, 8]
  const int64_t rows = 4000, rounds = 5;
  struct Case {
    SamplingOptions o;
    const char* what;
  };
  std::vector<Case> cases;
  {
    SamplingOptions o;
    o.temperature = 0.7;
    cases.push_back({o, "temperature"});
    o.top_k = 3;
    cases.push_back({o, "top_k"});
    o = {};
    o.top_p = 0.8;
    cases.push_back({o, "top_p"});
    o = {};
    o.min_p = 0.2;
    o.temperature = 1.3;
    cases.push_back({o, "min_p"});
  }
  for (auto& c : cases) {
    CAPTURE(c.what);
    // Expected: softmax of the filtered, temperature-scaled logits.
    at::Tensor expect = filter_logits(logits / c.o.temperature, c.o).softmax(-1).squeeze(0);
    std::vector<double> counts(8, 0.0);
    for (int64_t k = 0; k < rounds; ++k) {
      std::vector<DrawKey> keys;
      for (int64_t r = 0; r < rows; ++r) keys.push_back({0, static_cast<uint64_t>(r), static_cast<uint64_t>(k)});
      auto st = sample_tokens(logits.expand({rows, 8}).contiguous(), c.o, philox_uniforms(42, keys));
      for (int64_t r = 0; r < rows; ++r) counts[st.tokens[r].item<int64_t>()] += 1;
      // The recorded log-prob is under the full tempered softmax, not the filtered one.
      at::Tensor full = (logits / c.o.temperature).log_softmax(-1).squeeze(0);
      CHECK(st.logprobs[0].item<float>() == doctest::Approx(full[st.tokens[0].item<int64_t>()].item<float>()));
    }
    const double n = static_cast<double>(rows * rounds);
    for (int64_t v = 0; v < 8; ++v) {
      double p = expect[v].item<double>(), f = counts[v] / n;
      CAPTURE(v);
      if (p == 0)
        CHECK(counts[v] == 0);
      else
        CHECK(std::abs(f - p) <= 4 * std::sqrt(p * (1 - p) / n) + 1e-3);  // ~4 sigma
    }
  }
  // top_k keeps exactly 3 tokens, top_p = 0.8 keeps the smallest prefix reaching 0.8.
  SamplingOptions k3;
  k3.top_k = 3;
  CHECK(filter_logits(logits, k3).isfinite().sum().item<int64_t>() == 3);
  SamplingOptions p8;
  p8.top_p = 0.8;
  at::Tensor kept = filter_logits(logits, p8).isfinite().squeeze(0);
  at::Tensor probs = logits.softmax(-1).squeeze(0);
  double mass = (probs * kept).sum().item<double>();
  double mass_without_last = mass - probs[kept.sum().item<int64_t>() - 1].item<double>();
  CHECK(mass >= 0.8);
  CHECK(mass_without_last < 0.8);
}

TEST_CASE("the fused sampler draws what the ATen sampler draws: first maximum, inverse cdf, exact log-probs (2e-6)") {
  SamplingOptions o;
  if (cpu::isa() == cpu::Isa::none) {  // R1_CPU_ISA=none: only ATen samples
    CHECK_FALSE(fused_sampler_applies(at::zeros({2, 8}), o));
    CHECK_THROWS_WITH(sample_tokens_fused(at::zeros({2, 8}), o, at::zeros({2})), doctest::Contains("needs float32"));
    return;
  }
  o.top_p = 0.9;  // a filter: ATen's path, except when greedy
  CHECK_FALSE(fused_sampler_applies(at::zeros({2, 8}), o));
  o = {};
  CHECK_FALSE(fused_sampler_applies(at::zeros({2, 8}, at::kDouble), o));
  at::manual_seed(5);
  int64_t rows = 0, same = 0;
  // Vocabularies around the 8-lane and 64-logit block edges, and a Qwen-sized one.
  for (int64_t V : {1, 7, 8, 63, 64, 65, 1000, 151936}) {
    for (double T : {0.0, 0.7, 1.0, 1.6}) {
      CAPTURE(V);
      CAPTURE(T);
      const int64_t B = V > 1000 ? 4 : 64;
      at::Tensor logits = at::randn({B, V}) * 3;
      if (V > 8) {
        logits.index_put_({at::indexing::Slice(), at::indexing::Slice(0, V, 3)}, -INFINITY);  // banned ids
        logits[1][V - 1] = logits[1][11] = logits[1][10] = 40.0f;  // a tied maximum, twice in one vector
      }
      std::vector<DrawKey> keys;
      for (int64_t b = 0; b < B; ++b) keys.push_back({static_cast<uint64_t>(V), static_cast<uint64_t>(b), 0});
      const at::Tensor u = philox_uniforms(7, keys);
      o.temperature = T;
      REQUIRE(fused_sampler_applies(logits, o));
      const SampledTokens got = sample_tokens_fused(logits, o, u), want = sample_tokens_aten(logits, o, u);
      // Log-probs against the exact ones (double). The fused sampler sums in double: within 8e-7 here,
      // where ATen's float sums stray by up to 1.1e-5 at V = 151936.
      const at::Tensor z = logits.to(at::kDouble) / (T == 0 ? 1.0 : T);
      const at::Tensor exact = z.log_softmax(-1).gather(1, got.tokens.unsqueeze(1)).squeeze(1);
      CHECK(at::allclose(got.logprobs.to(at::kDouble), exact, 0, 2e-6));
      if (T == 0) {
        CHECK(at::equal(got.tokens, want.tokens));
        continue;
      }
      // The token's cdf interval (double, from the exact tempered softmax) holds u, up to rounding.
      const at::Tensor p = z.softmax(-1), cdf = p.cumsum(-1);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t t = got.tokens[b].item<int64_t>();
        REQUIRE((t >= 0 && t < V));
        CHECK(p[b][t].item<double>() > 0);
        const double hi = cdf[b][t].item<double>(), lo = hi - p[b][t].item<double>(), ub = u[b].item<double>();
        CHECK(ub >= lo - 1e-6);
        CHECK(ub <= hi + 1e-6);
        ++rows, same += t == want.tokens[b].item<int64_t>();
      }
    }
  }
  CHECK(same >= rows - 2);  // only a u within rounding of an interval's edge may differ
}

TEST_CASE("stop strings that span token boundaries end the completion there") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  Engine engine(load_f32(tiny()), &tok);
  std::vector<TokenId> prompt = tok.encode("Natalia sold 48 clips in April");
  auto free_run = engine.generate({{prompt, 1, 0}}, greedy(24))[0];
  REQUIRE(free_run.tokens.size() >= 8);
  // A stop string made of the last char of token 4 and the first char of token 5.
  std::string t4 = tok.decode(std::span<const TokenId>(free_run.tokens.data() + 4, 1));
  std::string t5 = tok.decode(std::span<const TokenId>(free_run.tokens.data() + 5, 1));
  REQUIRE(!t4.empty());
  REQUIRE(!t5.empty());
  std::string stop = t4.substr(t4.size() - 1) + t5.substr(0, 1);
  std::string prefix = tok.decode(std::span<const TokenId>(free_run.tokens.data(), 6));
  size_t first = prefix.find(stop);
  REQUIRE(first != std::string::npos);
  SamplingOptions s = greedy(24);
  s.stop = {stop};
  auto c = engine.generate({{prompt, 1, 0}}, s)[0];
  CHECK(c.finish_reason == FinishReason::stop);
  CHECK(c.text == prefix.substr(0, first + stop.size()));
  CHECK(c.tokens.size() <= 6);
  s.include_stop_str = false;
  CHECK(engine.generate({{prompt, 1, 0}}, s)[0].text == prefix.substr(0, first));
}

TEST_CASE("stop_token_ids end a completion at the first such token, which stays in tokens but not in text") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  Engine engine(load_f32(tiny()), &tok);
  std::vector<TokenId> prompt = tok.encode("Natalia sold 48 clips in April");
  SamplingOptions s = greedy(16);
  s.ignore_eos = true;
  auto free_run = engine.generate({{prompt, 2, 0}}, s)[0];
  REQUIRE(free_run.tokens.size() == 16);
  const TokenId stop_id = free_run.tokens[5];
  const size_t first = static_cast<size_t>(std::find(free_run.tokens.begin(), free_run.tokens.end(), stop_id) -
                                           free_run.tokens.begin());  // <= 5
  s.stop_token_ids = {stop_id};
  for (const auto& c : engine.generate({{prompt, 2, 0}}, s)) {  // both samples of the request (greedy: equal)
    CHECK(c.finish_reason == FinishReason::stop);
    REQUIRE(c.tokens.size() == first + 1);
    CHECK(std::equal(c.tokens.begin(), c.tokens.end(), free_run.tokens.begin()));
    CHECK(c.logprobs.size() == c.tokens.size());
    CHECK(c.text == tok.decode(std::span<const TokenId>(free_run.tokens.data(), first)));
  }
  s.stop_token_ids = {99999};  // an id that never comes: the budget ends it
  CHECK(engine.generate({{prompt, 1, 0}}, s)[0].finish_reason == FinishReason::length);
}

TEST_CASE("rollout log-probs equal the trainer-side forward log-probs, prompts shared or not (float32, <= 1e-5)") {
  for (std::string name : {"qwen3", "llama"}) {
    CAPTURE(name);
    CausalLM model = load_f32(test::fixtures() / "models" / name);
    Engine engine(model, nullptr, {.max_batch = 16});
    std::vector<std::vector<TokenId>> want;
    auto prompts = parity_prompts(name, &want);
    SamplingOptions s;
    s.temperature = 0.8;
    s.top_p = 0.9;
    s.max_new_tokens = 24;
    s.seed = 11;
    std::vector<GenerationRequest> reqs;
    for (size_t i = 0; i < prompts.size(); ++i) reqs.push_back({prompts[i], 3, i});
    auto out = engine.generate(reqs, s);
    at::NoGradGuard ng;
    double worst = 0, worst_shared = 0;
    // The trainer's path: every prompt runs once for its 3 samples (completion_logprobs).
    std::vector<std::vector<TokenId>> full;
    std::vector<CompletionRef> rows;
    for (const auto& c : out) {
      full.push_back(prompts[c.request]);
      full.back().insert(full.back().end(), c.tokens.begin(), c.tokens.end());
    }
    for (size_t i = 0; i < out.size(); ++i)
      rows.push_back({full[i].data(), static_cast<int64_t>(prompts[out[i].request].size()),
                      static_cast<int64_t>(out[i].tokens.size()), static_cast<int64_t>(out[i].request)});
    at::Tensor shared = completion_logprobs(*model, rows, {.temperature = s.temperature}).logprobs;  // [B, T]
    for (size_t i = 0; i < out.size(); ++i) {
      const int64_t n = static_cast<int64_t>(out[i].tokens.size());
      at::Tensor rollout = at::tensor(out[i].logprobs, at::kFloat);
      worst_shared = std::max(worst_shared,
                              (shared[static_cast<int64_t>(i)].narrow(0, 0, n) - rollout).abs().max().item<double>());
    }
    for (const auto& c : out) {
      std::vector<int64_t> seq(prompts[c.request].begin(), prompts[c.request].end());
      seq.insert(seq.end(), c.tokens.begin(), c.tokens.end());
      at::Tensor ids = at::tensor(seq, at::kLong).unsqueeze(0);
      at::Tensor h = model->hidden({ids}).squeeze(0);  // [T, H]
      const int64_t P = static_cast<int64_t>(prompts[c.request].size()), N = static_cast<int64_t>(c.tokens.size());
      auto lp = token_logprobs(h.narrow(0, P - 1, N), model->lm_head_weight(), ids.squeeze(0).narrow(0, P, N),
                               {.temperature = s.temperature});
      at::Tensor rollout = at::tensor(c.logprobs, at::kFloat);
      worst = std::max(worst, (lp.logprobs - rollout).abs().max().item<double>());
    }
    MESSAGE(name << ": max |rollout - trainer log-prob| = " << worst << ", with shared prompts " << worst_shared);
    CHECK(worst <= 1e-5);
    CHECK(worst_shared <= 1e-5);
  }
}

TEST_CASE("same seed, same samples, whatever the batch size, arrival order, block size, chunking, schedule or pauses") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  SamplingOptions s;
  s.temperature = 1.0;
  s.top_p = 0.95;
  s.max_new_tokens = 24;
  s.seed = 5;
  std::vector<GenerationRequest> reqs;
  const char* questions[] = {"What is 2 + 3?", "Tom has 7 apples.", "Compute 12 * 4.", "A train leaves at 3 pm.",
                             "What is 99 - 17?"};
  for (uint64_t i = 0; i < 5; ++i) reqs.push_back({tok.encode(questions[i]), 1 + static_cast<int64_t>(i % 3) * 2, i});
  reqs[3].max_new_tokens = 6;  // a request with its own budget
  CausalLM model = load_f32(tiny());
  auto run = [&](EngineOptions eo, const std::vector<GenerationRequest>& rs) {
    return Engine(model, &tok, eo).generate(rs, s);
  };
  const auto base = run({.max_batch = 16}, reqs);
  REQUIRE(base.size() == 1 + 3 + 5 + 1 + 3);
  CHECK(base[9].tokens.size() <= 6);  // request 3's only sample
  std::set<std::vector<TokenId>> distinct;
  for (const auto& c : base) distinct.insert(c.tokens);
  CHECK(distinct.size() > 6);  // the samples of a prompt differ from each other
  auto same = [&](const std::vector<Completion>& other, const std::string& what) {
    CAPTURE(what);
    REQUIRE(other.size() == base.size());
    for (size_t i = 0; i < base.size(); ++i) {
      CHECK(other[i].tokens == base[i].tokens);
      CHECK(other[i].text == base[i].text);
      CHECK(other[i].finish_reason == base[i].finish_reason);
    }
  };
  same(run({.max_batch = 5}, reqs), "5 rows at a time");
  same(run({.max_batch = 16, .block_size = 1}, reqs), "one-token blocks");
  same(run({.max_batch = 16, .block_size = 7, .prefill_tokens = 4}, reqs), "7-token blocks, 4-token prefill chunks");
  same(run({.max_batch = 16, .schedule = Schedule::drained}, reqs), "static batches");
  same(run({.max_batch = 16, .kv_blocks = 20}, reqs), "a cache too small for all at once");
  same(run({.max_batch = 13, .graphs = DecodeGraphMode::shapes_only}, reqs), "fixed-shape decode steps (CUDA graphs')");
  // Arrival order: the requests reversed give the same completions for the same (stream, sample).
  std::vector<GenerationRequest> rev(reqs.rbegin(), reqs.rend());
  auto r = run({.max_batch = 6}, rev);
  std::vector<Completion> back;
  for (int64_t i = 0; i < 5; ++i)  // original request i is request 4 - i of the reversed list
    for (const auto& c : r)
      if (c.request == 4 - i) back.push_back(c);
  same(back, "requests reversed");
  // Pauses: request 1 stops for 5 steps after its first 3, then continues from its blocks.
  Engine e(model, &tok, {.max_batch = 16});
  GenerationRun g = e.start(reqs, s);
  for (int i = 0; i < 3; ++i) g.step();
  g.pause(1);
  for (int i = 0; i < 5; ++i) g.step();
  g.resume(1);
  while (!g.done()) g.step();
  same(g.take(), "paused and resumed");
  // Other seeds, other samples.
  s.seed = 6;
  auto c = run({.max_batch = 16}, reqs);
  bool any_diff = false;
  for (size_t i = 0; i < base.size(); ++i) any_diff = any_diff || base[i].tokens != c[i].tokens;
  CHECK(any_diff);
}

TEST_CASE("decode-graph buckets: 1, 2, 4, 8, then multiples of 8, ending at max_batch; rows pad up to the next") {
  CHECK(decode_buckets(1) == std::vector<int64_t>{1});
  CHECK(decode_buckets(6) == std::vector<int64_t>{1, 2, 4, 6});
  CHECK(decode_buckets(8) == std::vector<int64_t>{1, 2, 4, 8});
  CHECK(decode_buckets(30) == std::vector<int64_t>{1, 2, 4, 8, 16, 24, 30});
  CHECK(decode_buckets(64).size() == 11);
  // A batch's host columns at a bucket's size: padding rows feed token 0 at the scratch slot with one key.
  PagedKVCache cache(ModelConfig::from_file(tiny() / "config.json"), PagedKVOptions{8, 4}, at::TensorOptions());
  BlockTable a, b;
  PagedBatch pb;
  pb.add(cache, a, {5, 6, 7, 8, 9});
  pb.add(cache, b, {3});
  at::Tensor h = pb.host(4, 3);  // [4, 3 T + 2 + 3], T = 5
  REQUIRE(h.sizes() == at::IntArrayRef({4, 20}));
  CHECK(h[0][0].item<int64_t>() == 5);
  CHECK(h[0][16].item<int64_t>() == 5);  // length
  CHECK(h[1][16].item<int64_t>() == 1);
  CHECK(h[0][17].item<int64_t>() == a.blocks[0]);
  CHECK(h[0][18].item<int64_t>() == a.blocks[1]);
  CHECK(h[0][19].item<int64_t>() == 0);  // past the table: scratch
  for (int64_t r : {2, 3}) {
    CHECK(h[r].narrow(0, 0, 16).abs().sum().item<int64_t>() == 0);  // token, position, slot 0; no past
    CHECK(h[r][16].item<int64_t>() == 1);
    CHECK(h[r].narrow(0, 17, 3).abs().sum().item<int64_t>() == 0);
  }
  CHECK_THROWS_WITH_AS(pb.host(1, 3), doctest::Contains("do not fit"), c10::Error);
  cache.release(a), cache.release(b);
}

TEST_CASE("an engine's later calls equal a fresh engine's, bit for bit (blocks reused from earlier sequences)") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  CausalLM model = load_f32(tiny());
  SamplingOptions s;
  s.max_new_tokens = 12;
  s.seed = 2;
  std::vector<GenerationRequest> first = {{tok.encode("What is 7 + 8?"), 4, 0}, {tok.encode("Compute 3 * 9."), 4, 1}};
  std::vector<GenerationRequest> second = {{tok.encode("What is 19 + 2?"), 4, 2}, {tok.encode("Tom has 5."), 4, 3}};
  Engine used(model, &tok, {.max_batch = 8});
  used.generate(first, s);
  const auto a = used.generate(second, s);
  const auto b = Engine(model, &tok, {.max_batch = 8}).generate(second, s);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].tokens == b[i].tokens);
    CHECK(a[i].logprobs == b[i].logprobs);
  }
}

TEST_CASE("the engine frees every KV block, and a long tail does not hold the batch") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  CausalLM model = load_f32(tiny());
  SamplingOptions s = greedy(40);
  std::vector<GenerationRequest> reqs;
  for (uint64_t i = 0; i < 12; ++i) reqs.push_back({tok.encode("What is " + std::to_string(i) + " + 5?"), 2, i});
  for (size_t i = 1; i < reqs.size(); ++i) reqs[i].max_new_tokens = 4;  // request 0 is the long tail
  Engine cont(model, &tok, {.max_batch = 8, .block_size = 4});
  Engine drained(model, &tok, {.max_batch = 8, .block_size = 4, .schedule = Schedule::drained});
  auto a = cont.generate(reqs, s), b = drained.generate(reqs, s);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].tokens == b[i].tokens);
  // Continuous: the 11 short requests run beside the long one, 39 decode steps. Static batches of 4
  // requests wait for their longest: 39 + 3 + 3.
  MESSAGE("decode steps: continuous " << cont.stats().decode_steps << ", static " << drained.stats().decode_steps);
  CHECK(cont.stats().decode_steps < 42);
  CHECK(drained.stats().decode_steps >= 44);
  // Peak KV use is at most the live sequences' lengths in blocks, far below max_batch x longest.
  CHECK(cont.stats().kv_peak_blocks > 0);
  CHECK(cont.stats().kv_peak_blocks < cont.stats().kv_capacity_blocks / 2);
  // Nothing is left behind, also when a run is abandoned halfway.
  CHECK(cont.kv_blocks_in_use() == 0);
  {
    GenerationRun g = cont.start(reqs, s);
    for (int i = 0; i < 5; ++i) g.step();
    CHECK(cont.kv_blocks_in_use() > 0);
  }
  CHECK(cont.kv_blocks_in_use() == 0);
  auto again = cont.generate(reqs, s);
  for (size_t i = 0; i < a.size(); ++i) CHECK(again[i].tokens == a[i].tokens);
}

TEST_CASE("weight sync: versions, whole snapshots, and checksum mismatches are errors") {
  CausalLM trainer = load_f32(tiny());
  CausalLM worker = load_f32(tiny());
  WeightStore store;
  uint64_t c0 = store.publish(*trainer, 0);
  CHECK(c0 == weights_checksum(*trainer));
  int64_t installed = -1;
  CHECK(install_weights(*worker, *store.latest(), &installed));
  CHECK(installed == 0);
  CHECK_FALSE(install_weights(*worker, *store.latest(), &installed));  // already current

  {  // the trainer steps; the worker picks up the new version and matches it bit for bit
    at::NoGradGuard ng;
    trainer->model->norm->weight.add_(0.5);
  }
  uint64_t c1 = store.publish(*trainer, 1);
  CHECK(c1 != c0);
  CHECK(install_weights(*worker, *store.latest(), &installed));
  CHECK(installed == 1);
  CHECK(weights_checksum(*worker) == c1);
  CHECK(worker->model->norm->weight.equal(trainer->model->norm->weight));

  CHECK_THROWS_WITH_AS(store.publish(*trainer, 1), doctest::Contains("not newer"), r1::Error);

  // A snapshot whose bytes do not match its checksum is refused.
  auto bad = std::make_shared<WeightSnapshot>(*store.latest());
  bad->version = 2;
  bad->tensors[0].second = bad->tensors[0].second.clone().add_(1.0);
  CHECK_THROWS_WITH_AS(install_weights(*worker, *bad, &installed), doctest::Contains("checksum"), r1::Error);
}

TEST_CASE("datasets: GSM8K out of the box, templates, reference fields, seeded epochs, rank shards, cursor" *
          test::needs_shared("data/gsm8k/test.jsonl")) {
  fs::path gsm = test::shared_file("data/gsm8k/test.jsonl");
  DatasetOptions o;
  o.path = gsm.string();
  o.prompt_template = "Q: {question}\nA: {{think}}";
  o.limit = 50;
  Dataset d(o);
  CHECK(d.size() == 50);
  const PromptRecord& r0 = d.at(0);
  CHECK(r0.prompt.rfind("Q: ", 0) == 0);
  CHECK(r0.prompt.find("{think}") != std::string::npos);
  CHECK(r0.reference.contains("answer"));

  Dataset a(o), b(o);
  std::vector<int64_t> sa, sb;
  for (int i = 0; i < 120; ++i) sa.push_back(a.next().index), sb.push_back(b.next().index);
  CHECK(sa == sb);
  CHECK(std::set<int64_t>(sa.begin(), sa.begin() + 50).size() == 50);  // an epoch covers every record once
  CHECK(a.cursor().epoch == 2);

  // Resume from a cursor gives the same continuation.
  Dataset c(o);
  c.set_cursor({1, 7});
  Dataset ref(o);
  for (int i = 0; i < 57; ++i) ref.next();
  for (int i = 0; i < 30; ++i) CHECK(c.next().index == ref.next().index);

  // Two ranks split each epoch without overlap.
  Dataset r0d(o, 0, 2), r1d(o, 1, 2);
  std::set<int64_t> seen;
  for (int i = 0; i < 25; ++i) seen.insert(r0d.next().index), seen.insert(r1d.next().index);
  CHECK(seen.size() == 50);

  DatasetOptions bad = o;
  bad.prompt_template = "{nope}";
  CHECK_THROWS_WITH_AS(Dataset(bad, 0, 1), doctest::Contains("no field 'nope'"), r1::Error);
  bad = o;
  bad.reference_fields = {"solution"};
  CHECK_THROWS_WITH_AS(Dataset(bad, 0, 1), doctest::Contains("reference field 'solution'"), r1::Error);
}

TEST_CASE("rollout workers: groups in request order, reward stage, versions pinned per request") {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  DatasetOptions d;
  d.path = (test::source_dir() / "data" / "arith" / "heldout.jsonl").string();  // the demo's committed records
  d.limit = 40;
  RolloutOptions ro;
  ro.workers = 2;
  ro.group_size = 3;
  ro.prompts_per_step = 4;
  ro.prompts_per_batch = 3;  // batches straddle requests: a batch never mixes two of them
  ro.max_batch = 9;
  SamplingOptions s;
  s.max_new_tokens = 6;
  CausalLM trainer = load_f32(tiny());
  auto store = std::make_shared<WeightStore>();
  store->publish(*trainer, 0);
  RolloutPool pool(ro, s,
                   {.make_model = [](int64_t) { return load_f32(tiny()); },
                    .tokenizer = &tok,
                    .dataset = std::make_shared<Dataset>(d),
                    .weights = store,
                    .reward =
                        [](ScoredGroup& g) {
                          for (const auto& c : g.completions) {
                            g.rewards.push_back(static_cast<double>(c.tokens.size()));
                            g.reward_parts.push_back({{"len", static_cast<double>(c.tokens.size())}});
                            g.reward_reasons.push_back("length");
                          }
                        }});
  pool.start();
  pool.request(4);
  pool.request(4);  // prefetch: pinned to version 0 as well
  auto step0 = pool.take(4);
  REQUIRE(step0.size() == 4);
  for (size_t i = 0; i < step0.size(); ++i) {
    CHECK(step0[i].sequence == static_cast<int64_t>(i));
    CHECK(step0[i].completions.size() == 3);
    CHECK(step0[i].rewards.size() == 3);
    CHECK(step0[i].policy_version == 0);
  }
  {
    at::NoGradGuard ng;
    trainer->model->norm->weight.mul_(1.1);
  }
  pool.publish(*trainer, 1);
  pool.request(4);
  auto prefetched = pool.take(4);
  for (const auto& g : prefetched) CHECK(g.policy_version == 0);  // requested before the publish
  auto step2 = pool.take(4);
  for (const auto& g : step2) {
    CHECK(g.policy_version == 1);
    CHECK(g.sequence >= 8);
  }
  CHECK(pool.pending() == 0);
  CHECK_THROWS_WITH_AS(pool.take(1), doctest::Contains("only 0 groups"), r1::Error);
  pool.stop();
  CHECK(pool.engine_stats().decode_tokens > 0);
}

// Checkpoints pad the output layer past the tokenizer (Qwen2.5: 151,936 logits, 151,665 tokens).
// Here models/tiny gets 40 extra output rows, each 3x a real row so that they would win often:
// without a tokenizer the engine samples them; with one it never does, and the trainer's
// log-probs equal the unpadded model's (the padded rows carry no probability on either side).
TEST_CASE("a model whose vocab_size exceeds the tokenizer's never samples an id the tokenizer lacks") {
  const Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  CausalLM base = load_f32(tiny());
  ModelConfig cfg = base->config();
  const int64_t V = cfg.vocab_size, extra = 40;
  REQUIRE(static_cast<int64_t>(tok.vocab_size()) == V);
  cfg.vocab_size = V + extra;
  auto padded_model = [&] {
    CausalLM m(cfg, base->options());
    at::NoGradGuard ng;
    auto from = base->named_parameters();
    for (auto& p : m->named_parameters()) {
      const at::Tensor& src = from[p.key()];
      if (src.sizes() == p.value().sizes()) {
        p.value().copy_(src);
      } else {  // the embedding / output rows: real ones, then 3x copies of the first `extra`
        p.value().narrow(0, 0, V).copy_(src);
        p.value().narrow(0, V, extra).copy_(src.narrow(0, 0, extra) * 3);
      }
    }
    return m;
  };
  SamplingOptions s;
  s.temperature = 1.0;
  s.ignore_eos = true;
  s.max_new_tokens = 24;
  const std::vector<TokenId> prompt = tok.encode("What is 12 + 30? Answer:");
  auto max_id = [&](Engine& e) {
    TokenId m = 0;
    for (const auto& c : e.generate({{prompt, 16, 1}}, s))
      for (TokenId t : c.tokens) m = std::max(m, t);
    return m;
  };
  Engine unguarded(padded_model(), nullptr, {.max_batch = 16});
  CHECK(max_id(unguarded) >= V);  // the setup would produce padded ids
  CausalLM guarded_model = padded_model();
  Engine guarded(guarded_model, &tok, {.max_batch = 16});
  CHECK(max_id(guarded) < V);
  auto out = guarded.generate({{prompt, 4, 2}}, s);
  for (const auto& c : out) CHECK_NOTHROW(tok.decode(c.tokens));

  std::vector<CompletionRef> rows;
  std::vector<std::vector<TokenId>> seqs;
  for (const auto& c : out) {
    seqs.push_back(prompt);
    seqs.back().insert(seqs.back().end(), c.tokens.begin(), c.tokens.end());
  }
  for (size_t i = 0; i < seqs.size(); ++i)
    rows.push_back(
        {seqs[i].data(), static_cast<int64_t>(prompt.size()), static_cast<int64_t>(out[i].tokens.size()), 0});
  at::NoGradGuard ng;
  at::Tensor lp_padded = completion_logprobs(*guarded_model, rows, {.entropy = true}).logprobs;
  at::Tensor lp_base = completion_logprobs(*base, rows, {.entropy = true}).logprobs;
  CHECK((lp_padded - lp_base).abs().max().item<double>() < 1e-5);
  for (size_t i = 0; i < out.size(); ++i)  // the sampler's recorded log-probs agree too
    for (size_t t = 0; t < out[i].tokens.size(); ++t)
      CHECK(out[i].logprobs[t] ==
            doctest::Approx(lp_base[static_cast<int64_t>(i)][static_cast<int64_t>(t)].item<double>()).epsilon(1e-4));
}

namespace {

// Workers on one shared module: the tiny model's tokenizer, 20 held-out prompts, two workers of two
// prompts x G 2, five new tokens each.
struct PoolSetup {
  Tokenizer tok = Tokenizer::load(tiny() / "tokenizer.json");
  DatasetOptions data;
  RolloutOptions rollout;
  SamplingOptions sampling;
  PoolSetup() {
    data.path = (test::source_dir() / "data" / "arith" / "heldout.jsonl").string();
    data.limit = 20;
    rollout.workers = 2;
    rollout.group_size = 2;
    rollout.prompts_per_batch = 2;
    rollout.max_batch = 4;
    sampling.max_new_tokens = 5;
    sampling.ignore_eos = true;
  }
  // A pool whose workers all get make_model's one module, rewarding every completion 0.
  std::unique_ptr<RolloutPool> shared_pool(std::function<CausalLM(int64_t)> make_model,
                                           std::shared_ptr<WeightStore> store) {
    return std::make_unique<RolloutPool>(
        rollout, sampling,
        RolloutPool::Parts{.make_model = std::move(make_model),
                           .shared_model = true,
                           .tokenizer = &tok,
                           .dataset = std::make_shared<Dataset>(data),
                           .weights = std::move(store),
                           .reward = [](ScoredGroup& g) { g.rewards.assign(g.completions.size(), 0.0); }});
  }
};

}  // namespace

// max_policy_lag = 0: every worker samples from the trainer's own module. No worker holds a copy
// of the weights (their parameters are the trainer's storages), the weight store keeps no host
// snapshot, and a change to the trainer's weights is what the next request samples with.
TEST_CASE("rollout workers on the trainer's own module keep no copy of the weights") {
  PoolSetup ps;
  CausalLM trainer = load_f32(tiny());
  std::set<const void*> storages;
  for (const auto& p : trainer->parameters()) storages.insert(p.data_ptr());
  std::vector<CausalLM> handed_out;
  auto store = std::make_shared<WeightStore>();
  auto pool_ptr = ps.shared_pool(
      [&](int64_t) {
        handed_out.push_back(trainer);
        return trainer;
      },
      store);
  RolloutPool& pool = *pool_ptr;
  pool.publish(*trainer, 0);
  pool.start();
  REQUIRE(handed_out.size() == 2);
  for (auto& m : handed_out)
    for (const auto& p : m->parameters()) CHECK(storages.count(p.data_ptr()) == 1);  // no parameter storage of its own
  CHECK(store->latest()->tensors.empty());                                           // no host snapshot
  pool.request(2);
  auto before = pool.take(2);
  {
    at::NoGradGuard ng;  // the trainer's update, while no worker generates
    trainer->lm_head_weight().mul_(-1);
  }
  pool.publish(*trainer, 1);
  pool.request(2);
  auto after = pool.take(2);
  pool.stop();
  // The recorded log-probs are the trainer's forward with the new weights.
  std::vector<CompletionRef> rows;
  std::vector<std::vector<TokenId>> seqs;
  for (const auto& g : after)
    for (const auto& c : g.completions) {
      seqs.push_back(g.prompt_ids);
      seqs.back().insert(seqs.back().end(), c.tokens.begin(), c.tokens.end());
    }
  size_t k = 0;
  for (const auto& g : after)
    for (const auto& c : g.completions) {
      rows.push_back(
          {seqs[k++].data(), static_cast<int64_t>(g.prompt_ids.size()), static_cast<int64_t>(c.tokens.size()), 0});
      rows.back().prompt_key = static_cast<int64_t>(k);
    }
  at::NoGradGuard ng;
  at::Tensor lp = completion_logprobs(*trainer, rows).logprobs;
  k = 0;
  for (const auto& g : after) {
    CHECK(g.policy_version == 1);
    for (const auto& c : g.completions) {
      for (size_t t = 0; t < c.tokens.size(); ++t)
        CHECK(c.logprobs[t] ==
              doctest::Approx(lp[static_cast<int64_t>(k)][static_cast<int64_t>(t)].item<double>()).epsilon(1e-4));
      ++k;
    }
  }
}

// max_policy_lag = 1: every worker samples from one sampler copy, which the trainer updates in
// place once the groups pinned to the old version are generated (wait_generated), while it trains
// on its own module. One copy in all, whatever the number of workers; each group's log-probs are
// those of the version that sampled it.
TEST_CASE("rollout workers share one sampler copy, updated in place between versions") {
  PoolSetup ps;
  ps.rollout.workers = 3;
  ps.rollout.prompts_per_batch = 1;
  CausalLM trainer = load_f32(tiny());
  CausalLM sampler(trainer->config(), trainer->options());
  copy_weights(*sampler, *trainer);
  std::set<const void*> storages;
  int64_t handed_out = 0;
  auto store = std::make_shared<WeightStore>();
  auto pool_ptr = ps.shared_pool(
      [&](int64_t) {
        ++handed_out;
        for (const auto& p : sampler->parameters()) storages.insert(p.data_ptr());
        return sampler;
      },
      store);
  RolloutPool& pool = *pool_ptr;
  pool.publish(*trainer, 0);
  pool.start();
  CHECK(handed_out == 3);
  CHECK(storages.size() == sampler->parameters().size());  // the three workers hold one set of weights
  pool.request(4);                                         // version 0, generated while the trainer updates
  {
    at::NoGradGuard ng;
    trainer->lm_head_weight().mul_(-1);
  }
  CausalLM old_weights = load_f32(tiny());
  pool.wait_generated();
  copy_weights(*sampler, *trainer);
  pool.publish(*trainer, 1);
  pool.request(4);
  auto groups = pool.take(8);
  pool.stop();
  at::NoGradGuard ng;
  for (const auto& g : groups) {
    CAPTURE(g.sequence);
    CHECK(g.policy_version == (g.sequence < 4 ? 0 : 1));
    std::vector<std::vector<TokenId>> seqs;
    std::vector<CompletionRef> rows;
    for (const auto& c : g.completions) {
      seqs.push_back(g.prompt_ids);
      seqs.back().insert(seqs.back().end(), c.tokens.begin(), c.tokens.end());
    }
    for (size_t i = 0; i < seqs.size(); ++i)
      rows.push_back({seqs[i].data(), static_cast<int64_t>(g.prompt_ids.size()),
                      static_cast<int64_t>(g.completions[i].tokens.size()), static_cast<int64_t>(i)});
    CausalLM& sampled_by = g.policy_version == 0 ? old_weights : trainer;
    at::Tensor lp = completion_logprobs(*sampled_by, rows).logprobs;
    for (size_t i = 0; i < g.completions.size(); ++i)
      for (size_t t = 0; t < g.completions[i].tokens.size(); ++t)
        CHECK(g.completions[i].logprobs[t] ==
              doctest::Approx(lp[static_cast<int64_t>(i)][static_cast<int64_t>(t)].item<double>()).epsilon(1e-4));
  }
  // A copy that does not match is an error, not a silent difference.
  CausalLM other = load_f32(test::fixtures() / "models" / "qwen3");
  CHECK_THROWS(copy_weights(*sampler, *other));
}
