// Guardrails: the [guard] rules (rl/options.hpp) evaluated over each step's metrics line, after the
// step is logged. A rule's condition is on its metric's statistic over the last `window` logged
// steps; it fires once when the condition starts to hold and again only after the condition has
// cleared. What a firing does (warn, stop, rollback) is the trainer's (rl/trainer.cpp): this class
// only decides, from the numbers, so synthetic metric streams test every rule.
//
// Every rank sees the same reduced metrics, so every rank takes the same decisions. The state
// (recent values, the best reward window, which conditions hold, rollbacks taken) is saved in each
// checkpoint's trainer_state.json: a resumed run evaluates its windows as the uninterrupted one.
// No LibTorch.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rl/options.hpp"

namespace r1 {

// One rule firing at one step.
struct GuardFiring {
  std::string rule;  // "entropy", "length", "kl", "clip", "zero_std", "reward_drop", "mismatch"
  GuardAction action = GuardAction::warn;
  std::string metric;   // the metrics.jsonl key the condition is on
  double value = 0;     // its statistic over the window (mean, fall rate, ...)
  double bound = 0;     // the configured bound it crossed
  int64_t step = 0;     // the logged step it fired at
  int64_t since = 0;    // the first logged step of the condition (a rollback restores one from before it)
  std::string message;  // "kl: mean kl 0.83 over steps 5-7 is above [guard.kl] max = 0.5"

  // The events.jsonl line: step, "event": "guard", rule, action, metric, value, bound, since, message.
  boost::json::object to_json() const;
};

struct GuardState {
  struct Entry {
    int64_t step = 0;
    std::map<std::string, double> values;  // the watched metrics this step logged (finite ones)
  };
  std::vector<Entry> recent;         // the last steps, oldest first (as many as the longest window)
  double best_reward = 0;            // the best reward/mean window mean so far (valid when best_step > 0)
  int64_t best_step = 0;             // the last step of that window; 0: none yet
  std::vector<std::string> holding;  // rules whose condition held at the last step (fired, not cleared)
  int64_t rollbacks = 0;             // rollbacks taken in this run (they survive the rollback itself)
  double lr_scale = 1;               // product of rollback_lr_factor over those rollbacks

  boost::json::object to_json() const;
  static GuardState from_json(const boost::json::object& o);  // throws r1::Error on a malformed object
};

class Guard {
 public:
  // `max_new_tokens` sets the length rule's bound in tokens.
  Guard(const GuardOptions& options, int64_t max_new_tokens);

  // Feeds the metrics line of logged step `step` (steps increase by one; a line that goes back is
  // an error); returns the rules that fire now, in declaration order. Rules with action off are
  // not evaluated.
  std::vector<GuardFiring> observe(int64_t step, const boost::json::object& line);

  const GuardState& state() const { return state_; }
  // A checkpoint's state (resume, rollback).
  void restore(const GuardState& s) { state_ = s; }
  // Counts a rollback (the lr scale takes the factor).
  void count_rollback();

 private:
  GuardOptions o_;
  int64_t max_new_tokens_;
  size_t keep_;  // the longest window
  GuardState state_;
};

// The most severe action among `fired` (rollback > stop > warn); nullopt when none fired.
std::optional<GuardAction> strongest(const std::vector<GuardFiring>& fired);

}  // namespace r1
