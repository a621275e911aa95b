// Readers of a run directory's logs (see run_log.hpp for the writer, docs/CURVES.md for keys).
//
// Both files are read robustly: a torn last line (a line without its newline, left by a crash or
// read while the trainer is writing it) is skipped with a warning; a bad line anywhere else is an
// error naming file:line. When steps go backwards (a run resumed without truncating its log), the
// later lines supersede the earlier ones from that step on.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace r1::metrics {

struct Point {
  int64_t step = 0;
  double value = 0;
};

// One metric of one run over steps, steps strictly increasing.
struct Series {
  std::string name;
  std::vector<Point> points;
};

// A run's metrics.jsonl as one series per numeric metric. Numbers and booleans (as 0/1) count;
// strings and nulls (non-finite values) do not; a nested object's keys are joined with '/'.
struct MetricsLog {
  std::filesystem::path file;
  std::map<std::string, Series, std::less<>> series;  // by metric name
  int64_t steps = 0;                                  // lines read
  std::vector<std::string> warnings;                  // torn last line, restarts

  // Metric names, sorted ("step" and "time" excluded).
  std::vector<std::string> names() const;
  bool has(std::string_view name) const { return series.find(name) != series.end(); }
  // The series of `name`; unknown names throw r1::ConfigError listing the available ones with a
  // did-you-mean suggestion.
  const Series& at(std::string_view name) const;
};

// Reads RUN_DIR/metrics.jsonl (or the file itself when `path` is a file). A missing file is a
// r1::ConfigError that says what a run directory holds.
MetricsLog read_metrics(const std::filesystem::path& path);
// The same from text; `file` names it in messages.
MetricsLog parse_metrics(std::string_view text, const std::filesystem::path& file);

// Exponential moving average with TensorBoard's convention: `weight` in [0, 1) is the weight of
// the past (0: unchanged, 0.9: smooth, 0.99: very smooth), debiased so the first points are not
// pulled towards the first value: s_t = m_t / (1 - weight^(t+1)), m_t = weight*m_{t-1} + (1-weight)*x_t.
Series ema(const Series& s, double weight);

// One line of RUN_DIR/events.jsonl: a guard rule firing ("guard") or what the trainer did about it
// ("rollback", "stop").
struct RunEvent {
  int64_t step = 0;
  std::string event, rule, action;  // rule and action: a firing's
  std::string message;              // a firing's or a stop's message; a rollback's "restored step N"
};

// The events of a run (`path`: the run directory or its metrics.jsonl); none when the run has no
// events.jsonl. Lines that do not read are skipped with a warning in `warnings`.
std::vector<RunEvent> read_run_events(const std::filesystem::path& path, std::vector<std::string>* warnings);

// The completions of one step of RUN_DIR/samples.jsonl, in file order.
struct StepSamples {
  std::filesystem::path file;
  int64_t step = 0;
  std::vector<boost::json::object> samples;
  std::vector<int64_t> steps;  // every step that has samples, increasing
  std::vector<std::string> warnings;
};

// Reads the samples of `step` (the last step with samples when absent). A step without samples is
// a r1::ConfigError naming the nearest steps that have some.
StepSamples read_samples(const std::filesystem::path& run_dir, std::optional<int64_t> step);

}  // namespace r1::metrics
