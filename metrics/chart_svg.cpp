// SVG and HTML figures: panels in a grid, "nice" ticks (1, 2, 5 x 10^k), light gridlines, one
// <polyline> per run and metric, a legend. Presentation attributes only (no CSS, no scripts), so
// any viewer, browser or converter draws it the same.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "metrics/chart.hpp"

namespace r1::metrics {

namespace {

// Panel geometry, in SVG user units (pixels).
constexpr double kPanelW = 480, kPanelH = 280;
constexpr double kLeft = 64, kRight = 20, kTop = 34, kBottom = 44;
constexpr double kGap = 20, kPad = 16;
constexpr const char* kFont = "Helvetica, Arial, sans-serif";

std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even when escaped.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n')
          out += ' ';
        else
          out += c;
    }
  }
  return out;
}

// Ticks covering [lo, hi] at a 1/2/5 x 10^k spacing; the axis domain is [ticks.front(), ticks.back()].
struct Ticks {
  std::vector<double> at;
  double step = 1;
};

Ticks nice_ticks(double lo, double hi, int target, bool integers) {
  if (!(hi > lo)) {  // a constant series: a small band around it
    double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= d, hi += d;
  }
  double raw = (hi - lo) / target;
  double mag = std::pow(10, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  if (integers) step = std::max(step, 1.0);
  Ticks t;
  t.step = step;
  double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  for (double i = first; i <= last + 0.5; ++i) {
    double v = i * step;
    t.at.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  }
  if (t.at.size() < 2) t.at.push_back(t.at.back() + step);
  return t;
}

std::string tick_label(double v, double step) {
  double a = std::max(std::fabs(v), step);
  if (a >= 1e7 || step < 1e-5) return format_value(v);
  int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", v, decimals);
}

// At most ~2 points per pixel column: per column the first, lowest, highest and last point in
// order, which keeps the envelope of noisy series while bounding the file size.
std::vector<Point> decimate(const std::vector<Point>& pts, int64_t x0, int64_t x1, double width) {
  if (pts.size() <= static_cast<size_t>(width * 2) || x1 <= x0) return pts;
  std::vector<Point> out;
  size_t i = 0;
  while (i < pts.size()) {
    auto col = [&](const Point& p) {
      return static_cast<int64_t>(static_cast<double>(p.step - x0) / static_cast<double>(x1 - x0) * width);
    };
    int64_t c = col(pts[i]);
    size_t j = i, lo = i, hi = i;
    while (j < pts.size() && col(pts[j]) == c) {
      if (pts[j].value < pts[lo].value) lo = j;
      if (pts[j].value > pts[hi].value) hi = j;
      ++j;
    }
    std::vector<size_t> keep = {i, lo, hi, j - 1};
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    for (size_t k : keep) out.push_back(pts[k]);
    i = j;
  }
  return out;
}

struct Layout {
  int columns = 1, rows = 1;
  double width = 0, height = 0, legend_h = 0;
};

double text_width(std::string_view s, double px) { return static_cast<double>(s.size()) * px * 0.6; }

// The legend as rows of "── label" items; returns its height.
double legend(const Figure& fig, double width, double y0, std::string* out) {
  double x = kPad, y = y0 + 14, row_h = 22;
  for (size_t i = 0; i < fig.runs.size(); ++i) {
    double w = 34 + text_width(fig.runs[i], 13) + 22;
    if (x + w > width - kPad && x > kPad) x = kPad, y += row_h;
    if (out)
      *out += fmt::format(
          "<g class=\"legend-item\"><line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
          "stroke-width=\"3\" stroke-linecap=\"round\"/><text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"13\" "
          "fill=\"#222\">{}</text></g>\n",
          x, y - 4, x + 24, y - 4, run_color_hex(i), x + 32, y, esc(fig.runs[i]));
    x += w;
  }
  if (fig.smoothing > 0) {
    if (out)
      *out += fmt::format(
          "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" fill=\"#777\">EMA smoothing {} (faint "
          "lines: raw values)</text>\n",
          kPad, y + 18, fig.smoothing);
    y += 18;
  }
  return y - y0 + 12;
}

Layout layout(const Figure& fig, bool with_legend) {
  Layout l;
  l.columns = fig.panels.size() > 1 ? 2 : 1;
  l.rows = static_cast<int>((fig.panels.size() + 1) / static_cast<size_t>(l.columns));
  l.width = 2 * kPad + l.columns * kPanelW + (l.columns - 1) * kGap;
  l.legend_h = with_legend ? legend(fig, l.width, kPad, nullptr) : 0;
  l.height = 2 * kPad + l.legend_h + l.rows * kPanelH + (l.rows - 1) * kGap;
  return l;
}

void panel_svg(const Figure& fig, const Panel& p, double ox, double oy, std::string& out) {
  const double pw = kPanelW - kLeft - kRight, ph = kPanelH - kTop - kBottom;
  const double L = ox + kLeft, T = oy + kTop;
  int64_t xmin = std::numeric_limits<int64_t>::max(), xmax = std::numeric_limits<int64_t>::min();
  double ymin = std::numeric_limits<double>::infinity(), ymax = -ymin;
  for (const auto& c : p.curves) {
    for (const auto* pts : {&c.points, &c.raw})
      for (const auto& pt : *pts) {
        xmin = std::min(xmin, pt.step), xmax = std::max(xmax, pt.step);
        ymin = std::min(ymin, pt.value), ymax = std::max(ymax, pt.value);
      }
  }
  out += fmt::format("<g class=\"panel\" data-metric=\"{}\">\n", esc(p.metric));
  out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">{}</text>\n",
                     L, oy + 20, esc(p.metric));
  out += fmt::format(
      "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#fcfcfc\" "
      "stroke=\"#c8c8c8\"/>\n",
      L, T, pw, ph);
  if (xmin > xmax) {
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" fill=\"#999\" text-anchor=\"middle\">no "
        "data</text>\n</g>\n",
        L + pw / 2, T + ph / 2);
    return;
  }
  Ticks xt = nice_ticks(static_cast<double>(xmin), static_cast<double>(xmax), 6, true);
  Ticks yt = nice_ticks(ymin, ymax, 5, false);
  const double x0 = xt.at.front(), x1 = xt.at.back(), y0 = yt.at.front(), y1 = yt.at.back();
  auto X = [&](double s) { return L + (s - x0) / (x1 - x0) * pw; };
  auto Y = [&](double v) { return T + ph - (v - y0) / (y1 - y0) * ph; };

  // Gridlines and tick labels.
  out += "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  for (double v : yt.at)
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", L, Y(v), L + pw, Y(v));
  for (double s : xt.at)
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", X(s), T, X(s), T + ph);
  out += "</g>\n";
  out += fmt::format("<g font-size=\"11\" fill=\"#555\">\n");
  for (double v : yt.at)
    out += fmt::format("<text class=\"ytick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 7,
                       Y(v) + 4, tick_label(v, yt.step));
  for (double s : xt.at)
    out += fmt::format("<text class=\"xtick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", X(s),
                       T + ph + 16, tick_label(s, xt.step));
  out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#777\">step</text>\n", L + pw / 2,
                     T + ph + 34);
  out += "</g>\n";
  // Axis lines over the grid.
  out += fmt::format("<path d=\"M{:.1f},{:.1f}V{:.1f}H{:.1f}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1\"/>\n", L,
                     T, T + ph, L + pw);

  // Curves: the raw values faint under the smoothed line; markers when there are few points.
  auto coords = [&](const std::vector<Point>& pts) {
    std::string s;
    for (const auto& pt : decimate(pts, static_cast<int64_t>(x0), static_cast<int64_t>(x1), pw))
      s += fmt::format("{}{:.1f},{:.1f}", s.empty() ? "" : " ", X(static_cast<double>(pt.step)), Y(pt.value));
    return s;
  };
  for (const auto& c : p.curves) {
    if (c.raw.empty()) continue;
    std::string d = coords(c.raw);
    std::replace(d.begin(), d.end(), ' ', 'L');
    out += fmt::format(
        "<path class=\"raw\" d=\"M{}\" fill=\"none\" stroke=\"{}\" stroke-opacity=\"0.25\" "
        "stroke-width=\"1\"/>\n",
        d, run_color_hex(c.run));
  }
  for (const auto& c : p.curves) {
    const std::string& name = fig.runs.at(c.run);
    out += fmt::format(
        "<polyline class=\"series\" data-run=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" "
        "stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"{}\"><title>{}</title></polyline>\n",
        esc(name), run_color_hex(c.run), coords(c.points), esc(name + " · " + p.metric));
    if (c.points.size() <= 40)
      for (const auto& pt : c.points)
        out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.6\" fill=\"{}\"/>\n",
                           X(static_cast<double>(pt.step)), Y(pt.value), run_color_hex(c.run));
  }
  // Guard events: a dashed line at the step, its label at the top, the message as the tooltip.
  for (const auto& m : fig.markers) {
    const double s = static_cast<double>(m.step);
    if (s < x0 || s > x1) continue;
    out += fmt::format(
        "<g class=\"marker\" data-run=\"{}\"><title>{}</title><line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" "
        "y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\"/><text x=\"{:.1f}\" y=\"{:.1f}\" "
        "font-size=\"10\" fill=\"{}\">{}</text></g>\n",
        esc(fig.runs.at(m.run)), esc(fmt::format("step {}: {}", m.step, m.message)), X(s), T, X(s), T + ph,
        run_color_hex(m.run), X(s) + 3, T + 11, run_color_hex(m.run), esc(m.label));
  }
  out += "</g>\n";
}

