// The live progress line of `r1 train` on stderr: one line per step, redrawn in place on a
// terminal, from the step's metrics.jsonl line.
#pragma once
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>

namespace r1 {

class ProgressLine {
 public:
  ProgressLine(int64_t steps, bool enabled);
  // Step `step` (1-based) is done; `line` is its metrics.jsonl object, `step_seconds` its wall time.
  void step(int64_t step, const boost::json::object& line, double step_seconds);

 private:
  int64_t steps_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace r1
