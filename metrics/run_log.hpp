// RunLog: the trainer's writer of metrics.jsonl, samples.jsonl and events.jsonl in a run directory,
// and of TensorBoard event files beside them (metrics/tensorboard.hpp) when asked.
//
// Each line is written with a single write(2) on an O_APPEND descriptor, so once log_step returns
// the line survives a crash of the process; a crash (or power loss) while writing loses at most
// that line. A torn last line left by such a crash is cut off when the log is opened again, so the
// next line never lands glued to a fragment. sync() makes everything written so far durable
// (fsync); the trainer calls it before a checkpoint so a resumed run never lacks logged steps.
//
// Only one process may write a run directory (rank 0 under data parallelism): a second RunLog on
// the same directory fails with an error instead of interleaving lines.
#pragma once
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace r1::metrics {

namespace tensorboard {
class EventWriter;
}

inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kSamplesFile = "samples.jsonl";
inline constexpr const char* kEventsFile = "events.jsonl";

struct RunLogOptions {
  bool tensorboard = false;        // also write every metric, sampled completions and the config as TensorBoard events
  size_t tensorboard_samples = 4;  // completions per logged step in the TensorBoard text summary
};

class RunLog {
 public:
  // Creates `run_dir` if needed and opens the files for appending (resume appends; TensorBoard
  // gets a new event file, which TensorBoard reads after the earlier ones).
  explicit RunLog(const std::filesystem::path& run_dir, RunLogOptions options = {});
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
  RunLog(RunLog&& other) noexcept;
  RunLog& operator=(RunLog&& other) noexcept;

  // Appends one line to metrics.jsonl. `metrics` must hold "step" (an integer) and flat values
  // (numbers, booleans, strings or null; no nested objects: use "reward/math/mean"). "time" (unix
  // seconds) is added when absent. "step" and "time" come first on the line; non-finite numbers
  // are written as null (JSON has no NaN), which readers show as a gap.
  void log_step(const boost::json::object& metrics);

  // Appends one line per sample to samples.jsonl, each an object that gets "step" first.
  void log_samples(int64_t step, const boost::json::array& samples);

  // Appends one line to events.jsonl (guard firings, rollbacks): an object with an integer "step";
  // "time" is added. events.jsonl is the run's history and is never truncated.
  void log_event(const boost::json::object& event);

  // The run config as a TensorBoard text summary (a no-op without TensorBoard).
  void log_config(const std::string& toml);

  // For resume from a checkpoint at `step`: drops every line of metrics.jsonl and samples.jsonl
  // whose step is greater (the steps that will be redone), rewriting the files atomically.
  void truncate_after(int64_t step);

  // fsync every file: what was logged so far survives a power loss.
  void sync();

  const std::filesystem::path& dir() const { return dir_; }
  // Notes from opening the log, e.g. that a torn last line from a crash was cut off.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  void open_files();
  void close_files();
  void append(int fd, const std::filesystem::path& file, const std::string& text);

  std::filesystem::path dir_;
  RunLogOptions options_;
  int metrics_fd_ = -1;
  int samples_fd_ = -1;
  int events_fd_ = -1;
  std::unique_ptr<tensorboard::EventWriter> tensorboard_;
  std::vector<std::string> warnings_;
};

}  // namespace r1::metrics