std::string svg(const Figure& fig, bool with_legend) {
  Layout l = layout(fig, with_legend);
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"{}\">\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
      l.width, l.height, l.width, l.height, kFont);
  if (with_legend) legend(fig, l.width, kPad, &out);
  for (size_t i = 0; i < fig.panels.size(); ++i) {
    double ox = kPad + static_cast<double>(i % static_cast<size_t>(l.columns)) * (kPanelW + kGap);
    double oy = kPad + l.legend_h + static_cast<double>(i / static_cast<size_t>(l.columns)) * (kPanelH + kGap);
    panel_svg(fig, fig.panels[i], ox, oy, out);
  }
  out += "</svg>\n";
  return out;
}

}  // namespace

const char* run_color_hex(size_t i) {
  // Tableau 10: distinct, colour-blind aware, readable on white.
  static const char* colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                 "#b07aa1", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"};
  return colors[i % 10];
}

std::string render_svg(const Figure& fig) { return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + svg(fig, true); }

std::string render_html(const Figure& fig) {
  std::string runs;
  for (size_t i = 0; i < fig.runs.size(); ++i) runs += (i ? ", " : "") + fig.runs[i];
  std::string out =
      fmt::format(R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>r1 curves: {}</title>
<style>
body {{ font-family: {}; color: #222; margin: 24px; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
p.meta {{ color: #666; margin: 0 0 12px; font-size: 13px; }}
ul.legend {{ list-style: none; padding: 0; margin: 0 0 8px; display: flex; flex-wrap: wrap; gap: 18px; }}
ul.legend li {{ font-size: 14px; }}
ul.legend span {{ display: inline-block; width: 24px; height: 4px; border-radius: 2px; vertical-align: middle;
  margin-right: 8px; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: 16px; }}
th, td {{ padding: 4px 12px; border-bottom: 1px solid #e4e4e4; text-align: right; }}
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
</style>
</head>
<body>
<h1>Training curves</h1>
<p class="meta">{} run{}: {}{}</p>
<ul class="legend">
)",
                  esc(runs), kFont, fig.runs.size(), fig.runs.size() == 1 ? "" : "s", esc(runs),
                  fig.smoothing > 0 ? fmt::format(" · EMA smoothing {} (faint lines: raw values)", fig.smoothing) : "");
  for (size_t i = 0; i < fig.runs.size(); ++i)
    out += fmt::format("<li><span style=\"background: {}\"></span>{}</li>\n", run_color_hex(i), esc(fig.runs[i]));
  out += "</ul>\n" + svg(fig, false);
  out +=
      "<table>\n<tr><th>metric</th><th>run</th><th>last</th><th>at step</th><th>min</th><th>max</th>"
      "<th>points</th></tr>\n";
  for (const auto& p : fig.panels) {
    for (const auto& c : p.curves) {
      const auto& pts = c.raw.empty() ? c.points : c.raw;  // the table shows logged values
      if (pts.empty()) continue;
      auto [lo, hi] =
          std::minmax_element(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.value < b.value; });
      out += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                         esc(p.metric), esc(fig.runs.at(c.run)), format_value(pts.back().value), pts.back().step,
                         format_value(lo->value), format_value(hi->value), pts.size());
    }
  }
  out += "</table>\n</body>\n</html>\n";
  return out;
}

}  // namespace r1::metrics
