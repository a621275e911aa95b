// Reward lint: before a run generates anything, score hand-made completions of a few training
// prompts and check that the rewards pay for what they should and only for that. Catches the
// mistakes users otherwise find hours later in flat curves: an answer extraction or template that
// never matches (the gold answer in the expected format must score full marks), and rewards that
// pay for format alone or for anything (an empty completion, the prompt echoed back and a
// well-formatted wrong answer must not).
#pragma once
#include <boost/json/object.hpp>

#include <string>
#include <vector>

#include "rewards/options.hpp"
#include "rewards/scorer.hpp"

namespace r1::rewards {

// One training prompt and its gold answer (the final answer, e.g. GSM8K's text after "####").
struct LintProbe {
  std::string prompt;
  boost::json::object reference;
  std::string gold;
};

// The gold answer of a reference value: GSM8K's "... #### 72" gives "72"; other text is used as is.
std::string gold_answer(const std::string& reference);

struct LintCheck {
  std::string name;    // "gold answer", "empty completion", "prompt echoed", "format only, wrong answer"
  std::string expect;  // what must hold
  int64_t failed = 0;  // probes on which it did not
  int64_t probes = 0;
  std::string example;  // the first failing completion with its scores
  std::string skipped;  // why the check did not run (empty: it ran)
  bool passed() const { return failed == 0; }
};

// Each part's scores over every lint completion.
struct PartSpread {
  std::string part;
  double min = 0, max = 0, mean = 0;
};

struct LintReport {
  std::vector<LintCheck> checks;
  std::vector<PartSpread> spread;
  double ms_per_sample = 0;  // scoring time per completion
  bool passed() const;
  std::string describe() const;  // one line per check and part, for logs
};

// The completions lint scores for `p`: the gold answer and a wrong one as a think block then an
// answer block (continuing the think block when the prompt ends by opening it, as R1-Zero's
// template does), the empty completion, and the prompt itself. "Full marks" for the gold one is
// every part at 1 (a length penalty at 0), so a format checker that disagrees with the template
// (format.think_prefilled against a prompt that opens <think>) fails it.
struct LintCompletions {
  std::string gold, empty, echo, format_only;
};
LintCompletions lint_completions(const LintProbe& p);

// Scores the four completions of every probe. `accuracy_part` is the part that decides
// correctness (RunConfig::accuracy_part): bad completions must score below 1 there, and below the
// gold completion in total. The gold completion is written for a math accuracy part only (other
// checkers need more than the reference's final answer: an equation, a program); for the others
// that check is reported as skipped and the bad completions are held to the accuracy part alone.
LintReport lint_rewards(RewardBackend& backend, const RewardsConfig& cfg, const std::vector<LintProbe>& probes,
                        const std::string& accuracy_part);

}  // namespace r1::rewards
