// Scoring: builds the weighted checkers of a RewardsConfig through the registry and runs them on a
// thread pool with a per-check deadline that needs no signals. Cooperative checks inside the
// built-ins stop at the deadline; a check that does not (a stuck plugin) is abandoned by the
// watchdog, its thread replaced, and the sample scored 0 with reason "timeout".
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rewards/checker.hpp"
#include "rewards/options.hpp"

namespace r1::rewards {

// The built-in checker kinds: format, math, countdown, length and code (code runs in the sandbox,
// so rewards/backend.hpp registers it).
const std::vector<std::string>& builtin_kinds();

// The problems of one [[rewards.checkers]] entry that need no checker built: an unknown kind
// (`kinds`: every kind known), a built-in's options table on an entry of another kind (present at
// all, even with default values), a JSON `options` on a built-in. Throws ConfigError.
void check_entry(const RewardEntry& e, const std::string& where, const std::vector<std::string>& kinds);

// The part names of a composition, in order; ConfigError on an empty one or a name used twice.
std::vector<std::string> part_names(const RewardsConfig& cfg);

// Checker kinds by name: the built-ins plus whatever a config declares.
class Registry {
 public:
  using Factory = std::function<CheckerPtr(const RewardEntry&)>;
  // format, math, countdown and length.
  static Registry with_builtins();
  // Those plus the plugins and commands `cfg` declares (loaded when an entry is created).
  static Registry for_config(const RewardsConfig& cfg);

  void add(const std::string& kind, Factory f);  // throws ConfigError on a duplicate name
  bool has(const std::string& kind) const { return f_.count(kind) != 0; }
  std::vector<std::string> kinds() const;
  CheckerPtr create(const RewardEntry& e, const std::string& where) const;

 private:
  std::map<std::string, Factory> f_;
};

struct PartResult {
  std::string name;
  double weight = 1.0;
  CheckResult result;
};

struct Scored {
  double score = 0.0;          // sum of weight * part score (timeouts and errors count 0)
  Status status = Status::ok;  // the worst part status
  std::vector<PartResult> parts;
  const PartResult* part(std::string_view name) const;  // null when absent
};

// The one definition of a correct completion: its `accuracy_part` scored >= 1 (training accuracy,
// the trainer's eval and r1 eval all use it).
bool is_correct(const Scored& s, std::string_view accuracy_part);

// What scores batches of samples: the in-process Scorer or a remote service's client. Make one
// with rewards/backend.hpp's make_reward_backend.
class RewardBackend {
 public:
  virtual ~RewardBackend() = default;
  virtual std::vector<Scored> score(const std::vector<Sample>& batch) = 0;
  virtual std::string describe() const = 0;  // "in-process (math, format)" or "remote http://..."
};

struct ScorerStats {
  uint64_t samples = 0, checks = 0, timeouts = 0, errors = 0, abandoned_threads = 0;
};

// In-process scoring of a composition.
class Scorer final : public RewardBackend {
 public:
  Scorer(const RewardsConfig& cfg, const Registry& registry);
  // For tests and embedding: explicit checkers with names and weights.
  Scorer(std::vector<std::pair<PartResult, CheckerPtr>> checkers, int64_t threads, int64_t deadline_ms);
  ~Scorer() override;
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  std::vector<Scored> score(const std::vector<Sample>& batch) override;
  std::string describe() const override;
  ScorerStats stats() const;
  std::vector<std::string> part_names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- JSON and JSONL ----

// A sample from a JSON object: "prompt" (optional), "completion" (required), "reference" (object;
// when absent, every other top-level field except id/metadata/completion_tokens is a reference
// field, so dataset records can be scored as they are), "metadata", "completion_tokens".
Sample sample_from_json(const boost::json::value& v, const std::string& where);
boost::json::object to_json(const Scored& s);

struct JsonlSummary {
  uint64_t lines = 0, bad_lines = 0, timeouts = 0, errors = 0;
  double score_sum = 0;
};
// Scores JSONL samples from `in`, one output line per input line in order (an "id" field is
// copied). A malformed line gets {"status": "error", "reason": "bad input: …"} and scoring goes on.
JsonlSummary score_jsonl(std::istream& in, std::ostream& out, RewardBackend& scorer, size_t batch_size = 256);

}  // namespace r1::rewards
