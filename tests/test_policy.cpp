// The policy model against Hugging Face transformers (committed fixtures from
// scripts/fixtures/make_policy_fixtures.py): logits within 1e-4 in float32 (greedy tokens through
// the rollout engine: test_rollout.cpp), every weight loaded, cached == uncached, chunked log-probs == dense,
// bit-identical save round trips, and clear errors for broken checkpoints and configs.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <boost/json.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "policy/cpu_kernels.hpp"
#include "policy/device.hpp"
#include "policy/fused_ops.hpp"
#include "policy/logprobs.hpp"
#include "policy/onednn.hpp"
#include "policy/safetensors.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1;

namespace {

const std::vector<std::string> kModels = {"qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"};

fs::path model_dir(const std::string& name) { return test::fixtures() / "models" / name; }

struct Parity {
  at::Tensor ids, mask, logits, greedy;
};

Parity parity(const std::string& name) {
  SafetensorsReader r(test::fixtures() / "parity" / (name + ".safetensors"));
  return {r.get("input_ids").clone(), r.get("attention_mask").clone(), r.get("logits").clone(),
          r.get("greedy").clone()};
}

CausalLM load_f32(const fs::path& dir) { return load_pretrained(dir, at::TensorOptions().dtype(at::kFloat)); }

// Full forward over a left-padded batch, positions counted from each row's first real token.
at::Tensor padded_logits(CausalLM& m, const at::Tensor& ids, const at::Tensor& mask) {
  at::Tensor pos = (mask.cumsum(-1) - 1).clamp_min(0);
  return m->logits(m->hidden({ids, pos, causal_mask(mask.to(at::kBool), ids.size(1))}));
}

using test::error_of;
using test::scratch;

// Copies a fixture model folder so a test can damage it.
fs::path copy_model(const std::string& name, const std::string& as) {
  fs::path dst = scratch(as);
  fs::copy(model_dir(name), dst, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return dst;
}

}  // namespace

TEST_CASE("logits match transformers within 1e-4 (float32)") {
  at::NoGradGuard ng;
  for (const auto& name : kModels) {
    CAPTURE(name);
    CausalLM m = load_f32(model_dir(name));
    Parity p = parity(name);
    at::Tensor logits = padded_logits(m, p.ids, p.mask);
    at::Tensor valid = p.mask.to(at::kBool);
    double err = (logits - p.logits).abs().masked_select(valid.unsqueeze(-1)).max().item<double>();
    MESSAGE(name << ": max |logit - transformers| = " << err);
    CHECK(err <= 1e-4);
    CHECK(p.logits.std().item<double>() > 0.1);  // the reference is not trivially flat
    // A one-ulp-scale change of one weight must show: the comparison is not vacuous.
    m->model->norm->weight.data().mul_(1.01);
    CHECK((padded_logits(m, p.ids, p.mask) - p.logits).abs().max().item<double>() > 1e-4);
  }
}

TEST_CASE("every checkpoint tensor is loaded, bit for bit, under its Hugging Face name") {
  for (const auto& name : kModels) {
    CAPTURE(name);
    CausalLM m =
        load_pretrained(model_dir(name),
                        at::TensorOptions().dtype(name.find("bf16") != std::string::npos ? at::kBFloat16 : at::kFloat));
    SafetensorsReader r(model_dir(name));
    auto params = m->named_parameters();
    CHECK(params.size() == r.entries().size());
    for (auto& p : params) {
      CAPTURE(p.key());
      REQUIRE(r.contains(p.key()));
      CHECK(p.value().equal(r.get(p.key())));
    }
    CHECK(params.contains("model.layers.0.self_attn.q_proj.weight"));
    CHECK(params.contains("model.norm.weight"));
    CHECK(params.contains("lm_head.weight") == !m->config().tie_word_embeddings);
  }
}

TEST_CASE("cached decoding equals the uncached forward") {
  at::NoGradGuard ng;
  CausalLM m = load_f32(model_dir("qwen3"));
  Parity p = parity("qwen3");
  at::Tensor ids = p.ids.narrow(0, 0, 1);  // [1, 16], no padding
  at::Tensor full = m->logits(m->hidden({ids}));
  KVCache cache = KVCache::allocate(m->config(), 1, 16, m->options());
  std::vector<at::Tensor> steps = {m->logits(m->hidden({ids.narrow(1, 0, 6)}, &cache))};
  for (int64_t t = 6; t < 10; ++t) steps.push_back(m->logits(m->hidden({ids.narrow(1, t, 1)}, &cache)));
  steps.push_back(m->logits(m->hidden({ids.narrow(1, 10, 6)}, &cache)));  // multi-token chunk after a prefix
  at::Tensor cached = at::cat(steps, 1);
  CHECK(cache.length == 16);
  CHECK((cached - full).abs().max().item<double>() <= 1e-5);
}

TEST_CASE("fused RMSNorm and q/k-norm + RoPE equal the composite ops, values and gradients") {
  at::manual_seed(5);
  auto composite_rms = [](const at::Tensor& x, const at::Tensor& w, double eps) {
    return w * (x * at::rsqrt(x.pow(2).mean(-1, true) + eps));
  };
  auto rotate_half = [](const at::Tensor& x) {
    const int64_t h = x.size(-1) / 2;
    return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
  };
  for (int64_t D : {16, 32, 64, 128}) {
    CAPTURE(D);
    at::Tensor x = at::randn({3, 37, D}).requires_grad_(true), w = (1 + 0.1 * at::randn({D})).requires_grad_(true);
    at::Tensor g = at::randn({3, 37, D});
    auto a = torch::autograd::grad({r1::rms_norm(x, w, 1e-6)}, {x, w}, {g});
    auto b = torch::autograd::grad({composite_rms(x, w, 1e-6)}, {x, w}, {g});
    CHECK((r1::rms_norm(x, w, 1e-6) - composite_rms(x, w, 1e-6)).abs().max().item<double>() <= 1e-5);
    CHECK((a[0] - b[0]).abs().max().item<double>() <= 1e-4);
    CHECK((a[1] - b[1]).abs().max().item<double>() <= 1e-3);  // a sum over 111 rows

    at::Tensor q = at::randn({2, 5, 3, D}).requires_grad_(true);  // [B, T, H, D]
    at::Tensor ang = at::randn({2, 5, D / 2}) * 3;
    at::Tensor cos = at::cat({ang, ang}, -1).cos(), sin = at::cat({ang, ang}, -1).sin();  // [B, T, D]
    at::Tensor gq = at::randn({2, 5, 3, D});
    for (bool norm : {false, true}) {
      CAPTURE(norm);
      at::Tensor nw = norm ? w : at::Tensor();
      at::Tensor fused = norm_rope(q, nw, 1e-6, cos, sin);
      at::Tensor t = norm ? composite_rms(q, w, 1e-6) : q;
      at::Tensor ref = t * cos.unsqueeze(2) + rotate_half(t) * sin.unsqueeze(2);
      CHECK((fused - ref).abs().max().item<double>() <= 1e-5);
      std::vector<at::Tensor> in = {q};
      if (norm) in.push_back(w);
      auto ga = torch::autograd::grad({fused}, in, {gq});
      auto gb = torch::autograd::grad({ref}, in, {gq});
      for (size_t i = 0; i < in.size(); ++i) CHECK((ga[i] - gb[i]).abs().max().item<double>() <= 1e-4);
    }
  }
}

TEST_CASE("shared-prefix forward equals each row's own forward, hidden states and gradients") {
  // Two prompts of lengths 5 and 7 (right-padded to 7), four continuations of 6, 3, 1 and 4 tokens.
  const std::vector<int64_t> plen = {5, 7}, slen = {6, 3, 1, 4}, of = {0, 1, 0, 1};
  for (const std::string name : {"qwen3", "llama"}) {
    CAPTURE(name);
    CausalLM m = load_f32(model_dir(name));
    const int64_t V = m->config().vocab_size, H = m->config().hidden_size;
    at::manual_seed(11);
    at::Tensor prefix = at::randint(1, V, {2, 7}, at::kLong), suffix = at::randint(1, V, {4, 6}, at::kLong);
    for (int64_t b = 0; b < 4; ++b) suffix[b].narrow(0, slen[b], 6 - slen[b]).fill_(0);
    prefix[0].narrow(0, 5, 2).fill_(0);
    at::Tensor probe_p = at::randn({2, 7, H}), probe_s = at::randn({4, 6, H});  // loss weights

    SharedPrefixHidden sh = m->hidden_shared({prefix, at::tensor(plen), suffix, at::tensor(of)});
    at::Tensor loss = at::zeros({});
    for (int64_t u = 0; u < 2; ++u)
      loss = loss + (sh.prefix[u].narrow(0, 0, plen[u]) * probe_p[u].narrow(0, 0, plen[u])).sum();
    for (int64_t b = 0; b < 4; ++b)
      loss = loss + (sh.suffix[b].narrow(0, 0, slen[b]) * probe_s[b].narrow(0, 0, slen[b])).sum();
    std::vector<at::Tensor> params = m->parameters();
    auto g_shared = torch::autograd::grad({loss}, params, {}, {}, false, /*allow_unused=*/true);  // lm_head: unused

    // Reference: every prefix and every prefix + continuation through the plain forward, one row at a time.
    at::Tensor ref_loss = at::zeros({});
    double max_diff = 0;
    for (int64_t u = 0; u < 2; ++u) {
      at::Tensor h = m->hidden({prefix.narrow(0, u, 1).narrow(1, 0, plen[u])})[0];  // [len, H]
      max_diff = std::max(max_diff, (h - sh.prefix[u].narrow(0, 0, plen[u])).abs().max().item<double>());
      ref_loss = ref_loss + (h * probe_p[u].narrow(0, 0, plen[u])).sum();
    }
    for (int64_t b = 0; b < 4; ++b) {
      const int64_t u = of[b];
      at::Tensor ids = at::cat({prefix[u].narrow(0, 0, plen[u]), suffix[b].narrow(0, 0, slen[b])}).unsqueeze(0);
      at::Tensor h = m->hidden({ids})[0].narrow(0, plen[u], slen[b]);  // [slen, H]
      max_diff = std::max(max_diff, (h - sh.suffix[b].narrow(0, 0, slen[b])).abs().max().item<double>());
      ref_loss = ref_loss + (h * probe_s[b].narrow(0, 0, slen[b])).sum();
    }
    auto g_ref = torch::autograd::grad({ref_loss}, params, {}, {}, false, /*allow_unused=*/true);
    CHECK(max_diff <= 1e-5);
    double grad_diff = 0, grad_scale = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      REQUIRE(g_shared[i].defined() == g_ref[i].defined());
      if (!g_ref[i].defined()) continue;
      grad_diff = std::max(grad_diff, (g_shared[i] - g_ref[i]).abs().max().item<double>());
      grad_scale = std::max(grad_scale, g_ref[i].abs().max().item<double>());
    }
    CHECK(grad_scale > 0);
    CHECK(grad_diff <= 1e-5 * std::max(1.0, grad_scale));
  }
  // completion_logprobs (the trainer's scoring) against each sequence's own forward, with gradients:
  // two samples of one prompt (4 and 1 completion tokens), one of another, one with no completion.
  {
    CausalLM m = load_f32(model_dir("qwen3"));
    const std::vector<TokenId> a = {5, 6, 7, 8, 9, 10, 11, 12}, a2 = {5, 6, 7, 8, 13}, b = {20, 21, 22, 23, 24, 25},
                               c = {30, 31};
    const std::vector<CompletionRef> rows = {
        {a.data(), 4, 4, 0}, {a2.data(), 4, 1, 0}, {b.data(), 2, 4, 1}, {c.data(), 2, 0, 2}};
    at::Tensor probe = at::randn({4, 4});
    at::Tensor lp = completion_logprobs(*m, rows, {.temperature = 0.7}).logprobs;  // [4, 4]
    REQUIRE(lp.sizes() == at::IntArrayRef({4, 4}));
    std::vector<at::Tensor> params = m->parameters();
    auto g_shared = torch::autograd::grad({(lp * probe).sum()}, params, {}, {}, false, true);
    at::Tensor ref_loss = at::zeros({});
    double worst = 0;
    for (int64_t i = 0; i < 4; ++i) {
      const CompletionRef& r = rows[i];
      CHECK(lp[i].narrow(0, r.completion_len, 4 - r.completion_len).abs().sum().item<double>() == 0);  // padding
      if (r.completion_len == 0) continue;
      std::vector<int64_t> seq(r.tokens, r.tokens + r.prompt_len + r.completion_len);
      at::Tensor ids = at::tensor(seq, at::kLong);
      at::Tensor h = m->hidden({ids.unsqueeze(0)})[0].narrow(0, r.prompt_len - 1, r.completion_len);
      at::Tensor own =
          token_logprobs(h, m->lm_head_weight(), ids.narrow(0, r.prompt_len, r.completion_len), {.temperature = 0.7})
              .logprobs;
      worst = std::max(worst, (own - lp[i].narrow(0, 0, r.completion_len)).abs().max().item<double>());
      ref_loss = ref_loss + (own * probe[i].narrow(0, 0, r.completion_len)).sum();
    }
    CHECK(worst <= 1e-5);
    auto g_ref = torch::autograd::grad({ref_loss}, params, {}, {}, false, true);
    double gd = 0;
    for (size_t i = 0; i < params.size(); ++i)
      if (g_ref[i].defined()) gd = std::max(gd, (g_shared[i] - g_ref[i]).abs().max().item<double>());
    CHECK(gd <= 1e-5);
  }
  // Rows may only share a prompt run when their prompts are the same tokens.
  CausalLM m = load_f32(model_dir("qwen3"));
  const std::vector<TokenId> a = {5, 6, 7, 8}, b = {5, 6, 9, 8};
  std::string err = error_of([&] { completion_logprobs(*m, {{a.data(), 3, 1, 0}, {b.data(), 3, 1, 0}}); });
  CHECK(err.find("share prompt key 0") != std::string::npos);
  CHECK(completion_logprobs(*m, {{a.data(), 3, 1, 0}, {b.data(), 3, 1, 1}}).logprobs.sizes() == at::IntArrayRef{2, 1});
}

