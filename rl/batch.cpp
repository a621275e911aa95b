#include "rl/batch.hpp"

#include <boost/json.hpp>

#include <algorithm>

#include "common/config_fields.hpp"
#include "rl/loss.hpp"

namespace r1 {

RewardStage make_reward_stage(rewards::RewardBackend& backend, std::string accuracy_part) {
  return [&backend, part = std::move(accuracy_part)](ScoredGroup& g) {
    std::vector<rewards::Sample> batch;
    for (const auto& c : g.completions)
      batch.push_back({g.prompt.prompt, c.text, g.prompt.reference, {}, static_cast<int64_t>(c.tokens.size())});
    for (const auto& s : backend.score(batch)) {
      g.rewards.push_back(s.score);
      std::vector<std::pair<std::string, double>> parts;
      std::string reason;
      for (const auto& p : s.parts) {
        parts.emplace_back(p.name, p.result.score);
        reason += (reason.empty() ? "" : "; ") + p.name + ": " + p.result.reason;
      }
      g.reward_parts.push_back(std::move(parts));
      g.reward_reasons.push_back(std::move(reason));
      g.correct.push_back(rewards::is_correct(s, part));
    }
  };
}

namespace {

bool rewards_agree(const ScoredGroup& g) {
  return std::all_of(g.rewards.begin(), g.rewards.end(), [&](double r) { return r == g.rewards[0]; });
}

// What the policy generated, over every group taken (dropped ones included).
void add_generation_metrics(const ScoredGroup& g, int64_t version, StepMetrics& m) {
  m.zero_std_frac.add(rewards_agree(g) ? 1.0 : 0.0);
  m.policy_lag.add(static_cast<double>(version - g.policy_version));
  for (size_t j = 0; j < g.completions.size(); ++j) {
    const Completion& c = g.completions[j];
    const double len = static_cast<double>(c.tokens.size());
    m.reward_mean.add(g.rewards[j]);
    m.reward_std.add(g.rewards[j]);
    m.accuracy.add(g.correct[j] ? 1.0 : 0.0);
    for (const auto& [name, v] : g.reward_parts[j]) m.parts[name].add(v);
    m.length_mean.add(len);
    m.length_max.add(len);
    m.truncated.add(c.finish_reason == FinishReason::length ? 1.0 : 0.0);
  }
}

void add_kept_metrics(const ScoredGroup& g, StepMetrics& m) {
  for (size_t j = 0; j < g.completions.size(); ++j) {
    m.kept_reward_mean.add(g.rewards[j]);
    m.kept_accuracy.add(g.correct[j] ? 1.0 : 0.0);
  }
}

}  // namespace

GroupSource groups_of(RolloutPool& pool) {
  return {[&pool](int64_t n) { return pool.take(n); }, [&pool](int64_t n) { pool.request(n); }};
}

StepGroups collect_groups(const GroupSource& source, int64_t per_step, const GrpoOptions& o, int64_t version,
                          StepMetrics& m) {
  StepGroups out;
  auto take = [&](int64_t n) {
    for (auto& g : source.take(n)) {
      ++out.generated;
      out.generate_seconds += g.generate_seconds;
      out.reward_seconds += g.reward_seconds;
      for (const auto& c : g.completions) out.tokens += static_cast<double>(c.tokens.size());
      add_generation_metrics(g, version, m);
      if (o.dynamic_sampling && rewards_agree(g)) {
        m.dropped_groups.add(1.0);
        continue;
      }
      if (o.dynamic_sampling) add_kept_metrics(g, m);
      out.kept.push_back(std::move(g));
    }
  };
  take(per_step);
  m.dropped_groups.add(0.0);  // logged every step, 0 included
  for (int64_t round = 0; o.dynamic_sampling && round < o.max_refill_rounds; ++round) {
    const int64_t need = per_step - static_cast<int64_t>(out.kept.size());
    if (need <= 0) break;
    source.request(need);
    take(need);
  }
  return out;
}

std::vector<Sequence> make_sequences(const std::vector<ScoredGroup>& groups, const GrpoOptions& o) {
  std::vector<Sequence> seqs;
  if (groups.empty()) return seqs;
  const int64_t N = static_cast<int64_t>(groups.size()), G = static_cast<int64_t>(groups[0].completions.size());
  at::Tensor rw = at::empty({N, G}, at::kDouble);  // [N, G] rewards
  auto rw_a = rw.accessor<double, 2>();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < G; ++j) rw_a[i][j] = groups[i].rewards[j];
  at::Tensor adv = compute_advantages(rw, o).to(at::kDouble).contiguous();  // [N, G]
  auto adv_a = adv.accessor<double, 2>();
  for (int64_t i = 0; i < N; ++i) {
    const ScoredGroup& g = groups[i];
    for (int64_t j = 0; j < G; ++j) {
      const Completion& c = g.completions[j];
      Sequence s;
      s.ids = g.prompt_ids;
      s.ids.insert(s.ids.end(), c.tokens.begin(), c.tokens.end());
      s.prompt_len = static_cast<int64_t>(g.prompt_ids.size());
      s.comp_len = static_cast<int64_t>(c.tokens.size());
      s.group = i;
      s.policy_version = g.policy_version;
      s.sampler_logprobs = c.logprobs;
      s.old_logprobs = c.logprobs;
      s.advantage = adv_a[i][j];
      s.counted = !(o.mask_truncated && c.finish_reason == FinishReason::length);
      seqs.push_back(std::move(s));
    }
  }
  return seqs;
}

boost::json::array sample_lines(const std::vector<ScoredGroup>& groups, const std::vector<Sequence>& seqs) {
  boost::json::array lines;
  size_t k = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const ScoredGroup& g = groups[i];
    for (size_t j = 0; j < g.completions.size(); ++j, ++k) {
      const Completion& c = g.completions[j];
      boost::json::object parts;
      for (const auto& [n, v] : g.reward_parts[j]) parts[n] = v;
      lines.push_back({{"group", static_cast<int64_t>(i)},
                       {"sample", static_cast<int64_t>(j)},
                       {"prompt", g.prompt.prompt},
                       {"completion", c.text},
                       {"reward", g.rewards[j]},
                       {"parts", parts},
                       {"reason", g.reward_reasons[j]},
                       {"correct", static_cast<bool>(g.correct[j])},
                       {"tokens", static_cast<int64_t>(c.tokens.size())},
                       {"finish_reason", cfg::name_of(c.finish_reason)},
                       {"policy_version", g.policy_version},
                       {"counted", seqs[k].counted},
                       {"advantage", seqs[k].advantage}});
    }
  }
  return lines;
}

}  // namespace r1
