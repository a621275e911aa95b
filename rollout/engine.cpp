#include "rollout/engine.hpp"

#include <algorithm>
#include <chrono>
#include <span>

#include "common/error.hpp"

namespace r1 {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Does the decoded tail of `tokens` end with (or newly contain) a stop string? Returns the byte
// offset in the full text just past the stop string, if any.
std::optional<size_t> find_stop(const Tokenizer& tok, const std::vector<TokenId>& tokens,
                                const std::vector<std::string>& stops, size_t max_stop_bytes) {
  // Each token is at least one byte, so the last max_stop_bytes + 4 tokens cover any new match.
  const size_t tail = std::min(tokens.size(), max_stop_bytes + 4);
  std::string recent = tok.decode(std::span<const TokenId>(tokens.data() + tokens.size() - tail, tail));
  for (const auto& s : stops)
    if (recent.find(s) != std::string::npos) {
      std::string full = tok.decode(tokens);
      size_t best = std::string::npos;
      for (const auto& s2 : stops) {
        size_t p = full.find(s2);
        if (p != std::string::npos) best = std::min(best, p + s2.size());
      }
      if (best != std::string::npos) return best;
    }
  return std::nullopt;
}

// A sample in flight: its cache, the token it feeds next, its budget.
struct Row {
  size_t out;  // into the completions
  int64_t request, sample;
  BlockTable kv;
  TokenId next = 0;  // sampled, not yet in the cache
  int64_t budget = 0;
  bool finished = false;
};

// A prompt being prefilled, `done` of its tokens in the cache.
struct Prefill {
  int64_t request;
  BlockTable kv;
  int64_t done = 0;
};

}  // namespace

struct GenerationRun::State {
  Engine& engine;
  PagedKVCache& cache;
  std::vector<GenerationRequest> reqs;
  SamplingOptions s;
  std::vector<size_t> offsets;  // [R + 1] first completion of each request
  std::vector<Completion> out;
  std::vector<bool> paused;
  size_t next = 0;  // first request not yet admitted
  std::vector<Prefill> prefilling;
  std::vector<Row> rows;  // running; a request's samples adjacent
  std::vector<int64_t> stop_ids;
  at::Tensor stop_ids_dev;  // [S] int64 on the model's device
  size_t max_stop_bytes = 0;
  std::unique_ptr<DecodeGraphs> graphs;  // fixed-shape decode steps (CUDA graphs), unless off

  int64_t budget(int64_t r) const { return reqs[r].max_new_tokens > 0 ? reqs[r].max_new_tokens : s.max_new_tokens; }
  // Blocks a request may still take: its prompt's, then each sample's own (a copied last prompt block included).
  int64_t worst_blocks(int64_t r) const {
    const auto P = static_cast<int64_t>(reqs[r].prompt.size());
    return cache.blocks_for(P) + reqs[r].n * (cache.blocks_for(P + budget(r)) - P / cache.block_size());
  }
  // Blocks that admitted work may still allocate.
  int64_t promised() const;
  // Sampled tokens [B] and log-probs [B] for logits [B, V], rows drawing from `keys`, with the
  // device's stop-token check; one copy to the host.
  std::vector<std::array<double, 3>> sample(const at::Tensor& logits, const std::vector<DrawKey>& keys);
  // [B] float32 on `device`; undefined when greedy.
  at::Tensor uniforms(const std::vector<DrawKey>& keys, const at::Device& device) const;
  // The decode step's device work on one batch: forward, logits, sampling (sample_packed).
  at::Tensor decode_step(const PagedInput& in, const at::Tensor& uniforms);
  void make_graphs(int64_t longest);
  // Records a sampled token; marks the row finished at a stop token, stop string or its budget.
  void accept(Row& row, TokenId t, float logprob, bool stop_token);
  void spawn(Prefill& p, const at::Tensor& last_hidden);  // the prompt's n samples, their first tokens
  void finish_text(Completion& c) const;
};