namespace {

// Hidden states of rows run through the paged cache: prompts A (7 tokens) and B (5) prefilled in
// chunks (A's first 4 with B in one call, A's last 3 with past keys), A forked into two samples
// that share its blocks, then `steps` decode steps of A1, A2 and B. Returns the largest difference
// from each row's own uncached forward over its whole sequence, by `ref` (default: m itself).
double paged_vs_uncached(CausalLM& m, const at::TensorOptions& cache_opts, int64_t block_size, int64_t steps,
                         CausalLM* ref = nullptr) {
  at::manual_seed(3);
  const int64_t V = m->config().vocab_size;
  auto rand_ids = [&](int64_t n) {
    at::Tensor t = at::randint(1, V, {n}, at::kLong);
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
  };
  PagedKVCache cache(m->config(), {.blocks = 64, .block_size = block_size}, cache_opts);
  std::vector<int64_t> a = rand_ids(7), b = rand_ids(5);
  BlockTable ta, tb;
  double worst = 0;
  auto compare = [&](const at::Tensor& h, const std::vector<int64_t>& seq, int64_t first, int64_t n) {
    at::Tensor ids = at::tensor(seq, at::kLong).unsqueeze(0);
    at::Tensor want = (ref ? *ref : m)->hidden({ids}).squeeze(0).narrow(0, first, n).to(at::kDouble);  // [n, H]
    worst = std::max(worst, (h.narrow(0, 0, n).to(at::kDouble) - want).abs().max().item<double>());
  };
  PagedBatch first;
  first.add(cache, ta, {a.begin(), a.begin() + 4});
  first.add(cache, tb, b);
  at::Tensor h1 = m->forward_paged(first.to(at::kCPU), cache);  // [2, 5, H], fresh
  compare(h1[0], {a.begin(), a.begin() + 4}, 0, 4);
  compare(h1[1], b, 0, 5);
  PagedBatch second;
  second.add(cache, ta, {a.begin() + 4, a.end()});
  compare(m->forward_paged(second.to(at::kCPU), cache)[0], a, 4, 3);
  std::vector<BlockTable> rows = {cache.fork(ta), cache.fork(ta), tb};
  cache.release(ta);
  std::vector<std::vector<int64_t>> seqs = {a, a, b};
  for (int64_t t = 0; t < steps; ++t) {
    PagedBatch step;
    for (size_t r = 0; r < rows.size(); ++r) {
      seqs[r].push_back(rand_ids(1)[0]);
      step.add(cache, rows[r], {seqs[r].back()});
    }
    at::Tensor h = m->forward_paged(step.to(at::kCPU), cache);  // [3, 1, H]
    for (size_t r = 0; r < rows.size(); ++r)
      compare(h[static_cast<int64_t>(r)], seqs[r], static_cast<int64_t>(seqs[r].size()) - 1, 1);
  }
  // Blocks in use: A's full blocks shared by both samples, everything else each row's own.
  const int64_t bs = block_size, shared = 7 / bs;
  int64_t expect = shared;
  for (const auto& r : rows) expect += cache.blocks_for(r.length) - (&r == &rows[2] ? 0 : shared);
  CHECK(cache.allocator().used() == expect);
  for (auto& r : rows) cache.release(r);
  CHECK(cache.allocator().used() == 0);
  return worst;
}

}  // namespace

