// Renderers of training curves: Unicode charts for a terminal, and standalone SVG / HTML files.
// A Figure is one panel per metric; each panel overlays the runs that logged that metric. A run
// keeps its colour (and, without colour, its glyph) in every panel.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "metrics/reader.hpp"

namespace r1::metrics {

struct Curve {
  size_t run = 0;             // index into Figure::runs
  std::vector<Point> points;  // what is drawn (smoothed when smoothing is on)
  std::vector<Point> raw;     // the unsmoothed values, drawn faintly in files; empty when not smoothed
};

struct Panel {
  std::string metric;
  std::vector<Curve> curves;  // runs without this metric are absent
};

// A guard event of one run (events.jsonl), drawn at its step in every panel: a tick under the x
// axis in the terminal, a dashed vertical line with the message as its tooltip in files.
struct Marker {
  size_t run = 0;
  int64_t step = 0;
  std::string label;  // "kl rollback", "rollback", "stop"
  std::string message;
};

struct Figure {
  std::vector<std::string> runs;  // labels, e.g. the run directory names
  std::vector<Panel> panels;
  double smoothing = 0;  // EMA weight, shown in titles when > 0
  std::vector<Marker> markers;
};

struct TermStyle {
  int width = 60;      // plot area, in character cells
  int height = 10;     // plot area rows
  bool color = false;  // ANSI colours (a tty); without them several runs get distinct glyphs
};

// One panel as text: a title line, `height` rows of plot with the y axis labelled by the maximum,
// middle and minimum values, an x axis with the first and last step, and (several runs) a legend.
// With colour each run is drawn in braille dots of its colour; without colour a single run is drawn
// in braille and several runs with one glyph per run (• × + ○ …), one per column at the column's
// mean, so they stay distinguishable.
std::string render_terminal(const Figure& fig, size_t panel, const TermStyle& style);

// The whole figure as a standalone SVG document: a grid of panels (two columns), each with a title,
// gridlines, "nice" tick labels on both axes, one <polyline> per run and a legend naming the runs.
std::string render_svg(const Figure& fig);

// A standalone HTML page (no scripts, no external assets): a title, a legend, the SVG inline and a
// table of each metric's last, min and max value per run.
std::string render_html(const Figure& fig);

// The colour of run `i` as "#rrggbb" (the files) and as an ANSI SGR code (the terminal).
const char* run_color_hex(size_t i);
const char* run_color_ansi(size_t i);

// Compact labels for values: 0.8125, 1234, 1.5e-06, 3.2e+09.
std::string format_value(double v);

}  // namespace r1::metrics
