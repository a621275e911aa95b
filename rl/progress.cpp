#include "rl/progress.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <string>

namespace r1 {

namespace {

std::string fmt_duration(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
}

double num(const boost::json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : 0.0;
}

}  // namespace

ProgressLine::ProgressLine(int64_t steps, bool enabled)
    : steps_(steps), enabled_(enabled), tty_(isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void ProgressLine::step(int64_t step, const boost::json::object& m, double step_seconds) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line =
      fmt::format("step {}/{} | reward {:.3f} | acc {:.3f} | len {:.0f} | gen {:.0f} tok/s | {} | ETA {}", step, steps_,
                  num(m, "reward/mean"), num(m, "accuracy"), num(m, "length/mean"), num(m, "tokens_per_s/gen"),
                  fmt_duration(elapsed), fmt_duration(step_seconds * static_cast<double>(steps_ - step)));
  if (m.contains("eval/accuracy")) {
    line += fmt::format(" | eval acc {:.3f}", num(m, "eval/accuracy"));
    if (m.contains("eval/reward/format/mean")) line += fmt::format(" fmt {:.3f}", num(m, "eval/reward/format/mean"));
  }
  const bool last = step == steps_;
  if (tty_)
    fmt::print(stderr, "\r\033[K{}{}", line, last ? "\n" : "");
  else
    fmt::print(stderr, "{}\n", line);
}

}  // namespace r1