int64_t GenerationRun::State::promised() const {
  int64_t n = 0;
  for (const auto& r : rows) {
    if (r.finished) continue;
    const auto P = static_cast<int64_t>(reqs[r.request].prompt.size());
    const bool copy = r.kv.length % cache.block_size() != 0 && cache.allocator().refcount(r.kv.blocks.back()) > 1;
    n += cache.blocks_for(P + r.budget) - static_cast<int64_t>(r.kv.blocks.size()) + (copy ? 1 : 0);
  }
  for (const auto& p : prefilling) n += worst_blocks(p.request) - static_cast<int64_t>(p.kv.blocks.size());
  return n;
}

std::vector<std::array<double, 3>> GenerationRun::State::sample(const at::Tensor& logits,
                                                                const std::vector<DrawKey>& keys) {
  return packed_rows(sample_packed(logits, s, uniforms(keys, logits.device()), stop_ids_dev), logits.size(0));
}

at::Tensor GenerationRun::State::uniforms(const std::vector<DrawKey>& keys, const at::Device& device) const {
  if (s.temperature == 0) return {};
  const at::Tensor u = philox_uniforms(static_cast<uint64_t>(s.seed), keys);
  return device.is_cpu() ? u : u.to(device, /*non_blocking=*/true);
}

at::Tensor GenerationRun::State::decode_step(const PagedInput& in, const at::Tensor& u) {
  CausalLM& m = engine.model_;
  at::Tensor h = m->forward_paged(in, cache).squeeze(1);  // [B, H]
  return sample_packed(m->logits(h), s, u, stop_ids_dev);
}

void GenerationRun::State::make_graphs(int64_t longest) {
  const EngineOptions& eo = engine.options_;
  const at::Device device = engine.model_->options().device();
  if (eo.graphs == DecodeGraphMode::off || (eo.graphs == DecodeGraphMode::cuda && !device.is_cuda())) return;
  // The tables' width covers the longest sequence of this run: every step attends over that many slots.
  graphs =
      std::make_unique<DecodeGraphs>(eo.graphs, device, eo.max_batch, cache.blocks_for(longest), cache.block_size(),
                                     [this](const PagedInput& in, const at::Tensor& u) { return decode_step(in, u); });
}

void GenerationRun::State::accept(Row& row, TokenId t, float logprob, bool stop_token) {
  Completion& c = out[row.out];
  const auto& forced = reqs[row.request].forced_stop;
  if (!forced.empty() && static_cast<int64_t>(c.tokens.size()) + 1 == forced[row.sample])
    t = static_cast<TokenId>(engine.model_->config().eos_token_ids.at(0)), stop_token = true;
  c.tokens.push_back(t);
  c.logprobs.push_back(logprob);
  row.next = t;
  if (stop_token) {
    c.finish_reason = FinishReason::stop, row.finished = true;
  } else if (!s.stop.empty()) {
    if (auto end = find_stop(*engine.tokenizer_, c.tokens, s.stop, max_stop_bytes)) {
      c.text = engine.tokenizer_->decode(c.tokens);
      c.text.resize(*end);
      if (!s.include_stop_str)
        for (const auto& st : s.stop)
          if (c.text.size() >= st.size() && c.text.compare(c.text.size() - st.size(), st.size(), st) == 0) {
            c.text.resize(c.text.size() - st.size());
            break;
          }
      c.finish_reason = FinishReason::stop, row.finished = true;
    }
  }
  if (!row.finished && static_cast<int64_t>(c.tokens.size()) >= row.budget) row.finished = true;
}