TEST_CASE("paged forwards equal each row's own forward: chunked prefill, shared prompt blocks, fused and generic") {
  at::NoGradGuard ng;
  for (const std::string name : {"qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"}) {
    CAPTURE(name);
    CausalLM m = load_f32(model_dir(name));
    // float32 on a CPU with AVX2: decode steps run the fused kernels (R1_CPU_ISA=none: the generic path)
    CHECK(m->fused_decode_available() == (cpu::isa() != cpu::Isa::none));
    for (int64_t bs : {1, 3, 16}) {
      CAPTURE(bs);
      CHECK(paged_vs_uncached(m, m->options(), bs, 6) <= 1e-5);
    }
    // A float64 cache takes the generic path for every call (gathered keys, explicit mask).
    CausalLM d = load_f32(model_dir(name));
    d->to(at::kDouble);
    for (int64_t bs : {1, 4}) {
      CAPTURE(bs);
      CHECK(paged_vs_uncached(d, m->options().dtype(at::kDouble), bs, 6) <= 1e-10);
    }
  }
}

TEST_CASE("bfloat16 paged decode runs fused, as close to float32 as ATen's bfloat16 forward") {
  at::NoGradGuard ng;
  for (const std::string name : {"qwen2", "qwen3", "llama-bias"}) {
    CAPTURE(name);
    CausalLM b = load_pretrained(model_dir(name), at::TensorOptions().dtype(at::kBFloat16));
    CHECK(b->fused_decode_available() == (cpu::isa() != cpu::Isa::none));
    CausalLM f = load_f32(model_dir(name));  // the bfloat16 weights, widened: the exact reference
    {
      auto fp = f->named_parameters(), bp = b->named_parameters();
      for (auto& p : fp) p.value().copy_(bp[p.key()]);
    }
    // ATen's bfloat16 forward (every activation rounded) against float32: the scale of bf16 error.
    // The paged run's prefill is ATen's bfloat16 forward too, so its decode steps see bf16 keys.
    at::manual_seed(7);
    const at::Tensor ids = at::randint(1, b->config().vocab_size, {1, 14}, at::kLong);
    const double aten_err =
        (b->hidden({ids}).to(at::kDouble) - f->hidden({ids}).to(at::kDouble)).abs().max().item<double>();
    for (int64_t bs : {1, 4}) {
      CAPTURE(bs);
      const double err = paged_vs_uncached(b, b->options(), bs, 6, &f);
      MESSAGE(name << " block " << bs << ": bf16 paged decode max error " << err << ", ATen bf16 forward " << aten_err);
      CHECK(err > 0);  // it did run in bfloat16
      CHECK(err <= 1.5 * aten_err);
    }
  }
}

