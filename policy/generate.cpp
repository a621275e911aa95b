#include "policy/generate.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace r1 {

std::vector<Generation> greedy_generate(CausalLM& model, const std::vector<std::vector<TokenId>>& prompts,
                                        const GreedyOptions& o) {
  R1_CHECK(!prompts.empty(), "greedy_generate: no prompts");
  R1_CHECK(o.max_new_tokens >= 0, "greedy_generate: max_new_tokens must be >= 0");
  at::NoGradGuard no_grad;
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t P = 0;
  for (const auto& p : prompts) {
    R1_CHECK(!p.empty(), "greedy_generate: empty prompt (give at least one token)");
    P = std::max<int64_t>(P, static_cast<int64_t>(p.size()));
  }
  const int64_t vocab = model->config().vocab_size;
  const int64_t S = P + o.max_new_tokens;
  const auto dev = model->options().device();

  // Left-padded prompt ids [B, P], key validity [B, S], RoPE positions [B, P].
  at::Tensor ids = at::zeros({B, P}, at::kLong);
  at::Tensor valid = at::zeros({B, S}, at::kBool);
  at::Tensor pos = at::zeros({B, P}, at::kLong);
  std::vector<int64_t> len(B);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[b];
    len[b] = static_cast<int64_t>(p.size());
    const int64_t pad = P - len[b];
    for (int64_t t = 0; t < len[b]; ++t) {
      R1_CHECK(p[t] >= 0 && p[t] < vocab, "prompt {} token {} has id {} outside the vocabulary [0, {})", b, t, p[t],
               vocab);
      ids[b][pad + t] = p[t];
      pos[b][pad + t] = t;
    }
    valid[b].narrow(0, pad, len[b]).fill_(true);
    valid[b].narrow(0, P, o.max_new_tokens).fill_(true);
  }
  ids = ids.to(dev), valid = valid.to(dev), pos = pos.to(dev);

  std::vector<Generation> out(B);
  if (o.max_new_tokens == 0) return out;
  KVCache cache = KVCache::allocate(model->config(), B, S, model->options());
  at::Tensor h = model->hidden({ids, pos, causal_mask(valid.narrow(1, 0, P), P)}, &cache);  // [B, P, H]
  std::vector<bool> done(B, false);
  at::Tensor step_pos = at::tensor(len, at::kLong).to(dev).unsqueeze(1);  // [B, 1]
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    at::Tensor next = model->logits(h.select(1, h.size(1) - 1)).argmax(-1);  // [B]
    at::Tensor next_cpu = next.to(at::kCPU);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const auto t = static_cast<TokenId>(next_cpu[b].item<int64_t>());
      out[b].tokens.push_back(t);
      if (std::find(o.stop_ids.begin(), o.stop_ids.end(), t) != o.stop_ids.end()) {
        done[b] = true;
        out[b].finish_reason = "stop";
      }
      all_done = all_done && done[b];
    }
    if (all_done || step + 1 == o.max_new_tokens) break;
    const int64_t cur = cache.length + 1;
    h = model->hidden({next.unsqueeze(1), step_pos + step, causal_mask(valid.narrow(1, 0, cur), 1)}, &cache);
  }
  for (auto& g : out)
    if (g.finish_reason.empty()) g.finish_reason = "length";
  return out;
}

}  // namespace r1
