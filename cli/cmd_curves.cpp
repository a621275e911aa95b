// r1 curves / r1 samples: read a run directory's logs (metrics/). This file only maps flags onto
// r1::metrics::CurvesOptions / SamplesOptions; the logic and its tests live in metrics/.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "metrics/commands.hpp"

namespace r1::cli {

namespace {

// Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
bool stdout_color() { return isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr; }

int terminal_columns() {
  winsize ws{};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

}  // namespace

void add_curves(CLI::App& app) {
  auto o = std::make_shared<metrics::CurvesOptions>();
  auto* cmd = app.add_subcommand("curves",
                                 "draw training curves from run directories (metrics.jsonl) in the "
                                 "terminal, and optionally to an SVG or HTML file");
  cmd->add_option("runs", o->runs, "run directories to overlay (or their metrics.jsonl files)")->required();
  cmd->add_option("--metric", o->metrics,
                  "metric to draw (repeatable; '*' matches any text, e.g. 'reward/*'; default: reward/mean, accuracy, "
                  "length/mean, kl, entropy)")
      ->allow_extra_args(false);
  cmd->add_option("--out", o->out, "also write the curves to FILE.svg or FILE.html (standalone)");
  cmd->add_option("--smooth", o->smooth, "EMA smoothing weight in [0, 1), as in TensorBoard (0: off, 0.9: smooth)");
  cmd->add_option("--width", o->width, "terminal chart width in character cells (default: fit the terminal)");
  cmd->add_option("--height", o->height, "terminal chart height in rows");
  cmd->callback([o] {
    o->color = stdout_color();
    o->terminal_columns = terminal_columns();
    metrics::run_curves(*o, std::cout, std::cerr);
  });
}

void add_samples(CLI::App& app) {
  struct Flags {
    int64_t step = 0;
    bool best = false, worst = false;
  };
  auto o = std::make_shared<metrics::SamplesOptions>();
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("samples",
                                 "show the completions of one training step (samples.jsonl) with their "
                                 "reward breakdown");
  cmd->add_option("run", o->run, "run directory")->required();
  auto* step = cmd->add_option("--step", f->step, "training step (default: the last step with samples)");
  auto* best = cmd->add_flag("--best", f->best, "sort by reward, highest first");
  cmd->add_flag("--worst", f->worst, "sort by reward, lowest first")->excludes(best);
  cmd->add_option("--limit", o->limit, "show at most K samples (0: all)");
  cmd->add_option("--width", o->width, "wrap text to this many columns (default: the terminal width)");
  cmd->callback([o, f, step] {
    if (step->count() > 0) o->step = f->step;
    o->order = f->best    ? metrics::SamplesOptions::Order::best
               : f->worst ? metrics::SamplesOptions::Order::worst
                          : metrics::SamplesOptions::Order::file;
    o->color = stdout_color();
    if (o->width == 0) o->width = std::min(terminal_columns(), 120);
    metrics::run_samples(*o, std::cout, std::cerr);
  });
}

}  // namespace r1::cli