TEST_CASE("fused paged decode attention equals reference attention over scattered blocks (1e-5)") {
  at::manual_seed(21);
  for (at::ScalarType pool : {at::kFloat, at::kBFloat16})
    for (int64_t D : {16, 64, 128}) {
      CAPTURE(pool);
      CAPTURE(D);
      const int64_t B = 3, Hq = 4, Hkv = 2, bs = 5, NB = 20;
      const std::vector<int64_t> len = {1, 13, 22};  // keys per row, the new token's included
      at::Tensor kp = at::randn({NB, bs, Hkv, D}).to(pool), vp = at::randn({NB, bs, Hkv, D}).to(pool);
      // Row b's blocks: a shuffled, disjoint set of pool blocks (block 0 left out, as the scratch).
      at::Tensor perm = at::randperm(NB - 1, at::kLong) + 1;
      at::Tensor tables = at::zeros({B, 5}, at::kInt);
      for (int64_t b = 0, next = 0; b < B; ++b)
        for (int64_t j = 0; j < (len[b] + bs - 1) / bs; ++j) tables[b][j] = perm[next++].item<int64_t>();
      at::Tensor q = at::randn({B, Hq, D}), k = at::randn({B, Hkv, D}), v = at::randn({B, Hkv, D});
      at::Tensor cos = at::ones({B, D}), sin = at::zeros({B, D});  // RoPE at position 0: identity
      at::Tensor lengths = at::tensor(len, at::kLong), out = at::empty({B, Hq, D});
      at::Tensor k_ref = kp.clone(), v_ref = vp.clone();
      cpu::DecodeAttention a;
      a.q = q.data_ptr<float>(), a.k = k.data_ptr<float>(), a.v = v.data_ptr<float>();
      a.cos = cos.data_ptr<float>(), a.sin = sin.data_ptr<float>();
      a.k_pool = kp.data_ptr(), a.v_pool = vp.data_ptr(), a.pool_dtype = pool;
      a.block_tables = tables.data_ptr<int32_t>(), a.lengths = lengths.data_ptr<int64_t>();
      a.max_blocks = 5, a.block_size = bs, a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.D = D;
      a.out = out.data_ptr<float>();
      if (cpu::isa() == cpu::Isa::none) {  // R1_CPU_ISA=none: the kernel refuses; forward_paged takes ATen
        CHECK_THROWS_WITH(cpu::decode_attention(a), doctest::Contains("needs AVX2+FMA"));
        CHECK_FALSE(cpu::decode_attention_supports(D));
        continue;
      }
      cpu::decode_attention(a);
      double worst = 0;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = len[b], t = n - 1;
        const int64_t blk = tables[b][t / bs].item<int64_t>();
        k_ref[blk][t % bs].copy_(k[b]), v_ref[blk][t % bs].copy_(v[b]);  // rounded as .to(pool) rounds
        // the new key and value went to their slot (RoPE at position 0 and no norm: unchanged)
        CHECK((kp[blk][t % bs] - k_ref[blk][t % bs]).abs().max().item<double>() == 0);
        CHECK((vp[blk][t % bs] - v_ref[blk][t % bs]).abs().max().item<double>() == 0);
        std::vector<at::Tensor> ks, vs;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t bj = tables[b][j / bs].item<int64_t>();
          ks.push_back(k_ref[bj][j % bs]), vs.push_back(v_ref[bj][j % bs]);  // [Hkv, D]
        }
        at::Tensor K = at::stack(ks, 1).repeat_interleave(Hq / Hkv, 0).to(at::kFloat),
                   Vv = at::stack(vs, 1).repeat_interleave(Hq / Hkv, 0).to(at::kFloat);
        at::Tensor att =
            (at::matmul(q[b].unsqueeze(1), K.transpose(1, 2)) / std::sqrt(static_cast<double>(D))).softmax(-1);
        at::Tensor ref = at::matmul(att, Vv).squeeze(1);  // [Hq, D]
        worst = std::max(worst, (out[b] - ref).abs().max().item<double>());
      }
      CHECK(worst <= 1e-5);
    }
}

