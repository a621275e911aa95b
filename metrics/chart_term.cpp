// Terminal charts in braille: each character cell holds 2x4 dots, so a W x H chart has a 2W x 4H
// dot grid. Consecutive points are joined with straight lines (Bresenham), so noisy data reads as a
// band whose width is the noise.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "metrics/chart.hpp"

namespace r1::metrics {

namespace {

// Glyphs that tell runs apart without colour.
constexpr const char* kGlyphs[] = {"•", "×", "+", "○", "*", "#", "@", "%"};
// Braille bit of the dot at (column 0..1, row 0..3) of a cell.
constexpr uint8_t kBrailleBit[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};

std::string braille(uint8_t mask) {
  char32_t cp = 0x2800 + mask;  // U+2800..U+28FF, three bytes in UTF-8
  std::string s;
  s += static_cast<char>(0xE0 | (cp >> 12));
  s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  s += static_cast<char>(0x80 | (cp & 0x3F));
  return s;
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Labels for the bottom and top of the y axis, with enough digits to tell them apart.
std::pair<std::string, std::string> range_labels(double lo, double hi) {
  std::string a = format_value(lo), b = format_value(hi);
  if (a == b && lo != hi) a = fmt::format("{:.6g}", lo), b = fmt::format("{:.6g}", hi);
  return {a, b};
}

}  // namespace

std::string format_value(double v) {
  if (v == 0 || !std::isfinite(v)) return v == 0 ? "0" : fmt::format("{}", v);
  double a = std::fabs(v);
  if (a >= 1e7 || a < 1e-3) return fmt::format("{:.3g}", v);
  if (a >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

const char* run_color_ansi(size_t i) {
  // Blue, yellow, red, cyan, green, magenta: the order of the file palette (run_color_hex).
  static const char* codes[] = {"34", "33", "31", "36", "32", "35"};
  return codes[i % 6];
}

std::string render_terminal(const Figure& fig, size_t panel, const TermStyle& style) {
  const Panel& p = fig.panels.at(panel);
  const int W = std::max(style.width, 8), H = std::max(style.height, 2);
  const int PW = 2 * W, PH = 4 * H;
  const bool several = fig.runs.size() > 1;
  auto bold = [&](const std::string& s) { return style.color ? "\x1b[1m" + s + "\x1b[0m" : s; };
  auto dim = [&](const std::string& s) { return style.color ? "\x1b[2m" + s + "\x1b[0m" : s; };
  auto paint = [&](size_t run, const std::string& s) {
    return style.color ? fmt::format("\x1b[{}m{}\x1b[0m", run_color_ansi(run), s) : s;
  };

  // Title: the metric, the smoothing, and for a single run its last value.
  std::string out = bold(p.metric);
  if (fig.smoothing > 0) out += dim(fmt::format(" (EMA {})", fig.smoothing));
  int64_t xmin = std::numeric_limits<int64_t>::max(), xmax = std::numeric_limits<int64_t>::min();
  double ymin = std::numeric_limits<double>::infinity(), ymax = -ymin;
  for (const auto& c : p.curves)
    for (const auto& pt : c.points) {
      xmin = std::min(xmin, pt.step), xmax = std::max(xmax, pt.step);
      ymin = std::min(ymin, pt.value), ymax = std::max(ymax, pt.value);
    }
  if (xmin > xmax) return out + "\n  (no data)\n";
  if (!several && !p.curves.empty()) {
    const Point& last = p.curves.front().points.back();
    out += fmt::format("  last {} at step {}", format_value(last.value), last.step);
  }
  out += '\n';

  // Plot every run onto one dot grid; a cell takes the colour (or glyph) of the last run in it.
  std::vector<uint8_t> mask(static_cast<size_t>(W * H), 0);
  std::vector<int> owner(static_cast<size_t>(W * H), -1);
  auto to_px = [&](int64_t s) {
    if (xmax == xmin) return PW / 2;
    return static_cast<int>(std::lround(static_cast<double>(s - xmin) / static_cast<double>(xmax - xmin) * (PW - 1)));
  };
  auto to_py = [&](double v) {
    if (ymax == ymin) return PH / 2;
    return static_cast<int>(std::lround((ymax - v) / (ymax - ymin) * (PH - 1)));
  };
  auto dot = [&](int x, int y, size_t run) {
    size_t cell = static_cast<size_t>((y / 4) * W + x / 2);
    mask[cell] |= kBrailleBit[y % 4][x % 2];
    owner[cell] = static_cast<int>(run);
  };
  auto line = [&](int x0, int y0, int x1, int y1, size_t run) {
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      dot(x0, y0, run);
      if (x0 == x1 && y0 == y1) break;
      int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  };
  const bool glyphs = several && !style.color;
  for (const auto& c : p.curves) {
    if (glyphs) {
      // One glyph per column at the column's mean: lines joining noisy points would fill a band
      // and hide the other runs.
      std::vector<double> sum(static_cast<size_t>(W), 0);
      std::vector<int> n(static_cast<size_t>(W), 0);
      for (const auto& pt : c.points) {
        size_t col = static_cast<size_t>(to_px(pt.step) / 2);
        sum[col] += pt.value, ++n[col];
      }
      for (int col = 0; col < W; ++col)
        if (n[static_cast<size_t>(col)])
          dot(2 * col, to_py(sum[static_cast<size_t>(col)] / n[static_cast<size_t>(col)]), c.run);
      continue;
    }
    int px = -1, py = -1;
    for (const auto& pt : c.points) {
      int x = to_px(pt.step), y = to_py(pt.value);
      if (px < 0)
        dot(x, y, c.run);
      else
        line(px, py, x, y, c.run);
      px = x, py = y;
    }
  }

  // Y labels: maximum on the top row, minimum on the bottom row, the middle row's value between.
  std::vector<std::string> labels(static_cast<size_t>(H));
  if (ymax == ymin) {
    labels[static_cast<size_t>((PH / 2) / 4)] = format_value(ymin);
  } else {
    auto [lo, hi] = range_labels(ymin, ymax);
    labels.front() = hi, labels.back() = lo;
    if (H >= 5) {
      int mid = H / 2;
      double at = ymax - (4.0 * mid + 1.5) / (PH - 1) * (ymax - ymin);
      labels[static_cast<size_t>(mid)] = format_value(at);
    }
  }
  size_t lw = 0;
  for (const auto& l : labels) lw = std::max(lw, l.size());

  for (int r = 0; r < H; ++r) {
    const std::string& l = labels[static_cast<size_t>(r)];
    out += std::string(lw - l.size(), ' ') + l + (l.empty() ? " │" : " ┤");
    int painted = -1;  // the colour currently set
    for (int c = 0; c < W; ++c) {
      size_t cell = static_cast<size_t>(r * W + c);
      if (!mask[cell]) {
        out += ' ';
        continue;
      }
      size_t run = static_cast<size_t>(owner[cell]);
      if (style.color && painted != owner[cell]) {
        out += fmt::format("\x1b[{}m", run_color_ansi(run));
        painted = owner[cell];
      }
      out += glyphs ? std::string(kGlyphs[run % 8]) : braille(mask[cell]);
    }
    if (painted >= 0) out += "\x1b[0m";
    out += '\n';
  }

  // X axis with the step range, and under it a tick for each guard event in that range.
  out += std::string(lw + 1, ' ') + "└" + repeat("─", W) + '\n';
  std::vector<int> marks(static_cast<size_t>(W), -1);
  for (const auto& m : fig.markers)
    if (m.step >= xmin && m.step <= xmax) marks[static_cast<size_t>(to_px(m.step) / 2)] = static_cast<int>(m.run);
  if (std::any_of(marks.begin(), marks.end(), [](int r) { return r >= 0; })) {
    std::string row = std::string(lw + 2, ' ');
    for (int r : marks) row += r < 0 ? " " : paint(static_cast<size_t>(r), "▲");
    out += row + '\n';
  }
  std::string first = std::to_string(xmin), last = std::to_string(xmax), steps = "step";
  std::string axis = xmin == xmax ? std::string(static_cast<size_t>(W / 2), ' ') + first : first;
  if (xmin != xmax) {
    int gap = W - static_cast<int>(first.size() + last.size());
    if (gap >= static_cast<int>(steps.size()) + 2) {
      int left = (gap - static_cast<int>(steps.size())) / 2;
      axis += std::string(static_cast<size_t>(left), ' ') + steps +
              std::string(static_cast<size_t>(gap - left - static_cast<int>(steps.size())), ' ') + last;
    } else {
      axis += std::string(static_cast<size_t>(std::max(gap, 1)), ' ') + last;
    }
  }
  out += std::string(lw + 2, ' ') + axis + '\n';

  // Legend for several runs: the swatch, the run and its last value.
  if (several) {
    std::string legend = std::string(lw + 2, ' ');
    for (size_t run = 0; run < fig.runs.size(); ++run) {
      auto it = std::find_if(p.curves.begin(), p.curves.end(), [&](const Curve& c) { return c.run == run; });
      std::string swatch = style.color ? paint(run, "━━") : std::string(kGlyphs[run % 8]);
      legend += run ? "   " : "";
      if (it == p.curves.end() || it->points.empty())
        legend += swatch + " " + fig.runs[run] + dim(" (not logged)");
      else
        legend += swatch + " " + fig.runs[run] + " " + format_value(it->points.back().value);
    }
    out += legend + '\n';
  }
  return out;
}

}  // namespace r1::metrics
