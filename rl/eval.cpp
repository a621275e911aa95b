#include "rl/eval.hpp"

#include <chrono>
#include <map>

#include "common/error.hpp"

namespace r1 {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  R1_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "pass_at_k: need 0 <= c <= n and 1 <= k <= n");
  if (n - c < k) return 1.0;
  double miss = 1.0;  // C(n-c, k) / C(n, k) as a running product
  for (int64_t i = n - c + 1; i <= n; ++i) miss *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - miss;
}

bool majority_correct(const std::vector<EvalSample>& samples) {
  std::map<std::string, std::pair<int64_t, bool>> votes;  // answer -> (count, correct)
  for (const auto& s : samples) {
    if (s.answer.empty()) continue;
    auto& v = votes[s.answer];
    ++v.first;
    v.second = v.second || s.correct;
  }
  if (votes.empty()) return false;
  auto best = votes.begin();  // map order: ties go to the lexicographically first answer
  for (auto it = votes.begin(); it != votes.end(); ++it)
    if (it->second.first > best->second.first) best = it;
  return best->second.second;
}

namespace {

// The k scored samples of each prompt in [first, first + n), in prompt order.
std::vector<std::vector<EvalSample>> generate_and_score(Engine& engine, const Tokenizer& tokenizer,
                                                        const std::vector<PromptRecord>& prompts, int64_t first,
                                                        int64_t n, rewards::RewardBackend& rewards,
                                                        const SamplingOptions& sampling, const EvalOptions& o) {
  std::vector<GenerationRequest> reqs;
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = prompts[first + i];
    reqs.push_back({tokenizer.encode(p.prompt), o.samples, static_cast<uint64_t>(p.index)});
  }
  std::vector<Completion> outs = engine.generate(reqs, sampling);
  std::vector<rewards::Sample> batch;
  for (const auto& c : outs) {
    const auto& p = prompts[first + c.request];
    batch.push_back({p.prompt, c.text, p.reference, {}, static_cast<int64_t>(c.tokens.size())});
  }
  std::vector<rewards::Scored> scored = rewards.score(batch);
  std::vector<std::vector<EvalSample>> out(static_cast<size_t>(n));
  for (size_t k = 0; k < outs.size(); ++k) {
    EvalSample s;
    s.prompt = prompts[first + outs[k].request].index;
    s.sample = outs[k].sample;
    s.completion = std::move(outs[k].text);
    s.tokens = static_cast<int64_t>(outs[k].tokens.size());
    s.finish_reason = outs[k].finish_reason;
    s.scored = std::move(scored[k]);
    if (const auto* part = s.scored.part(o.accuracy_part)) s.answer = part->result.answer;
    s.correct = rewards::is_correct(s.scored, o.accuracy_part);
    out[static_cast<size_t>(outs[k].request)].push_back(std::move(s));
  }
  return out;
}

}  // namespace

EvalReport evaluate(Engine& engine, const Tokenizer& tokenizer, const std::vector<PromptRecord>& prompts,
                    rewards::RewardBackend& rewards, const SamplingOptions& sampling, const EvalOptions& o,
                    const std::function<void(const EvalSample&)>& on_sample,
                    const std::function<void(int64_t, int64_t)>& progress) {
  R1_CHECK(o.samples >= 1 && o.prompts_per_batch >= 1, "eval: samples and prompts_per_batch must be >= 1");
  auto t0 = std::chrono::steady_clock::now();
  EvalReport rep;
  int64_t tokens = 0, truncated = 0;
  const int64_t total = static_cast<int64_t>(prompts.size());
  for (int64_t first = 0; first < total; first += o.prompts_per_batch) {
    const int64_t n = std::min(o.prompts_per_batch, total - first);
    for (const auto& group : generate_and_score(engine, tokenizer, prompts, first, n, rewards, sampling, o)) {
      int64_t correct = 0;
      for (const auto& s : group) {
        correct += s.correct;
        tokens += s.tokens;
        truncated += s.finish_reason == FinishReason::length;
        rep.mean_score += s.scored.score;
        for (const auto& p : s.scored.parts) rep.part_means[p.name] += p.result.score;
        if (on_sample) on_sample(s);
      }
      rep.pass_at_1 += pass_at_k(o.samples, correct, 1);
      rep.pass_at_k += pass_at_k(o.samples, correct, o.samples);
      rep.maj_at_k += majority_correct(group) ? 1.0 : 0.0;
    }
    if (progress) progress(first + n, total);
  }
  rep.prompts = total;
  rep.samples = total * o.samples;
  const double np = static_cast<double>(std::max<int64_t>(total, 1)),
               ns = static_cast<double>(std::max<int64_t>(rep.samples, 1));
  rep.pass_at_1 /= np;
  rep.pass_at_k /= np;
  rep.maj_at_k /= np;
  rep.mean_score /= ns;
  for (auto& [name, v] : rep.part_means) v /= ns;
  rep.mean_length = static_cast<double>(tokens) / ns;
  rep.truncated = static_cast<double>(truncated) / ns;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rep.tokens_per_second = rep.seconds > 0 ? static_cast<double>(tokens) / rep.seconds : 0;
  return rep;
}

}  // namespace r1
