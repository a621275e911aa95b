#include "rl/reward_lint.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "common/error.hpp"
#include "rollout/dataset.hpp"

namespace r1 {

std::vector<rewards::LintProbe> lint_probes(const RunConfig& cfg) {
  R1_CHECK(!cfg.data.reference_fields.empty(), "reward lint: [data] reference_fields is empty");
  const std::string& field = cfg.data.reference_fields.front();
  Dataset data(cfg.data);
  std::vector<rewards::LintProbe> out;
  for (size_t i = 0; i < data.size() && static_cast<int64_t>(out.size()) < cfg.rewards.lint_probes; ++i) {
    const PromptRecord& r = data.at(i);
    const boost::json::value* v = r.reference.if_contains(field);
    std::string gold;
    if (v && v->is_string())
      gold = rewards::gold_answer(std::string(v->as_string()));
    else if (v)
      gold = boost::json::serialize(*v);
    out.push_back({r.prompt, r.reference, gold});
  }
  return out;
}

rewards::LintReport lint_run_rewards(const RunConfig& cfg, rewards::RewardBackend& backend) {
  return rewards::lint_rewards(backend, cfg.rewards, lint_probes(cfg), cfg.accuracy_part());
}

void apply_reward_lint(const RunConfig& cfg, rewards::RewardBackend& backend, bool quiet) {
  if (cfg.rewards.lint == rewards::LintMode::off) return;
  const rewards::LintReport r = lint_run_rewards(cfg, backend);
  if (r.passed()) {
    if (!quiet) fmt::print(stderr, "r1 train: reward lint passed\n{}", r.describe());
    return;
  }
  const std::string text = fmt::format(
      "reward lint failed on {} training prompts ([rewards] lint = \"warn\" runs anyway, \"off\" skips it):\n{}",
      cfg.rewards.lint_probes, r.describe());
  if (cfg.rewards.lint == rewards::LintMode::error) throw ConfigError(text);
  fmt::print(stderr, "r1 train: warning: {}", text);
}

}  // namespace r1