TEST_CASE(
    "KV block accounting: 10k sequences with shared prompts leave nothing behind; use = sum of lengths in blocks") {
  ModelConfig c;
  c.num_hidden_layers = 1, c.num_key_value_heads = 1, c.head_dim = 4;
  std::mt19937 rng(7);
  for (int64_t bs : {1, 4, 16}) {
    CAPTURE(bs);
    PagedKVCache cache(c, {.blocks = 4096, .block_size = bs}, at::TensorOptions().dtype(at::kFloat));
    struct Live {
      std::vector<BlockTable> samples;
      int64_t prompt;
    };
    std::vector<Live> live;
    int64_t sequences = 0;
    std::vector<int64_t> slots;
    while (sequences < 10000 || !live.empty()) {
      if (sequences < 10000 && live.size() < 24) {  // a prompt of 1..40 tokens and its 1..8 samples
        BlockTable p;
        const int64_t P = 1 + rng() % 40, n = 1 + rng() % 8;
        cache.append(p, P, slots);
        Live g{{}, P};
        for (int64_t j = 0; j < n; ++j) g.samples.push_back(cache.fork(p));
        cache.release(p);
        live.push_back(std::move(g));
        sequences += n;
      }
      for (auto& g : live)  // every sample grows by 0..3 tokens; some finish
        for (auto& t : g.samples) {
          cache.append(t, rng() % 4, slots);
          if (rng() % 23 == 0) cache.release(t);
        }
      for (auto& g : live) std::erase_if(g.samples, [](const BlockTable& t) { return t.blocks.empty(); });
      std::erase_if(live, [](const Live& g) { return g.samples.empty(); });
      // In use: each group's full prompt blocks that every live sample still shares once, the rest per sample.
      std::set<int32_t> distinct;
      int64_t sum = 0;
      for (const auto& g : live)
        for (const auto& t : g.samples) {
          distinct.insert(t.blocks.begin(), t.blocks.end());
          sum += cache.blocks_for(t.length);
        }
      REQUIRE(cache.allocator().used() == static_cast<int64_t>(distinct.size()));
      REQUIRE(cache.allocator().used() <= sum);
      for (const auto& g : live)  // a shared block is a full prompt block, or a partial one nobody wrote past
        for (const auto& t : g.samples)
          for (size_t j = 0; j < t.blocks.size(); ++j)
            if (cache.allocator().refcount(t.blocks[j]) > 1) REQUIRE(static_cast<int64_t>(j) * bs < g.prompt);
    }
    CHECK(cache.allocator().used() == 0);
    CHECK(cache.allocator().free() == 4096);
  }
}

TEST_CASE("oneDNN linear equals at::linear, values and gradients, and steps aside when it does not apply") {
  at::manual_seed(9);
  at::Tensor x = at::randn({3, 70, 96}).requires_grad_(true);  // 210 rows
  at::Tensor w = (at::randn({40, 96}) * 0.1).requires_grad_(true), b = at::randn({40}).requires_grad_(true);
  at::Tensor g = at::randn({3, 70, 40});
  MESSAGE("oneDNN linear applies on this CPU: " << onednn::linear_applies(x, w));
  at::Tensor y = cpu::linear(x, w, b), ref = at::linear(x, w, b);
  CHECK(y.sizes() == ref.sizes());
  CHECK((y - ref).abs().max().item<double>() <= 1e-4);
  auto ga = torch::autograd::grad({y}, {x, w, b}, {g});
  auto gb = torch::autograd::grad({ref}, {x, w, b}, {g});
  for (size_t i = 0; i < 3; ++i) CHECK((ga[i] - gb[i]).abs().max().item<double>() <= 1e-3);  // sums over 210 rows
  {
    at::NoGradGuard ng;
    CHECK((cpu::linear(x, w, {}) - at::linear(x, w)).abs().max().item<double>() <= 1e-4);
  }
  if (onednn::linear_applies(x, w)) {
    CHECK(!onednn::linear_applies(at::randn({63, 96}), w));  // few rows: MKL or r1's kernel
    CHECK(!onednn::linear_applies(x.to(at::kDouble), w.to(at::kDouble)));
  }
}

