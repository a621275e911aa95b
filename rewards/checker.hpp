// The checker interface: a sample in, a score with named parts and a reason out. Checkers are
// created by name from a registry (built-ins, .so plugins, external commands) and must be safe to
// call from several threads at once.
#pragma once
#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rewards/deadline.hpp"

namespace r1::rewards {

// One completion to score, with the dataset record's reference fields (answer, tests, target,
// nums, ...) and free-form metadata. `completion_tokens` is set by the trainer when it knows the
// token count (the length checker can use it).
struct Sample {
  std::string prompt;
  std::string completion;
  boost::json::object reference;
  boost::json::object metadata;
  std::optional<int64_t> completion_tokens;
};

enum class Status { ok, timeout, error };
const char* status_name(Status s);

struct CheckResult {
  double score = 0.0;
  std::vector<std::pair<std::string, double>> parts;  // named components, e.g. {"format", 0.1}
  std::string reason;                                 // the extracted answer, or why the check failed
  std::string answer;  // the answer in normal form (math: the parsed value), "" if none: maj@k votes on it
  Status status = Status::ok;

  static CheckResult failure(Status s, std::string why) {
    CheckResult r;
    r.status = s;
    r.reason = std::move(why);
    return r;
  }
};

class Checker {
 public:
  virtual ~Checker() = default;
  // Scores one sample. Must be thread-safe. May throw DeadlineExceeded (-> timeout) or any
  // std::exception (-> error for this sample only).
  virtual CheckResult check(const Sample& sample, const Deadline& deadline) const = 0;
};

using CheckerPtr = std::shared_ptr<const Checker>;

}  // namespace r1::rewards
