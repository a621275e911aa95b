#include "rollout/engine.hpp"

#include <algorithm>
#include <chrono>

#include "common/error.hpp"

namespace r1 {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Per-row decoding state of one sequence in flight.
struct Row {
  size_t out_index;  // into the output vector
  SequenceRng rng;
  int64_t position;  // RoPE position of the next token
};

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

}  // namespace

Engine::Engine(CausalLM model, const Tokenizer* tokenizer, EngineOptions options)
    : model_(std::move(model)), tokenizer_(tokenizer), options_(options) {
  R1_CHECK(options_.max_batch >= 1, "engine: max_batch must be >= 1");
  if (tokenizer_) model_->ban_ids_without_token(*tokenizer_);  // every sampled id decodes
}

std::vector<Completion> Engine::generate(const std::vector<GenerationRequest>& requests, const SamplingOptions& s) {
  R1_CHECK(s.stop.empty() || tokenizer_, "stop strings need a tokenizer");
  std::vector<size_t> offsets(requests.size() + 1, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    R1_CHECK(!requests[i].prompt.empty(), "request {}: empty prompt", i);
    R1_CHECK(requests[i].n >= 1 && requests[i].n <= options_.max_batch,
             "request {}: n = {} must be in [1, max_batch = {}]", i, requests[i].n, options_.max_batch);
    offsets[i + 1] = offsets[i] + static_cast<size_t>(requests[i].n);
  }
  std::vector<Completion> out(offsets.back());
  // Pack whole requests into batches of at most max_batch sequences.
  size_t first = 0;
  while (first < requests.size()) {
    size_t count = 0, rows = 0;
    while (first + count < requests.size() &&
           rows + requests[first + count].n <= static_cast<size_t>(options_.max_batch))
      rows += requests[first + count++].n;
    run_batch(requests, first, count, s, out, offsets);
    first += count;
  }
  return out;
}