void GenerationRun::State::spawn(Prefill& p, const at::Tensor& last_hidden) {
  const GenerationRequest& req = reqs[p.request];
  at::Tensor logits = engine.model_->logits(last_hidden.unsqueeze(0)).expand({req.n, -1});  // [n, V]
  std::vector<DrawKey> keys;
  for (int64_t j = 0; j < req.n; ++j) keys.push_back({req.stream, static_cast<uint64_t>(j), 0});
  const auto drawn = sample(logits, keys);
  for (int64_t j = 0; j < req.n; ++j) {
    Row row{offsets[p.request] + j, p.request, j, cache.fork(p.kv)};
    row.budget = budget(p.request);
    out[row.out].request = p.request, out[row.out].sample = j;
    accept(row, static_cast<TokenId>(drawn[j][0]), static_cast<float>(drawn[j][1]), drawn[j][2] != 0);
    rows.push_back(std::move(row));
  }
  cache.release(p.kv);
}

void GenerationRun::State::finish_text(Completion& c) const {
  if (!engine.tokenizer_ || !c.text.empty()) return;
  std::span<const TokenId> toks(c.tokens);
  if (c.finish_reason == FinishReason::stop && !toks.empty() &&
      std::find(stop_ids.begin(), stop_ids.end(), toks.back()) != stop_ids.end())
    toks = toks.first(toks.size() - 1);
  c.text = engine.tokenizer_->decode(toks);
}

GenerationRun::GenerationRun(Engine& engine, std::vector<GenerationRequest> requests, SamplingOptions sampling) {
  R1_CHECK(sampling.stop.empty() || engine.tokenizer_, "stop strings need a tokenizer");
  const int64_t vocab = engine.model_->config().vocab_size;
  std::vector<size_t> offsets(requests.size() + 1, 0);
  const int64_t bs = engine.options_.block_size;
  auto blocks = [bs](int64_t tokens) { return (tokens + bs - 1) / bs; };
  int64_t longest = 0, largest = 0;  // tokens of the longest sequence, blocks of the largest request
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    R1_CHECK(!r.prompt.empty(), "request {}: empty prompt", i);
    R1_CHECK(r.n >= 1 && r.n <= engine.options_.max_batch, "request {}: n = {} must be in [1, max_batch = {}]", i, r.n,
             engine.options_.max_batch);
    R1_CHECK(r.max_new_tokens >= 0, "request {}: max_new_tokens = {}", i, r.max_new_tokens);
    R1_CHECK(r.forced_stop.empty() || static_cast<int64_t>(r.forced_stop.size()) == r.n,
             "request {}: forced_stop needs one length per sample", i);
    for (size_t t = 0; t < r.prompt.size(); ++t)
      R1_CHECK(r.prompt[t] >= 0 && r.prompt[t] < vocab, "request {}: token {} = {} is outside the vocabulary [0, {})",
               i, t, r.prompt[t], vocab);
    offsets[i + 1] = offsets[i] + static_cast<size_t>(r.n);
    const auto P = static_cast<int64_t>(r.prompt.size());
    const int64_t M = r.max_new_tokens > 0 ? r.max_new_tokens : sampling.max_new_tokens;
    longest = std::max(longest, P + M);
    largest = std::max(largest, blocks(P) + r.n * (blocks(P + M) - P / bs));
  }
  PagedKVCache& cache = engine.cache_for(std::max(engine.options_.max_batch * blocks(longest), largest));
  s_ = std::unique_ptr<State>(new State{engine, cache, std::move(requests), std::move(sampling)});
  s_->offsets = std::move(offsets);
  s_->out.resize(s_->offsets.back());
  s_->paused.assign(s_->reqs.size(), false);
  s_->stop_ids = s_->s.stop_token_ids;
  if (!s_->s.ignore_eos)
    for (auto e : engine.model_->config().eos_token_ids) s_->stop_ids.push_back(e);
  s_->stop_ids_dev = at::tensor(s_->stop_ids, at::kLong).to(engine.model_->options().device());
  for (const auto& st : s_->s.stop) s_->max_stop_bytes = std::max(s_->max_stop_bytes, st.size());
  s_->make_graphs(longest);
  cache.allocator().reset_peak();
}

