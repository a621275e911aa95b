// A step's training data, from the rollout pool to the sequences the update trains on: the
// reward stage that scores each group, the groups of the step (with DAPO's dynamic sampling), the
// generation metrics of every generated group, and the advantages.
#pragma once
#include <boost/json/array.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rewards/scorer.hpp"
#include "rl/options.hpp"
#include "rl/step_metrics.hpp"
#include "rl/update.hpp"
#include "rollout/workers.hpp"

namespace r1 {

// Scores a group through `backend`: each completion's total, parts, reason and correctness
// (rewards::is_correct on `accuracy_part`).
RewardStage make_reward_stage(rewards::RewardBackend& backend, std::string accuracy_part);

struct StepGroups {
  std::vector<ScoredGroup> kept;  // the groups the step trains on
  int64_t generated = 0;          // groups taken from the pool (kept and dropped): dataset records used
  double tokens = 0;              // completion tokens generated
  double generate_seconds = 0;    // worker-seconds spent generating them
  double reward_seconds = 0;      // seconds spent scoring them
};

// Where a step's groups come from: a RolloutPool's take() and request(), or a test's groups.
struct GroupSource {
  std::function<std::vector<ScoredGroup>(int64_t n)> take;  // the next n scored groups
  std::function<void(int64_t n)> request;                   // ask for n more
};
GroupSource groups_of(RolloutPool& pool);

// Takes `per_step` groups; with dynamic sampling drops those whose rewards all agree and asks for
// more, up to max_refill_rounds times. `version` is the trainer's weight version (for policy_lag).
// Feeds the generation metrics of every generated group (and kept/* of the kept ones).
StepGroups collect_groups(const GroupSource& source, int64_t per_step, const GrpoOptions& o, int64_t version,
                          StepMetrics& m);

// Advantages of the groups' rewards and one Sequence per completion.
std::vector<Sequence> make_sequences(const std::vector<ScoredGroup>& groups, const GrpoOptions& o);

// The samples.jsonl lines of a step: every completion of the kept groups with its reward
// breakdown and advantage.
boost::json::array sample_lines(const std::vector<ScoredGroup>& groups, const std::vector<Sequence>& seqs);

}  // namespace r1