void Engine::run_batch(const std::vector<GenerationRequest>& requests, size_t first, size_t count,
                       const SamplingOptions& s, std::vector<Completion>& out, const std::vector<size_t>& offsets) {
  at::NoGradGuard no_grad;
  const auto dev = model_->options().device();
  const int64_t vocab = model_->config().vocab_size;
  const int64_t R = static_cast<int64_t>(count);
  int64_t P = 0;
  for (size_t i = first; i < first + count; ++i) P = std::max<int64_t>(P, requests[i].prompt.size());
  const int64_t S = P + s.max_new_tokens;

  std::vector<int64_t> stop_ids = s.stop_token_ids;
  if (!s.ignore_eos)
    for (auto e : model_->config().eos_token_ids) stop_ids.push_back(e);
  size_t max_stop_bytes = 0;
  for (const auto& st : s.stop) max_stop_bytes = std::max(max_stop_bytes, st.size());

  // Prefill the distinct prompts, left-padded: ids [R, P], validity [R, S], positions [R, P].
  at::Tensor ids = at::zeros({R, P}, at::kLong), valid = at::zeros({R, S}, at::kBool),
             pos = at::zeros({R, P}, at::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto pos_a = pos.accessor<int64_t, 2>();
  for (int64_t r = 0; r < R; ++r) {
    const auto& p = requests[first + r].prompt;
    const int64_t len = static_cast<int64_t>(p.size()), pad = P - len;
    for (int64_t t = 0; t < len; ++t) {
      R1_CHECK(p[t] >= 0 && p[t] < vocab, "request {}: token {} = {} is outside the vocabulary [0, {})", first + r, t,
               p[t], vocab);
      ids_a[r][pad + t] = p[t];
      pos_a[r][pad + t] = t;
    }
    valid[r].narrow(0, pad, len).fill_(true);
    valid[r].narrow(0, P, s.max_new_tokens).fill_(true);
  }
  auto t0 = Clock::now();
  // The fused CPU decode reads each prompt's keys once for all its samples (a shared prefix); other
  // paths get every sample's own copy of the prompt's cache rows.
  const bool share = model_->fused_decode_available() && s.max_new_tokens >= 1;
  KVCache cache = KVCache::allocate(model_->config(), R, share ? P : S, model_->options());
  at::Tensor h = model_->hidden({ids.to(dev), pos.to(dev), causal_mask(valid.narrow(1, 0, P).to(dev), P)}, &cache);
  at::Tensor last = h.select(1, P - 1);  // [R, H]
  stats_.prefill_tokens += R * P;

  // Expand each prompt to its n samples: cache rows, validity, last hidden state.
  std::vector<int64_t> expand;
  std::vector<Row> rows;
  for (int64_t r = 0; r < R; ++r) {
    const auto& req = requests[first + r];
    for (int64_t j = 0; j < req.n; ++j) {
      expand.push_back(r);
      size_t oi = offsets[first + r] + j;
      out[oi].request = static_cast<int64_t>(first + r);
      out[oi].sample = j;
      rows.push_back({oi, SequenceRng(static_cast<uint64_t>(s.seed), req.stream, static_cast<uint64_t>(j)),
                      static_cast<int64_t>(req.prompt.size())});
    }
  }
  at::Tensor sel = at::tensor(expand, at::kLong).to(dev);
  if (share)
    cache = cache.share_prefix(sel, s.max_new_tokens);
  else
    cache.select_rows(sel);
  valid = valid.to(dev).index_select(0, sel);
  last = last.index_select(0, sel);
  stats_.prefill_seconds += seconds_since(t0);

  auto t1 = Clock::now();
  int64_t finished_since_compaction = 0;
  std::vector<bool> done(rows.size(), false);
  for (int64_t step = 0; step < s.max_new_tokens; ++step) {
    std::vector<SequenceRng*> rngs;
    for (auto& r : rows) rngs.push_back(&r.rng);
    SampledTokens st = sample_tokens(model_->logits(last), s, rngs);
    at::Tensor tok_cpu = st.tokens.to(at::kCPU), lp_cpu = st.logprobs.to(at::kCPU);
    auto tok_a = tok_cpu.accessor<int64_t, 1>();
    auto lp_a = lp_cpu.accessor<float, 1>();
    ++stats_.decode_steps;
    stats_.decode_tokens += static_cast<int64_t>(rows.size());
    for (size_t b = 0; b < rows.size(); ++b) {
      if (done[b]) continue;
      Completion& c = out[rows[b].out_index];
      const TokenId t = static_cast<TokenId>(tok_a[b]);
      c.tokens.push_back(t);
      c.logprobs.push_back(lp_a[b]);
      bool stopped = false;
      if (std::find(stop_ids.begin(), stop_ids.end(), t) != stop_ids.end()) {
        stopped = true;
      } else if (!s.stop.empty()) {
        if (auto end = find_stop(*tokenizer_, c.tokens, s.stop, max_stop_bytes)) {
          stopped = true;
          c.text = tokenizer_->decode(c.tokens);
          c.text.resize(*end);
          if (!s.include_stop_str)
            for (const auto& st2 : s.stop)
              if (c.text.size() >= st2.size() && c.text.compare(c.text.size() - st2.size(), st2.size(), st2) == 0) {
                c.text.resize(c.text.size() - st2.size());
                break;
              }
        }
      }
      if (stopped) c.finish_reason = FinishReason::stop, done[b] = true, ++finished_since_compaction;
    }
    const int64_t active = std::count(done.begin(), done.end(), false);
    if (active == 0 || step + 1 == s.max_new_tokens) break;

    // Compact finished rows out of the batch once enough have finished.
    if (finished_since_compaction > 0 &&
        finished_since_compaction >=
            std::max<int64_t>(1, static_cast<int64_t>(options_.compact_fraction * rows.size()))) {
      std::vector<int64_t> keep;
      std::vector<Row> kept_rows;
      for (size_t b = 0; b < rows.size(); ++b)
        if (!done[b]) keep.push_back(static_cast<int64_t>(b)), kept_rows.push_back(rows[b]);
      at::Tensor k = at::tensor(keep, at::kLong).to(dev);
      cache.select_rows(k);
      valid = valid.index_select(0, k);
      tok_cpu = tok_cpu.index_select(0, at::tensor(keep, at::kLong));
      rows = std::move(kept_rows);
      done.assign(rows.size(), false);
      finished_since_compaction = 0;
      ++stats_.compactions;
    }
    std::vector<int64_t> positions;
    for (auto& r : rows) positions.push_back(r.position++);
    last = model_->decode(tok_cpu.to(dev), at::tensor(positions, at::kLong).to(dev), valid, cache);  // [B, H]
  }
  stats_.decode_seconds += seconds_since(t1);

  for (size_t i = first; i < first + count; ++i)
    for (size_t oi = offsets[i]; oi < offsets[i + 1]; ++oi) {
      Completion& c = out[oi];
      if (tokenizer_ && c.text.empty()) {
        std::span<const TokenId> toks(c.tokens);
        if (c.finish_reason == FinishReason::stop && !toks.empty() &&
            std::find(stop_ids.begin(), stop_ids.end(), toks.back()) != stop_ids.end())
          toks = toks.first(toks.size() - 1);
        c.text = tokenizer_->decode(toks);
      }
    }
}

}  // namespace r1