GenerationRun::GenerationRun(GenerationRun&&) noexcept = default;

GenerationRun::~GenerationRun() {
  if (!s_) return;
  for (auto& p : s_->prefilling) s_->cache.release(p.kv);
  for (auto& r : s_->rows) s_->cache.release(r.kv);
}

bool GenerationRun::done() const { return s_->next == s_->reqs.size() && s_->prefilling.empty() && s_->rows.empty(); }

void GenerationRun::pause(int64_t request) {
  R1_CHECK(request >= 0 && request < static_cast<int64_t>(s_->reqs.size()), "pause: no request {}", request);
  s_->paused[request] = true;
}

void GenerationRun::resume(int64_t request) {
  R1_CHECK(request >= 0 && request < static_cast<int64_t>(s_->reqs.size()), "resume: no request {}", request);
  s_->paused[request] = false;
}

void GenerationRun::step() {
  at::NoGradGuard no_grad;
  admit();
  prefill();
  decode();
  retire();
  EngineStats& st = s_->engine.stats_;
  st.kv_peak_blocks = std::max(st.kv_peak_blocks, s_->cache.allocator().peak_used());
}

std::vector<Completion> GenerationRun::take() {
  R1_CHECK(done(), "generation: take() before every request finished");
  return std::move(s_->out);
}

void GenerationRun::admit() {
  State& s = *s_;
  if (s.engine.options_.schedule == Schedule::drained && (!s.rows.empty() || !s.prefilling.empty())) return;
  int64_t live = static_cast<int64_t>(s.rows.size());
  for (const auto& p : s.prefilling) live += s.reqs[p.request].n;
  int64_t promised = s.promised();
  while (s.next < s.reqs.size()) {
    const auto r = static_cast<int64_t>(s.next);
    const int64_t need = s.worst_blocks(r);
    if (live + s.reqs[r].n > s.engine.options_.max_batch) break;
    if (need > s.cache.allocator().free() - promised) {
      R1_CHECK(live > 0, "generation: request {} needs up to {} KV blocks, the cache has {} (raise kv_blocks)", r, need,
               s.cache.allocator().capacity());
      break;
    }
    s.prefilling.push_back({r, {}, 0});
    live += s.reqs[r].n, promised += need, ++s.next;
  }
}

void GenerationRun::prefill() {
  State& s = *s_;
  auto t0 = Clock::now();
  int64_t budget = s.engine.options_.prefill_tokens;
  // Chunks of this step: prompts already started (with past keys) in one call, new ones in another.
  for (bool fresh : {false, true}) {
    std::vector<std::pair<Prefill*, int64_t>> chunks;  // (prompt, tokens this call)
    for (auto& p : s.prefilling) {
      if (budget <= 0) break;
      if (s.paused[p.request] || (p.done == 0) != fresh) continue;
      const int64_t n = std::min(static_cast<int64_t>(s.reqs[p.request].prompt.size()) - p.done, budget);
      chunks.push_back({&p, n});
      budget -= n;
    }
    if (chunks.empty()) continue;
    PagedBatch pb;
    for (const auto& [p, n] : chunks) {
      const auto& prompt = s.reqs[p->request].prompt;
      pb.add(s.cache, p->kv, std::vector<int64_t>(prompt.begin() + p->done, prompt.begin() + p->done + n));
    }
    at::Tensor h = s.engine.model_->forward_paged(pb.to(s.engine.model_->options().device()), s.cache);
    for (size_t b = 0; b < chunks.size(); ++b) {
      auto [p, n] = chunks[b];
      p->done += n;
      if (p->done == static_cast<int64_t>(s.reqs[p->request].prompt.size())) s.spawn(*p, h[b][n - 1]);
    }
    s.engine.stats_.prefill_tokens += pb.width() * pb.rows();
    ++s.engine.stats_.prefill_calls;
  }
  std::erase_if(s.prefilling, [](const Prefill& p) { return p.kv.blocks.empty() && p.done > 0; });
  s.engine.stats_.prefill_seconds += seconds_since(t0);
}