TEST_CASE("pin_cpu_threads: a thread keeps its count when another thread sets its own") {
  std::mutex mu;
  std::condition_variable cv;
  int stage = 0;
  int seen = 0;
  std::thread a([&] {
    pin_cpu_threads(2);
    {
      std::lock_guard<std::mutex> l(mu);
      stage = 1;
    }
    cv.notify_all();
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return stage == 2; });
    at::parallel_for(0, 1 << 20, 1024, [](int64_t, int64_t) {});  // a lazy first parallel region in this thread
    at::zeros({1 << 17}).add_(1.0);
    seen = at::get_num_threads();
  });
  std::thread b([&] {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return stage == 1; });
    pin_cpu_threads(1);
    CHECK(at::get_num_threads() == 1);
    stage = 2;
    cv.notify_all();
  });
  a.join(), b.join();
  CHECK(seen == 2);
}

TEST_CASE("without AVX2 (or with R1_CPU_ISA=none) the few-row GEMM steps aside and ATen does the work") {
  at::NoGradGuard ng;
  const bool none = std::string(cpu::small_linear_isa()) == "none";
  CHECK(cpu::small_linear_applies(at::randn({2, 32}), at::randn({5, 32})) == !none);
  CHECK(cpu::linear(at::randn({2, 32}), at::randn({5, 32}), {}).sizes() == at::IntArrayRef({2, 5}));
}

TEST_CASE("the few-row weight-streaming GEMM equals at::linear, and steps aside when it does not apply" *
          doctest::skip(std::string(cpu::small_linear_isa()) == "none")) {  // the case above covers "none"
  at::manual_seed(5);
  at::NoGradGuard ng;
  MESSAGE("few-row GEMM kernel: " << std::string(cpu::small_linear_isa()));
  for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16})
    for (int64_t n : {1, 6, 37, 64}) {
      CAPTURE(rows);
      CAPTURE(n);
      at::Tensor x = at::randn({rows, 48}), w = at::randn({n, 48}), b = at::randn({n});
      CHECK(cpu::small_linear_applies(x, w));
      CHECK((cpu::small_linear(x, w, b) - at::linear(x, w, b)).abs().max().item<double>() <= 1e-4);
      CHECK((cpu::small_linear(x, w, {}) - at::linear(x, w)).abs().max().item<double>() <= 1e-4);
    }
  at::Tensor x3 = at::randn({2, 3, 32}), w = at::randn({5, 32});
  CHECK(cpu::linear(x3, w, {}).sizes() == at::IntArrayRef({2, 3, 5}));
  CHECK(!cpu::small_linear_applies(at::randn({17, 32}), w));  // many rows, small weights: MKL
  // Up to 64 rows for weights of >= 1 MiB (multi-threaded over weight groups), and the same result.
  at::Tensor big = at::randn({2100, 128}) * 0.1, bb = at::randn({2100});
  for (int64_t rows : {17, 33, 64}) {
    CAPTURE(rows);
    at::Tensor x = at::randn({rows, 128});
    CHECK(cpu::small_linear_applies(x, big));
    CHECK((cpu::small_linear(x, big, bb) - at::linear(x, big, bb)).abs().max().item<double>() <= 1e-4);
  }
  CHECK(!cpu::small_linear_applies(at::randn({65, 128}), big));
  // bfloat16 weights, widened as they stream: a float32 x gives the float32 GEMM of the widened
  // weights; a bfloat16 x gives a bfloat16 y; beyond 16 rows the kernel steps aside.
  for (int64_t rows : {1, 5, 16}) {
    CAPTURE(rows);
    at::Tensor x = at::randn({rows, 128}), wb = big.to(at::kBFloat16), bb16 = bb.to(at::kBFloat16);
    const at::Tensor ref = at::linear(x, wb.to(at::kFloat), bb16.to(at::kFloat));
    CHECK(cpu::small_linear_applies(x, wb));
    CHECK((cpu::small_linear(x, wb, bb16) - ref).abs().max().item<double>() <= 1e-4);
    CHECK((cpu::linear(x, wb, bb16) - ref).abs().max().item<double>() <= 1e-4);
    const at::Tensor yb = cpu::small_linear(x.to(at::kBFloat16), wb, bb16);
    CHECK((yb.scalar_type() == at::kBFloat16) == true);
    const at::Tensor ref_b = at::linear(x.to(at::kBFloat16).to(at::kFloat), wb.to(at::kFloat), bb16.to(at::kFloat));
    CHECK((yb.to(at::kFloat) - ref_b).abs().max().item<double>() <= 2e-2 * ref_b.abs().max().item<double>());
  }
  at::Tensor x33 = at::randn({33, 128});
  CHECK(!cpu::small_linear_applies(x33, big.to(at::kBFloat16)));
  // cpu::linear of a float32 x and bfloat16 w beyond 16 rows: ATen's bfloat16 GEMM, float32 out.
  const at::Tensor y33 = cpu::linear(x33, big.to(at::kBFloat16), {});
  CHECK((y33.scalar_type() == at::kFloat) == true);
  const at::Tensor ref33 = at::linear(x33, big.to(at::kBFloat16).to(at::kFloat));
  CHECK((y33 - ref33).abs().max().item<double>() <= 2e-2 * ref33.abs().max().item<double>());
  CHECK(!cpu::small_linear_applies(at::randn({2, 40}), at::randn({5, 40})));  // K % 16 != 0
  CHECK(!cpu::small_linear_applies(x3.to(at::kDouble), w.to(at::kDouble)));
  {
    at::AutoGradMode grad(true);
    at::Tensor wg = w.clone().requires_grad_(true);
    CHECK(!cpu::small_linear_applies(x3, wg));  // training keeps autograd's linear
    CHECK(cpu::linear(x3, wg, {}).requires_grad());
  }
}

