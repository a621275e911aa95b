// The logic of `r1 curves` and `r1 samples`; cli/cmd_curves.cpp parses the flags and calls these.
// Output goes to `out`, warnings (torn lines, restarts) to `err`. Bad input (a missing run
// directory, an unknown metric, a step without samples) throws r1::ConfigError (exit code 2).
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace r1::metrics {

// The metrics `r1 curves` shows when none are named (those a run logged).
std::vector<std::string> default_curve_metrics();

struct CurvesOptions {
  std::vector<std::filesystem::path> runs;  // run directories (or metrics.jsonl files) to overlay
  std::vector<std::string> metrics;         // names, or patterns with '*' ("reward/*"); empty: defaults
  std::filesystem::path out;                // FILE.svg or FILE.html to write too; empty: terminal only
  double smooth = 0;                        // EMA weight of the past in [0, 1); 0: raw values
  int width = 0;                            // terminal plot width in cells; 0: fit terminal_columns
  int height = 10;                          // terminal plot height in rows
  int terminal_columns = 80;
  bool color = false;  // ANSI colours (stdout is a tty)
};

void run_curves(const CurvesOptions& opts, std::ostream& out, std::ostream& err);

struct SamplesOptions {
  std::filesystem::path run;
  std::optional<int64_t> step;  // absent: the last step with samples
  enum class Order { file, best, worst } order = Order::file;
  int64_t limit = 0;  // 0: all
  int width = 0;      // wrap text to this many columns; 0: 100
  bool color = false;
};

void run_samples(const SamplesOptions& opts, std::ostream& out, std::ostream& err);

// Labels for run directories: their names, made unique with parent folders when they clash
// ("a/out", "b/out").
std::vector<std::string> run_labels(const std::vector<std::filesystem::path>& runs);

}  // namespace r1::metrics