void GenerationRun::decode() {
  State& s = *s_;
  std::vector<Row*> active;
  for (auto& r : s.rows)
    if (!r.finished && !s.paused[r.request]) active.push_back(&r);
  if (active.empty()) return;
  auto t0 = Clock::now();
  PagedBatch pb;
  std::vector<DrawKey> keys;
  for (Row* r : active) {
    pb.add(s.cache, r->kv, {r->next});
    keys.push_back({s.reqs[r->request].stream, static_cast<uint64_t>(r->sample), s.out[r->out].tokens.size()});
  }
  std::vector<std::array<double, 3>> drawn;
  if (s.graphs) {
    const int64_t before = s.graphs->captured();
    drawn = s.graphs->run(pb, s.uniforms(keys, at::kCPU));
    s.engine.stats_.graphs_captured += s.graphs->captured() - before;
  } else {
    const at::Device device = s.engine.model_->options().device();
    drawn = packed_rows(s.decode_step(pb.to(device), s.uniforms(keys, device)), pb.rows());
  }
  for (size_t b = 0; b < active.size(); ++b)
    s.accept(*active[b], static_cast<TokenId>(drawn[b][0]), static_cast<float>(drawn[b][1]), drawn[b][2] != 0);
  EngineStats& st = s.engine.stats_;
  ++st.decode_steps;
  st.decode_tokens += static_cast<int64_t>(active.size());
  st.decode_seconds += seconds_since(t0);
}

void GenerationRun::retire() {
  State& s = *s_;
  for (auto& r : s.rows)
    if (r.finished) {
      s.finish_text(s.out[r.out]);
      s.cache.release(r.kv);
    }
  std::erase_if(s.rows, [](const Row& r) { return r.finished; });
}

Engine::Engine(CausalLM model, const Tokenizer* tokenizer, EngineOptions options)
    : model_(std::move(model)), tokenizer_(tokenizer), options_(options) {
  R1_CHECK(options_.max_batch >= 1, "engine: max_batch must be >= 1");
  R1_CHECK(options_.block_size >= 1 && options_.kv_blocks >= 0 && options_.prefill_tokens >= 1,
           "engine: block_size and prefill_tokens must be >= 1 and kv_blocks >= 0");
  if (tokenizer_) model_->ban_ids_without_token(*tokenizer_);                         // every sampled id decodes
  log_sdpa_calls(model_->config(), model_->options(), options_.max_batch, 256, 512);  // on GPUs: kernels per call
}

Engine::~Engine() = default;

PagedKVCache& Engine::cache_for(int64_t blocks) {
  if (options_.kv_blocks > 0) blocks = options_.kv_blocks;
  if (!cache_ || cache_->allocator().capacity() < blocks) {
    cache_.reset();  // the old pool goes before the new one comes
    cache_.emplace(model_->config(), PagedKVOptions{blocks, options_.block_size}, model_->options());
    stats_.kv_block_bytes = cache_->bytes_per_block();
    stats_.kv_capacity_blocks = blocks;
  }
  return *cache_;
}

EngineOptions engine_options(const RolloutOptions& o) {
  return {.max_batch = o.max_batch,
          .block_size = o.kv_block_size,
          .kv_blocks = o.kv_blocks,
          .prefill_tokens = o.prefill_tokens,
          .graphs = o.cuda_graphs ? DecodeGraphMode::cuda : DecodeGraphMode::off};
}

GenerationRun Engine::start(const std::vector<GenerationRequest>& requests, const SamplingOptions& sampling) {
  return GenerationRun(*this, requests, sampling);
}

std::vector<Completion> Engine::generate(const std::vector<GenerationRequest>& requests, const SamplingOptions& s) {
  GenerationRun run = start(requests, s);
  while (!run.done()) run.step();
  return run.take();
}

}  // namespace r1