TEST_CASE("chunked token log-probs and entropies equal the dense log_softmax, with gradients") {
  at::manual_seed(3);
  for (auto [N, chunk] : {std::pair<int64_t, int64_t>{37, 8}, {150, 64}})  // 64+ rows: oneDNN GEMMs on AVX-512
    for (double temp : {1.0, 0.7}) {
      CAPTURE(N);
      at::Tensor h = at::randn({N, 16}, at::kFloat).requires_grad_(true);
      at::Tensor w = (at::randn({80, 16}, at::kFloat) * 0.5).requires_grad_(true);
      at::Tensor tgt = at::randint(0, 80, {N}, at::kLong);
      at::Tensor g1 = at::randn({N}), g2 = at::randn({N});
      LogprobOptions o{.temperature = temp, .chunk_rows = chunk, .entropy = true};
      auto a = token_logprobs(h, w, tgt, o);
      auto gha = torch::autograd::grad({a.logprobs, a.entropy}, {h, w}, {g1, g2});
      auto b = token_logprobs_dense(h, w, tgt, o);
      auto ghb = torch::autograd::grad({b.logprobs, b.entropy}, {h, w}, {g1, g2});
      CHECK((a.logprobs - b.logprobs).abs().max().item<double>() <= 1e-5);
      CHECK((a.entropy - b.entropy).abs().max().item<double>() <= 1e-5);
      CHECK((gha[0] - ghb[0]).abs().max().item<double>() <= 1e-5);
      CHECK((gha[1] - ghb[1]).abs().max().item<double>() <= 1e-5);
    }
}

TEST_CASE("model log-probs through the lm_head match log_softmax of the logits") {
  at::NoGradGuard ng;
  CausalLM m = load_f32(model_dir("qwen2"));
  Parity p = parity("qwen2");
  at::Tensor h = m->hidden({p.ids.narrow(0, 0, 1)}).squeeze(0);  // [T, H]
  at::Tensor tgt = p.ids[0].roll(-1);
  auto lp = token_logprobs(h, m->lm_head_weight(), tgt);
  at::Tensor ref = at::log_softmax(m->logits(h), -1).gather(1, tgt.unsqueeze(1)).squeeze(1);
  CHECK((lp.logprobs - ref).abs().max().item<double>() <= 1e-5);
}

TEST_CASE("save -> load is bit-identical, single file and sharded; transformers can read what r1 saves") {
  for (const auto& name : kModels) {
    CAPTURE(name);
    auto dtype = name.find("bf16") != std::string::npos ? at::kBFloat16 : at::kFloat;
    CausalLM a = load_pretrained(model_dir(name), at::TensorOptions().dtype(dtype));
    fs::path saved = test::binary_dir() / "tests" / "saved" / name;  // verify with make_policy_fixtures.py verify
    save_pretrained(a, saved);
    CHECK(fs::exists(saved / "config.json"));
    CausalLM b = load_pretrained(saved, at::TensorOptions().dtype(dtype));
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (auto& x : pa) CHECK(x.value().equal(pb[x.key()]));

    fs::path sharded = scratch(name + "-sharded");
    save_pretrained(a, sharded, {.max_shard_bytes = 20000});
    CHECK(fs::exists(sharded / "model.safetensors.index.json"));
    CausalLM c = load_pretrained(sharded, at::TensorOptions().dtype(dtype));
    for (auto& x : c->named_parameters()) CHECK(x.value().equal(pa[x.key()]));

    // Saving what was loaded gives the same bytes.
    fs::path again = scratch(name + "-again");
    save_pretrained(b, again);
    CHECK(read_file(saved / "model.safetensors") == read_file(again / "model.safetensors"));
  }
}

TEST_CASE("bf16 checkpoints load as float32 and as bf16") {
  CausalLM f = load_pretrained(model_dir("qwen3-bf16-sharded"), at::TensorOptions().dtype(at::kFloat));
  CausalLM b = load_pretrained(model_dir("qwen3-bf16-sharded"), at::TensorOptions().dtype(at::kBFloat16));
  auto pb = b->named_parameters();
  for (auto& x : f->named_parameters()) {
    CHECK((x.value().scalar_type() == at::kFloat));
    CHECK(x.value().equal(pb[x.key()].to(at::kFloat)));
  }
}

