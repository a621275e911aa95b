#include "policy/completions.hpp"

#include <algorithm>
#include <map>

#include "common/error.hpp"

namespace r1 {

namespace {

// Where each completion's continuation tokens (all but its last token, which predicts nothing)
// go: packed first-fit decreasing into rows of `width` slots, into a row that already continues
// the same prompt when one has room, else any row with room (which then also sees that prompt).
struct Packing {
  int64_t width = 0;
  std::vector<int64_t> row_of, offset_of, src_of;  // per completion: row (-1: nothing to place), offset, and
                                                   // the index of its prompt in the row's list
  std::vector<std::vector<int64_t>> prompts;       // per packed row: the distinct prompts it continues
};

Packing pack(const std::vector<CompletionRef>& rows, const std::vector<int64_t>& prefix_of, int64_t width) {
  Packing p;
  p.width = width;
  p.row_of.assign(rows.size(), -1);
  p.offset_of.assign(rows.size(), 0);
  p.src_of.assign(rows.size(), 0);
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a].completion_len > rows[b].completion_len; });
  std::vector<int64_t> used;  // per packed row
  for (size_t i : order) {
    const int64_t need = rows[i].completion_len - 1;
    if (need <= 0) continue;
    auto has_prompt = [&](size_t r) {
      return std::find(p.prompts[r].begin(), p.prompts[r].end(), prefix_of[i]) != p.prompts[r].end();
    };
    size_t row = used.size();
    for (size_t r = 0; r < used.size() && row == used.size(); ++r)
      if (used[r] + need <= width && has_prompt(r)) row = r;
    for (size_t r = 0; r < used.size() && row == used.size(); ++r)
      if (used[r] + need <= width) row = r;
    if (row == used.size()) used.push_back(0), p.prompts.emplace_back();
    auto& list = p.prompts[row];
    auto at = std::find(list.begin(), list.end(), prefix_of[i]);
    p.src_of[i] = at - list.begin();
    if (at == list.end()) list.push_back(prefix_of[i]);
    p.row_of[i] = static_cast<int64_t>(row), p.offset_of[i] = used[row];
    used[row] += need;
  }
  return p;
}

// Rows as long as the longest continuation, or up to twice that when wider rows waste fewer
// slots (attention per token grows with the width; the projections, most of the cost, do not).
Packing best_packing(const std::vector<CompletionRef>& rows, const std::vector<int64_t>& prefix_of, int64_t longest) {
  Packing best = pack(rows, prefix_of, longest);
  for (int64_t quarters : {5, 6, 8}) {
    Packing p = pack(rows, prefix_of, longest * quarters / 4);
    if (p.prompts.size() * static_cast<size_t>(p.width) < best.prompts.size() * static_cast<size_t>(best.width))
      best = std::move(p);
  }
  return best;
}

// The distinct prompts of `rows` (by prompt_key, whose tokens must match), which one each row
// continues, the longest prompt P and the longest completion T (both >= 1).
struct Prompts {
  std::vector<const CompletionRef*> firsts;  // one row per distinct prompt
  std::vector<int64_t> prefix_of;            // per row
  int64_t P = 1, T = 1;
};

Prompts distinct_prompts(const std::vector<CompletionRef>& rows) {
  Prompts d;
  std::map<int64_t, int64_t> slot_of_key;
  d.prefix_of.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const CompletionRef& r = rows[i];
    R1_CHECK(r.tokens && r.prompt_len >= 1 && r.completion_len >= 0,
             "completion_logprobs: row {} needs tokens and a prompt of >= 1 token (got prompt_len {}, "
             "completion_len {})",
             i, r.prompt_len, r.completion_len);
    auto [it, added] = slot_of_key.emplace(r.prompt_key, static_cast<int64_t>(d.firsts.size()));
    if (added) {
      d.firsts.push_back(&r);
      d.P = std::max(d.P, r.prompt_len);
    } else {
      const CompletionRef& f = *d.firsts[it->second];
      R1_CHECK(f.prompt_len == r.prompt_len && std::equal(r.tokens, r.tokens + r.prompt_len, f.tokens),
               "completion_logprobs: rows share prompt key {} but not their prompt tokens; give each distinct "
               "prompt its own key",
               r.prompt_key);
    }
    d.prefix_of[i] = it->second;
    d.T = std::max(d.T, r.completion_len);
  }
  return d;
}

}  // namespace

