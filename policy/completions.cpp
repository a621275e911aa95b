#include "policy/completions.hpp"

#include <algorithm>
#include <map>

#include "common/error.hpp"

namespace r1 {

CompletionLogprobs completion_logprobs(CausalLMImpl& model, const std::vector<CompletionRef>& rows,
                                       const LogprobOptions& options) {
  const int64_t B = static_cast<int64_t>(rows.size());
  std::map<int64_t, int64_t> slot_of_key;
  std::vector<const CompletionRef*> firsts;  // one row per distinct prompt
  std::vector<int64_t> prefix_of(static_cast<size_t>(B));
  int64_t P = 1, T = 1;
  for (int64_t i = 0; i < B; ++i) {
    const CompletionRef& r = rows[i];
    R1_CHECK(r.tokens && r.prompt_len >= 1 && r.completion_len >= 0,
             "completion_logprobs: row {} needs tokens and a prompt of >= 1 token (got prompt_len {}, "
             "completion_len {})",
             i, r.prompt_len, r.completion_len);
    auto [it, added] = slot_of_key.emplace(r.prompt_key, static_cast<int64_t>(firsts.size()));
    if (added) {
      firsts.push_back(&r);
      P = std::max(P, r.prompt_len);
    } else {
      const CompletionRef& f = *firsts[it->second];
      R1_CHECK(f.prompt_len == r.prompt_len && std::equal(r.tokens, r.tokens + r.prompt_len, f.tokens),
               "completion_logprobs: rows share prompt key {} but not their prompt tokens; give each distinct "
               "prompt its own key",
               r.prompt_key);
    }
    prefix_of[i] = it->second;
    T = std::max(T, r.completion_len);
  }
  const int64_t U = static_cast<int64_t>(firsts.size()), Ts = T - 1;  // a row's last token predicts nothing
  at::Tensor prefix_ids = at::zeros({U, P}, at::kLong), prefix_len = at::empty({U}, at::kLong);
  at::Tensor suffix_ids = at::zeros({B, Ts}, at::kLong);
  auto pa = prefix_ids.accessor<int64_t, 2>();
  auto la = prefix_len.accessor<int64_t, 1>();
  for (int64_t u = 0; u < U; ++u) {
    for (int64_t t = 0; t < firsts[u]->prompt_len; ++t) pa[u][t] = firsts[u]->tokens[t];
    la[u] = firsts[u]->prompt_len;
  }
  auto sa = suffix_ids.accessor<int64_t, 2>();
  std::vector<int64_t> src, dst, targets;  // hidden row -> padded [B, T] slot, and the token it scores
  for (int64_t i = 0; i < B; ++i) {
    const CompletionRef& r = rows[i];
    for (int64_t t = 0; t + 1 < r.completion_len; ++t) sa[i][t] = r.tokens[r.prompt_len + t];
    for (int64_t t = 0; t < r.completion_len; ++t) {
      // Token t is predicted by the prompt's last hidden state (t = 0), then by suffix position t - 1.
      src.push_back(t == 0 ? prefix_of[i] * P + r.prompt_len - 1 : U * P + i * Ts + t - 1);
      dst.push_back(i * T + t);
      targets.push_back(r.tokens[r.prompt_len + t]);
    }
  }
  const auto dev = model.options().device();
  auto lng = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(dev); };
  SharedPrefixHidden h =
      model.hidden_shared({prefix_ids.to(dev), prefix_len.to(dev), suffix_ids.to(dev), lng(prefix_of)});
  const int64_t H = h.prefix.size(2);
  at::Tensor all = at::cat({h.prefix.reshape({U * P, H}), h.suffix.reshape({B * Ts, H})});  // [U P + B Ts, H]
  LogprobOptions lo = options;
  if (!lo.banned.defined()) lo.banned = model.banned_ids();
  TokenLogprobs lp = token_logprobs(all.index_select(0, lng(src)), model.lm_head_weight(), lng(targets), lo);
  const at::Tensor d = lng(dst);
  CompletionLogprobs out;
  out.logprobs = at::zeros({B * T}, lp.logprobs.options()).index_copy(0, d, lp.logprobs).view({B, T});
  if (options.entropy) out.entropy = at::zeros({B * T}, lp.entropy.options()).index_copy(0, d, lp.entropy).view({B, T});
  return out;
}

}  // namespace r1