TEST_CASE("broken checkpoints give errors that name the tensor or file") {
  SafetensorsReader good(model_dir("qwen3"));
  std::vector<std::pair<std::string, at::Tensor>> all;
  for (const auto& [n, e] : good.entries()) all.emplace_back(n, good.get(n));

  SUBCASE("missing tensor") {
    fs::path d = copy_model("qwen3", "missing");
    auto some = all;
    some.erase(std::remove_if(some.begin(), some.end(),
                              [](auto& x) { return x.first == "model.layers.1.mlp.up_proj.weight"; }),
               some.end());
    save_safetensors(d, some);
    std::string e = error_of([&] { load_f32(d); });
    CHECK(e.find("model.layers.1.mlp.up_proj.weight") != std::string::npos);
    CHECK(e.find("missing") != std::string::npos);
  }
  SUBCASE("unexpected tensor") {
    fs::path d = copy_model("qwen3", "unexpected");
    auto more = all;
    more.emplace_back("model.layers.9.self_attn.q_proj.weight", at::zeros({2, 2}));
    save_safetensors(d, more);
    std::string e = error_of([&] { load_f32(d); });
    CHECK(e.find("model.layers.9.self_attn.q_proj.weight") != std::string::npos);
    CHECK(e.find("unexpected") != std::string::npos);
  }
  SUBCASE("wrong shape") {
    fs::path d = copy_model("qwen3", "shape");
    auto bad = all;
    for (auto& x : bad)
      if (x.first == "model.norm.weight") x.second = at::ones({65});
    save_safetensors(d, bad);
    std::string e = error_of([&] { load_f32(d); });
    CHECK(e.find("model.norm.weight") != std::string::npos);
    CHECK(e.find("shape 65") != std::string::npos);
  }
  SUBCASE("truncated file") {
    fs::path d = copy_model("qwen3", "truncated");
    fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") - 100);
    std::string e = error_of([&] { load_f32(d); });
    CHECK(e.find("truncated") != std::string::npos);
    CHECK(e.find("model.safetensors") != std::string::npos);
  }
  SUBCASE("garbage header") {
    fs::path d = copy_model("qwen3", "garbage");
    std::string bytes = read_file(d / "model.safetensors");
    for (size_t i = 8; i < 40; ++i) bytes[i] = '#';
    write_file_atomic(d / "model.safetensors", bytes);
    std::string e = error_of([&] { load_f32(d); });
    CHECK(e.find("invalid JSON") != std::string::npos);
  }
  SUBCASE("tiny file") {
    fs::path d = copy_model("qwen3", "tiny");
    write_file_atomic(d / "model.safetensors", "abc");
    CHECK(error_of([&] { load_f32(d); }).find("too short") != std::string::npos);
  }
  SUBCASE("shard listed in the index but absent") {
    fs::path d = copy_model("qwen3-bf16-sharded", "noshard");
    fs::remove(d / "model-00002-of-00004.safetensors");
    CHECK(error_of([&] { load_f32(d); }).find("model-00002-of-00004.safetensors") != std::string::npos);
  }
}

TEST_CASE("config.json: required keys, unsupported features, transformers 4 and 5 layouts") {
  auto base = json::parse(read_file(model_dir("llama") / "config.json"), "config.json").as_object();
  auto parse = [](boost::json::object o) { return ModelConfig::from_json(o, "config.json"); };
  ModelConfig c = parse(base);
  CHECK(c.rope_scaling.type == "llama3");
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.head_dim == 16);

  auto missing = base;
  missing.erase("num_key_value_heads");
  CHECK(error_of([&] { parse(missing); }).find("required key 'num_key_value_heads' is missing") != std::string::npos);

  auto yarn = base;
  yarn["rope_parameters"].as_object()["rope_type"] = "yarn";
  CHECK(error_of([&] { parse(yarn); }).find("rope type 'yarn' is not supported") != std::string::npos);

  auto mt = base;
  mt["model_type"] = "gpt2";
  CHECK(error_of([&] { parse(mt); }).find("model_type 'gpt2' is not supported") != std::string::npos);

  auto wrong = base;
  wrong["hidden_size"] = "96";
  CHECK(error_of([&] { parse(wrong); }).find("key 'hidden_size': expected an integer, got string") !=
        std::string::npos);

  // transformers 4 layout: rope_theta at top level, rope_scaling null, torch_dtype.
  auto v4 = base;
  v4.erase("rope_parameters");
  v4["rope_theta"] = 1e6;
  v4["rope_scaling"] = nullptr;
  v4.erase("dtype");
  v4["torch_dtype"] = "bfloat16";
  ModelConfig c4 = parse(v4);
  CHECK(c4.rope_theta == 1e6);
  CHECK(c4.rope_scaling.type == "default");
  CHECK(c4.dtype == "bfloat16");

  // Qwen2/Qwen2.5 configs as the Hub ships them (no attention_bias, no layer_types): q/k/v biases.
  auto qwen2 = json::parse(read_file(model_dir("qwen2") / "config.json"), "config.json").as_object();
  qwen2.erase("attention_bias");
  qwen2.erase("layer_types");
  ModelConfig q2 = parse(qwen2);
  CHECK(q2.qkv_bias);
  CHECK(!q2.o_bias);
  // Llama with layer_types (transformers 5) still reads attention_bias.
  auto lb = json::parse(read_file(model_dir("llama-bias") / "config.json"), "config.json").as_object();
  lb["layer_types"] = boost::json::array(static_cast<size_t>(lb["num_hidden_layers"].as_int64()), "full_attention");
  CHECK(parse(lb).qkv_bias == lb["attention_bias"].as_bool());

  auto sliding = json::parse(read_file(model_dir("qwen2") / "config.json"), "config.json").as_object();
  sliding["use_sliding_window"] = true;
  CHECK(error_of([&] { parse(sliding); }).find("use_sliding_window") != std::string::npos);
}