CompletionLogprobs completion_logprobs(CausalLMImpl& model, const std::vector<CompletionRef>& rows,
                                       const LogprobOptions& options) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const Prompts prompts = distinct_prompts(rows);
  const auto& firsts = prompts.firsts;
  const auto& prefix_of = prompts.prefix_of;
  const int64_t P = prompts.P, T = prompts.T;
  const int64_t U = static_cast<int64_t>(firsts.size());
  const Packing pk = best_packing(rows, prefix_of, T - 1);
  const int64_t R = static_cast<int64_t>(pk.prompts.size()), W = R > 0 ? pk.width : 0;
  int64_t M = 1;
  for (const auto& list : pk.prompts) M = std::max(M, static_cast<int64_t>(list.size()));
  at::Tensor row_prompts = at::full({R, M}, -1, at::kLong);  // [R, M]
  auto rpa = row_prompts.accessor<int64_t, 2>();
  for (int64_t r = 0; r < R; ++r)
    for (size_t m = 0; m < pk.prompts[r].size(); ++m) rpa[r][static_cast<int64_t>(m)] = pk.prompts[r][m];
  at::Tensor prefix_ids = at::zeros({U, P}, at::kLong), prefix_len = at::empty({U}, at::kLong);
  auto pa = prefix_ids.accessor<int64_t, 2>();
  auto la = prefix_len.accessor<int64_t, 1>();
  for (int64_t u = 0; u < U; ++u) {
    for (int64_t t = 0; t < firsts[u]->prompt_len; ++t) pa[u][t] = firsts[u]->tokens[t];
    la[u] = firsts[u]->prompt_len;
  }
  // Packed continuation rows [R, W]: ids, each token's offset in its completion, which completion
  // it is (-1: padding), and which of the row's prompts it continues.
  at::Tensor suffix_ids = at::zeros({R, W}, at::kLong), suffix_pos = at::zeros({R, W}, at::kLong);
  at::Tensor suffix_seg = at::full({R, W}, -1, at::kLong), suffix_src = at::zeros({R, W}, at::kLong);
  auto sa = suffix_ids.accessor<int64_t, 2>();
  auto spa = suffix_pos.accessor<int64_t, 2>();
  auto sga = suffix_seg.accessor<int64_t, 2>();
  auto ssa = suffix_src.accessor<int64_t, 2>();
  std::vector<int64_t> src, dst, targets;  // hidden row -> padded [B, T] slot, and the token it scores
  int64_t real = 0;
  for (int64_t i = 0; i < B; ++i) {
    const CompletionRef& r = rows[i];
    const int64_t row = pk.row_of[i], off = pk.offset_of[i];
    for (int64_t t = 0; t + 1 < r.completion_len; ++t) {
      sa[row][off + t] = r.tokens[r.prompt_len + t], spa[row][off + t] = t, sga[row][off + t] = i;
      ssa[row][off + t] = pk.src_of[i];
      ++real;
    }
    for (int64_t t = 0; t < r.completion_len; ++t) {
      // Token t is predicted by the prompt's last hidden state (t = 0), then by continuation token t - 1.
      src.push_back(t == 0 ? prefix_of[i] * P + r.prompt_len - 1 : U * P + row * W + off + t - 1);
      dst.push_back(i * T + t);
      targets.push_back(r.tokens[r.prompt_len + t]);
    }
  }
  const auto dev = model.options().device();
  auto lng = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(dev); };
  SharedPrefixHidden h =
      model.hidden_shared({prefix_ids.to(dev), prefix_len.to(dev), suffix_ids.to(dev), row_prompts.to(dev),
                           suffix_pos.to(dev), suffix_seg.to(dev), suffix_src.to(dev)});
  const int64_t H = h.prefix.size(2);
  at::Tensor all = at::cat({h.prefix.reshape({U * P, H}), h.suffix.reshape({R * W, H})});  // [U P + R W, H]
  LogprobOptions lo = options;
  if (!lo.banned.defined()) lo.banned = model.banned_ids();
  TokenLogprobs lp = token_logprobs(all.index_select(0, lng(src)), model.lm_head_weight(), lng(targets), lo);
  const at::Tensor d = lng(dst);
  CompletionLogprobs out;
  out.logprobs = at::zeros({B * T}, lp.logprobs.options()).index_copy(0, d, lp.logprobs).view({B, T});
  if (options.entropy) out.entropy = at::zeros({B * T}, lp.entropy.options()).index_copy(0, d, lp.entropy).view({B, T});
  out.slots = R * W, out.tokens = real;
  return out;
}

}  // namespace r1
