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
#include <vector>

#include "rewards/checker.hpp"
#include "rewards/options.hpp"

namespace r1::rewards {

// Checker kinds by name: the built-ins plus whatever a config declares.
class Registry {
 public:
  using Factory = std::function<CheckerPtr(const RewardEntry&)>;
  static Registry with_builtins();
  // Built-ins plus the plugins and commands `cfg` declares (loads them; ConfigError on failure).
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
  double score = 0.0;  // sum of weight * part score (timeouts and errors count 0)
  Status status = Status::ok;  // the worst part status
  std::vector<PartResult> parts;
};

struct ScorerStats {
  uint64_t samples = 0, checks = 0, timeouts = 0, errors = 0, abandoned_threads = 0;
};

class Scorer {
 public:
  explicit Scorer(const RewardsConfig& cfg);
  Scorer(const RewardsConfig& cfg, const Registry& registry);
  // For tests and embedding: explicit checkers with names and weights.
  Scorer(std::vector<std::pair<PartResult, CheckerPtr>> checkers, int64_t threads, int64_t deadline_ms);
  ~Scorer();
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  std::vector<Scored> score(const std::vector<Sample>& batch);
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
JsonlSummary score_jsonl(std::istream& in, std::ostream& out, Scorer& scorer, size_t batch_size = 256);

// Reads the [rewards] table of a TOML file (a full run config works; its other sections are not
// read here). `--set` overrides apply to the whole file ("rewards.threads=4").
RewardsConfig load_rewards_config(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

}  // namespace r1::rewards
