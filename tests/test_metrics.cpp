// The run log (metrics/): RunLog writing and resuming, robust readers, EMA, the terminal, SVG and
// HTML charts, and the logic of `r1 curves` and `r1 samples`.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "metrics/metrics.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;
using namespace r1::metrics;

namespace {

// A fresh folder under the build tree.
fs::path fresh_dir(const std::string& name) {
  fs::path d = r1::test::binary_dir() / "test_metrics_tmp" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }
void append_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::app) << text;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

size_t columns(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// The y-axis label of a chart row ("" for an unlabelled row).
std::string y_label(const std::string& row) {
  size_t axis = row.find(" ┤");
  if (axis == std::string::npos) return "";
  return row.substr(row.find_first_not_of(' '), axis - row.find_first_not_of(' '));
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// The values of `metric` in a log, in step order.
std::vector<double> values(const MetricsLog& log, const std::string& metric) {
  std::vector<double> out;
  for (const auto& p : log.at(metric).points) out.push_back(p.value);
  return out;
}
std::vector<int64_t> steps(const MetricsLog& log, const std::string& metric) {
  std::vector<int64_t> out;
  for (const auto& p : log.at(metric).points) out.push_back(p.step);
  return out;
}

// A run directory with `n` steps of a rising reward and a falling kl.
fs::path make_run(const std::string& name, int n, double scale = 1.0) {
  fs::path d = fresh_dir(name);
  RunLog log(d);
  for (int s = 1; s <= n; ++s) {
    double x = static_cast<double>(s - 1) / std::max(1, n - 1);
    log.log_step({{"step", s},
                  {"reward/mean", scale * (0.1 + 0.8 * x)},
                  {"accuracy", 0.5 * x},
                  {"kl", 0.02 * (1 - x)},
                  {"time/rollout", 1.5},
                  {"lr", 1e-6}});
  }
  return d;
}

// Minimal XML well-formedness check: balanced tags, one root, quoted attributes, only the five
// predefined entities. Returns "" when well formed, else what is wrong.
std::string xml_problem(std::string_view x) {
  std::vector<std::string> stack;
  int roots = 0;
  size_t i = 0;
  auto check_text = [&](std::string_view t) -> std::string {
    for (size_t k = 0; k < t.size(); ++k) {
      if (t[k] == '<') return "raw '<' in text";
      if (t[k] != '&') continue;
      bool ok = false;
      for (std::string_view e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) ok = ok || t.substr(k, e.size()) == e;
      if (!ok) return "bad entity at '" + std::string(t.substr(k, 10)) + "'";
    }
    return "";
  };
  while (i < x.size()) {
    size_t lt = x.find('<', i);
    if (auto e = check_text(x.substr(i, lt == std::string_view::npos ? std::string_view::npos : lt - i)); !e.empty())
      return e;
    if (lt == std::string_view::npos) break;
    if (x.substr(lt, 5) == "<?xml") {
      i = x.find("?>", lt) + 2;
      continue;
    }
    if (x.substr(lt, 4) == "<!--") {
      i = x.find("-->", lt) + 3;
      continue;
    }
    size_t gt = lt + 1;
    char quote = 0;
    for (; gt < x.size(); ++gt) {  // the end of the tag, skipping quoted attribute values
      if (quote) {
        if (x[gt] == quote)
          quote = 0;
        else if (x[gt] == '<')
          return "'<' in an attribute value";
      } else if (x[gt] == '"' || x[gt] == '\'') {
        quote = x[gt];
      } else if (x[gt] == '>') {
        break;
      }
    }
    if (gt >= x.size()) return "unterminated tag";
    std::string_view tag = x.substr(lt + 1, gt - lt - 1);
    if (tag.empty()) return "empty tag";
    if (tag[0] == '/') {
      std::string name(tag.substr(1));
      if (stack.empty() || stack.back() != name) return "mismatched </" + name + ">";
      stack.pop_back();
    } else {
      bool self_closing = tag.back() == '/';
      std::string name(tag.substr(0, tag.find_first_of(" \t\n/")));
      if (stack.empty()) ++roots;
      if (auto e = check_text(tag.substr(name.size())); !e.empty() && e != "raw '<' in text") return e;
      if (!self_closing) stack.push_back(name);
    }
    i = gt + 1;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "expected one root element, got " + std::to_string(roots);
  return "";
}

}  // namespace

TEST_CASE("RunLog: one readable line per step, read back as series") {
  fs::path d = fresh_dir("roundtrip");
  {
    RunLog log(d);
    CHECK(log.warnings().empty());
    log.log_step({{"reward/mean", 0.5}, {"step", 1}, {"accuracy", 0.25}, {"length/max", 120}});
    log.log_step({{"step", 2}, {"reward/mean", 0.75}, {"accuracy", 0.5}, {"kl", NAN}, {"time", 1700000000.5}});
    log.log_step({{"step", 3}, {"reward/mean", 1.0}, {"eval/accuracy", 0.6}, {"truncated", true}, {"note", "x"}});
  }
  std::string text = r1::read_file(d / "metrics.jsonl");
  auto lines = lines_of(text);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].rfind("{\"step\":1,\"time\":", 0) == 0);               // step and time first
  CHECK(has(lines[0], "\"reward/mean\":0.5"));                          // not Boost's 5E-1
  CHECK(lines[1].rfind("{\"step\":2,\"time\":1700000000.5,", 0) == 0);  // a given time is kept
  CHECK(has(lines[1], "\"kl\":null"));                                  // NaN has no JSON form

  MetricsLog m = read_metrics(d);
  CHECK(m.steps == 3);
  CHECK(m.warnings.empty());
  CHECK(m.names() == std::vector<std::string>{"accuracy", "eval/accuracy", "length/max", "reward/mean", "truncated"});
  CHECK(values(m, "reward/mean") == std::vector<double>{0.5, 0.75, 1.0});
  CHECK(steps(m, "accuracy") == std::vector<int64_t>{1, 2});
  CHECK(steps(m, "eval/accuracy") == std::vector<int64_t>{3});  // eval keys only on some steps
  CHECK(values(m, "truncated") == std::vector<double>{1.0});    // booleans as 0/1
  CHECK_FALSE(m.has("kl"));                                     // only nulls: nothing to draw
  CHECK_FALSE(m.has("time"));
  CHECK_FALSE(m.has("note"));  // strings are not series
}

TEST_CASE("RunLog: rejects lines without an integer step and nested metrics") {
  fs::path d = fresh_dir("reject");
  RunLog log(d);
  CHECK_THROWS_WITH_AS(log.log_step({{"reward/mean", 1.0}}), doctest::Contains("integer \"step\""), r1::Error);
  CHECK_THROWS_WITH_AS(log.log_step({{"step", 1.5}}), doctest::Contains("got float"), r1::Error);
  CHECK_THROWS_WITH_AS(log.log_step({{"step", 1}, {"reward", {{"math", 1.0}}}}),
                       doctest::Contains("metrics are flat, name each value 'reward/<part>'"), r1::Error);
  CHECK_THROWS_WITH_AS(log.log_samples(1, bj::array{1, 2}), doctest::Contains("expected an object"), r1::Error);
  CHECK(r1::read_file(d / "metrics.jsonl").empty());  // nothing half-written
}

TEST_CASE("RunLog: one writer per run directory") {
  fs::path d = fresh_dir("lock");
  RunLog first(d);
  CHECK_THROWS_WITH_AS(RunLog{d}, doctest::Contains("another process is already writing this run directory"),
                       r1::Error);
  RunLog moved(std::move(first));
  moved.log_step({{"step", 1}, {"kl", 0.1}});
  CHECK(read_metrics(d).steps == 1);
}

TEST_CASE("reader: a torn last line is skipped with a warning, a bad line elsewhere names file:line") {
  fs::path d = fresh_dir("torn");
  write_text(d / "metrics.jsonl", "{\"step\":1,\"kl\":0.5}\n{\"step\":2,\"kl\":0.25}\n{\"step\":3,\"kl\":0.");
  MetricsLog m = read_metrics(d);
  CHECK(values(m, "kl") == std::vector<double>{0.5, 0.25});
  REQUIRE(m.warnings.size() == 1);
  CHECK(has(m.warnings[0], "metrics.jsonl:3: skipped a torn last line"));

  write_text(d / "metrics.jsonl", "{\"step\":1,\"kl\":0.5}\n{\"step\":2,\"kl\":\n{\"step\":3,\"kl\":0.1}\n");
  CHECK_THROWS_WITH_AS(read_metrics(d), doctest::Contains("metrics.jsonl:2: invalid JSON"), r1::Error);
  write_text(d / "metrics.jsonl", "{\"step\":1}\n[1,2]\n{\"step\":3}\n");
  CHECK_THROWS_WITH_AS(read_metrics(d), doctest::Contains("metrics.jsonl:2: expected a JSON object"), r1::Error);
  write_text(d / "metrics.jsonl", "{\"kl\":1}\n");
  CHECK_THROWS_WITH_AS(read_metrics(d), doctest::Contains("metrics.jsonl:1: no integer \"step\""), r1::Error);

  CHECK_THROWS_WITH_AS(read_metrics(d / "nope"), doctest::Contains("no such run directory"), r1::ConfigError);
  fs::path empty = fresh_dir("torn_empty");
  CHECK_THROWS_WITH_AS(read_metrics(empty), doctest::Contains("no metrics.jsonl here; is it a run directory?"),
                       r1::ConfigError);
}

TEST_CASE("reader: a restart from an earlier step replaces the later lines") {
  MetricsLog m = parse_metrics(
      "{\"step\":1,\"kl\":1}\n{\"step\":2,\"kl\":2}\n{\"step\":3,\"kl\":3}\n"
      "{\"step\":2,\"kl\":20}\n{\"step\":3,\"kl\":30}\n{\"step\":4,\"kl\":40}\n",
      "m.jsonl");
  CHECK(steps(m, "kl") == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(values(m, "kl") == std::vector<double>{1, 20, 30, 40});
  REQUIRE(m.warnings.size() == 1);
  CHECK(has(m.warnings[0], "m.jsonl:4: step 2 follows step 3"));
}

TEST_CASE("RunLog: reopening cuts a torn tail so the next line starts clean") {
  fs::path d = fresh_dir("reopen");
  {
    RunLog log(d);
    log.log_step({{"step", 1}, {"kl", 0.5}});
    log.log_samples(1, bj::array{bj::object{{"completion", "a"}, {"reward", 1}}});
  }
  append_text(d / "metrics.jsonl", "{\"step\":2,\"kl\":0.");  // a crash mid-write
  append_text(d / "samples.jsonl", "{\"step\":2,\"compl");
  RunLog log(d);
  REQUIRE(log.warnings().size() == 2);
  CHECK(has(log.warnings()[0], "metrics.jsonl: cut off a torn last line (17 bytes)"));
  log.log_step({{"step", 2}, {"kl", 0.25}});
  MetricsLog m = read_metrics(d);
  CHECK(m.warnings.empty());
  CHECK(values(m, "kl") == std::vector<double>{0.5, 0.25});
  CHECK(read_samples(d, 1).samples.size() == 1);
}

TEST_CASE("RunLog: truncate_after drops the steps a resume redoes, in both files") {
  fs::path d = fresh_dir("truncate");
  {
    RunLog log(d);
    for (int s = 1; s <= 5; ++s) {
      log.log_step({{"step", s}, {"kl", s * 1.0}});
      log.log_samples(s, bj::array{bj::object{{"completion", fmt::format("c{}", s)}, {"reward", s}}});
    }
    log.sync();
  }
  {
    RunLog log(d);  // resume from a checkpoint at step 3
    log.truncate_after(3);
    CHECK(lines_of(r1::read_file(d / "metrics.jsonl")).size() == 3);
    CHECK(read_samples(d, std::nullopt).steps == std::vector<int64_t>{1, 2, 3});
    log.log_step({{"step", 4}, {"kl", 40.0}});
    log.log_samples(4, bj::array{bj::object{{"completion", "again"}, {"reward", 0}}});
  }
  MetricsLog m = read_metrics(d);
  CHECK(m.warnings.empty());
  CHECK(values(m, "kl") == std::vector<double>{1, 2, 3, 40});
  StepSamples s4 = read_samples(d, 4);
  REQUIRE(s4.samples.size() == 1);
  CHECK(s4.samples[0].at("completion").as_string() == "again");

  // Lines out of order (an earlier resume that did not truncate) force a full rewrite; the log
  // must keep appending to the new file, not the replaced one.
  write_text(d / "metrics.jsonl", "{\"step\":1}\n{\"step\":2}\n{\"step\":5}\n{\"step\":2,\"kl\":7}\n");
  {
    RunLog log(d);
    log.truncate_after(2);
    log.log_step({{"step", 3}, {"kl", 9.0}});
  }
  auto lines = lines_of(r1::read_file(d / "metrics.jsonl"));
  REQUIRE(lines.size() == 4);
  CHECK(lines[2] == "{\"step\":2,\"kl\":7}");
  CHECK(values(read_metrics(d), "kl") == std::vector<double>{7, 9});

  write_text(d / "metrics.jsonl", "{\"step\":1}\nnot json\n{\"step\":2}\n");
  RunLog bad(d);
  CHECK_THROWS_WITH_AS(bad.truncate_after(1), doctest::Contains("metrics.jsonl:2: not a log line"), r1::Error);
}

TEST_CASE("ema: TensorBoard-style smoothing, debiased") {
  Series s{"x", {{1, 0}, {2, 1}, {3, 1}}};
  Series same = ema(s, 0);
  CHECK(same.points[1].value == 1.0);
  Series e = ema(s, 0.5);
  REQUIRE(e.points.size() == 3);
  CHECK(e.points[0].value == doctest::Approx(0.0));
  CHECK(e.points[1].value == doctest::Approx(2.0 / 3.0));  // (0.5*0 + 1) / 1.5
  CHECK(e.points[2].value == doctest::Approx(6.0 / 7.0));
  CHECK(e.points[2].step == 3);
  Series flat = ema(Series{"c", {{1, 3}, {2, 3}, {3, 3}}}, 0.9);  // debiased: a constant stays put
  for (const auto& p : flat.points) CHECK(p.value == doctest::Approx(3.0));
  CHECK_THROWS_WITH_AS(ema(s, 1.0), doctest::Contains("[0, 1)"), r1::Error);
}

TEST_CASE("terminal chart: rows, columns, y labels with min and max, step range") {
  fs::path d = make_run("term1", 100);
  MetricsLog m = read_metrics(d);
  Figure fig{{"term1"}, {Panel{"reward/mean", {Curve{0, m.at("reward/mean").points, {}}}}}, 0};
  TermStyle st{40, 8, false};
  std::string chart = render_terminal(fig, 0, st);
  auto lines = lines_of(chart);
  REQUIRE(lines.size() == 1 + 8 + 2);  // title, plot rows, axis, step labels
  CHECK(lines[0] == "reward/mean  last 0.9 at step 100");
  CHECK(y_label(lines[1]) == "0.9");     // the maximum on the top row
  CHECK(y_label(lines[8]) == "0.1");     // the minimum on the bottom row
  CHECK(y_label(lines[5]) == "0.4484");  // row 4 of 8, at its centre: 0.9 - 17.5/31 * 0.8
  CHECK(y_label(lines[2]) == "");
  const size_t axis = columns(lines[1].substr(0, lines[1].find("┤")));  // labels are right-aligned
  CHECK(axis == 7);
  for (int r = 1; r <= 8; ++r) {
    CAPTURE(r);
    CHECK(columns(lines[static_cast<size_t>(r)]) == axis + 1 + 40);  // label, axis, 40 cells
  }
  CHECK(lines[9] == std::string(axis, ' ') + "└" + [] {
    std::string s;
    for (int i = 0; i < 40; ++i) s += "─";
    return s;
  }());
  CHECK(lines[10].rfind(std::string(axis + 1, ' ') + "1 ", 0) == 0);  // the first step under the first cell
  CHECK(lines[10].size() - lines[10].rfind("100") == 3);              // the last step ends the axis
  CHECK(has(lines[10], "step"));
  // A rising line: the first cell is drawn on the bottom row, the last on the top row.
  CHECK(lines[8].substr(lines[8].find("┤") + 3, 3) != " ");
  CHECK(lines[1].substr(lines[1].size() - 3) != " ");
  CHECK(has(chart, "\xe2\xa0"));     // braille block U+28xx
  CHECK_FALSE(has(chart, "\x1b["));  // no colour codes off a tty
}

TEST_CASE("terminal chart: several runs in colours on a tty, glyphs otherwise") {
  MetricsLog a = read_metrics(make_run("term_a", 50)), b = read_metrics(make_run("term_b", 80, 0.5));
  Figure fig{
      {"term_a", "term_b"},
      {Panel{"reward/mean", {Curve{0, a.at("reward/mean").points, {}}, Curve{1, b.at("reward/mean").points, {}}}}},
      0};
  std::string colored = render_terminal(fig, 0, TermStyle{50, 10, true});
  CHECK(has(colored, "\x1b[34m"));  // run 0 in blue
  CHECK(has(colored, "\x1b[33m"));  // run 1 in yellow
  CHECK(has(colored, "term_a 0.9"));
  CHECK(has(colored, "term_b 0.45"));
  std::string plain = render_terminal(fig, 0, TermStyle{50, 10, false});
  CHECK_FALSE(has(plain, "\x1b["));
  CHECK(has(plain, "•"));
  CHECK(has(plain, "×"));
  CHECK_FALSE(has(plain, "\xe2\xa0"));  // glyphs instead of braille
  CHECK(has(plain, "• term_a 0.9   × term_b 0.45"));
  auto lines = lines_of(plain);
  CHECK(y_label(lines[1]) == "0.9");
  CHECK(y_label(lines[10]) == "0.05");
  CHECK((has(lines[12], "1") && has(lines[12], "80")));  // the step range covers both runs
  // A run without the metric is named in the legend.
  Figure partial{{"term_a", "term_b"}, {Panel{"kl", {Curve{0, a.at("kl").points, {}}}}}, 0};
  CHECK(has(render_terminal(partial, 0, TermStyle{30, 4, false}), "term_b (not logged)"));
}

TEST_CASE("SVG: well formed, one polyline per run and metric, nice axis labels") {
  MetricsLog a = read_metrics(make_run("svg_a", 100)), b = read_metrics(make_run("svg_b", 60, 0.5));
  Figure fig;
  fig.runs = {"svg_a", "run <b> & co"};
  for (const char* metric : {"reward/mean", "accuracy", "kl"})
    fig.panels.push_back(Panel{metric, {Curve{0, a.at(metric).points, {}}, Curve{1, b.at(metric).points, {}}}});
  std::string svg = render_svg(fig);
  CHECK(xml_problem(svg) == "");
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(has(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(count(svg, "<polyline") == 6);
  CHECK(count(svg, "<g class=\"panel\"") == 3);
  CHECK(has(svg, "run &lt;b&gt; &amp; co"));
  CHECK_FALSE(has(svg, "<b>"));
  // reward/mean spans 0.05..0.9: y ticks 0.0, 0.2, ..., 1.0; steps 1..100: x ticks 0, 20, ..., 100.
  size_t panel = svg.find("data-metric=\"reward/mean\""), next = svg.find("<g class=\"panel\"", panel + 1);
  std::string first = svg.substr(panel, next - panel);
  for (const char* y : {">0.0</text>", ">0.2</text>", ">0.4</text>", ">0.6</text>", ">0.8</text>", ">1.0</text>"})
    CHECK(has(first, y));
  for (const char* x : {">0</text>", ">20</text>", ">60</text>", ">100</text>"}) CHECK(has(first, x));
  CHECK(count(first, "class=\"ytick\"") == 6);
  CHECK(count(first, "class=\"xtick\"") == 6);
  CHECK(has(first, ">step</text>"));
  // kl spans 0..0.02: small ticks keep their decimals.
  std::string kl = svg.substr(svg.find("data-metric=\"kl\""));
  CHECK(has(kl, ">0.000</text>"));
  CHECK(has(kl, ">0.020</text>"));
  // Legend: every run once, in its colour.
  CHECK(count(svg, "class=\"legend-item\"") == 2);
  CHECK(has(svg, run_color_hex(0)));
  CHECK(has(svg, run_color_hex(1)));

  // Smoothed: the raw values go under the line as a faint path, still one polyline per curve.
  Figure smooth{{"svg_a"}, {Panel{"kl", {Curve{0, ema(a.at("kl"), 0.9).points, a.at("kl").points}}}}, 0.9};
  std::string s = render_svg(smooth);
  CHECK(xml_problem(s) == "");
  CHECK(count(s, "<polyline") == 1);
  CHECK(count(s, "class=\"raw\"") == 1);
  CHECK(has(s, "EMA smoothing 0.9"));
}

TEST_CASE("SVG: many points are thinned per pixel column, constant series get a band") {
  Series big{"x", {}};
  for (int i = 0; i < 20000; ++i) big.points.push_back({i, std::sin(i * 0.01)});
  Figure fig{{"r"}, {Panel{"x", {Curve{0, big.points, {}}}}, Panel{"c", {Curve{0, {{1, 2.0}, {2, 2.0}}, {}}}}}, 0};
  std::string svg = render_svg(fig);
  CHECK(xml_problem(svg) == "");
  CHECK(svg.size() < 100000);
  std::string c = svg.substr(svg.find("data-metric=\"c\""));
  CHECK(has(c, ">1.8</text>"));
  CHECK(has(c, ">2.2</text>"));
}

TEST_CASE("HTML: standalone page with the SVG inline, a legend and a summary table") {
  MetricsLog a = read_metrics(make_run("html_a", 20));
  Figure fig{{"html_a"}, {Panel{"accuracy", {Curve{0, a.at("accuracy").points, {}}}}}, 0};
  std::string html = render_html(fig);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(has(html, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(count(html, "<polyline") == 1);
  CHECK(has(html, "<ul class=\"legend\">"));
  CHECK(has(html, "<td>accuracy</td><td>html_a</td><td>0.5</td><td>20</td><td>0</td><td>0.5</td><td>20</td>"));
  CHECK_FALSE(has(html, "<script"));
  CHECK_FALSE(has(html, "src="));  // no external assets
  CHECK_FALSE(has(html, "href="));
  std::string svg = html.substr(html.find("<svg"), html.find("</svg>") + 6 - html.find("<svg"));
  CHECK(xml_problem(svg) == "");
}

TEST_CASE("r1 curves: defaults, globs, unknown metrics with a suggestion, files") {
  fs::path a = make_run("curves_a", 30), b = make_run("curves_b", 40, 0.5);
  std::ostringstream out, err;
  CurvesOptions o;
  o.runs = {a, b};
  o.width = 40;
  o.height = 6;
  run_curves(o, out, err);
  // Defaults present in the logs: reward/mean, accuracy, kl (no length/mean, no entropy).
  std::string text = out.str();
  CHECK(lines_of(text)[0] == "reward/mean");
  CHECK(has(text, "\naccuracy\n"));
  CHECK(has(text, "\nkl\n"));
  CHECK_FALSE(has(text, "length/mean"));
  CHECK(has(text, "• curves_a"));
  CHECK(err.str().empty());

  std::ostringstream g;
  o.metrics = {"time/*", "lr"};
  run_curves(o, g, err);
  CHECK(lines_of(g.str())[0] == "time/rollout");
  CHECK(has(g.str(), "\nlr\n"));

  o.metrics = {"rewrd/mean"};
  CHECK_THROWS_WITH_AS(run_curves(o, out, err),
                       doctest::Contains("unknown metric 'rewrd/mean' (did you mean 'reward/mean'?); the runs log: "
                                         "accuracy, kl, lr, reward/mean, time/rollout"),
                       r1::ConfigError);
  o.metrics = {"nothing/*"};
  CHECK_THROWS_AS(run_curves(o, out, err), r1::ConfigError);

  o.metrics = {"reward/mean", "kl"};
  o.smooth = 0.6;
  o.out = fresh_dir("curves_out") / "c.svg";
  std::ostringstream w;
  run_curves(o, w, err);
  CHECK(has(w.str(), "reward/mean (EMA 0.6)"));
  CHECK(has(w.str(), "wrote " + o.out.string() + " (2 panels, 2 runs)"));
  std::string svg = r1::read_file(o.out);
  CHECK(xml_problem(svg) == "");
  CHECK(count(svg, "<polyline") == 4);
  CHECK(has(svg, ">curves_a</text>"));
  o.out = o.out.parent_path() / "c.html";
  run_curves(o, w, err);
  CHECK(has(r1::read_file(o.out), "<svg"));

  o.out = o.out.parent_path() / "c.png";
  CHECK_THROWS_WITH_AS(run_curves(o, w, err), doctest::Contains("must end in .svg or .html"), r1::ConfigError);
  o.out.clear();
  o.smooth = 1.5;
  CHECK_THROWS_WITH_AS(run_curves(o, w, err), doctest::Contains("--smooth 1.5 is out of range"), r1::ConfigError);
  o.smooth = 0;
  o.runs = {a / "missing"};
  CHECK_THROWS_WITH_AS(run_curves(o, w, err), doctest::Contains("no such run directory"), r1::ConfigError);

  // A torn last line shows up as a warning, the curve still draws.
  fs::path t = make_run("curves_torn", 5);
  append_text(t / "metrics.jsonl", "{\"step\":6,\"kl\":");
  std::ostringstream tout, terr;
  run_curves(CurvesOptions{{t}, {"kl"}, {}, 0, 30, 4, 80, false}, tout, terr);
  CHECK(has(terr.str(), "warning: "));
  CHECK(has(terr.str(), "skipped a torn last line"));
  CHECK(has(tout.str(), "kl  last 0 at step 5"));
}

TEST_CASE("run labels: directory names, made unique by their parents") {
  CHECK(run_labels({"runs/a", "runs/b/"}) == std::vector<std::string>{"a", "b"});
  CHECK(run_labels({"x/out", "y/out"}) == std::vector<std::string>{"x/out", "y/out"});
  CHECK(run_labels({"runs/a/metrics.jsonl"}) == std::vector<std::string>{"a"});
}

TEST_CASE("r1 samples: best and worst by reward, limit, wrapping, unsafe text") {
  fs::path d = fresh_dir("samples");
  {
    RunLog log(d);
    log.log_samples(1, bj::array{bj::object{{"completion", "old"}, {"reward", 1}}});
    bj::array xs;
    const double rewards[] = {0.5, 1.0, 0.0, NAN, 0.75};
    for (int i = 0; i < 5; ++i) {
      bj::object x{{"group", i / 3},
                   {"sample", i},
                   {"prompt", "What is 6 * 7?"},
                   {"completion", "answer " + std::to_string(i)},
                   {"reward", rewards[i]},
                   {"parts", {{"math", rewards[i] > 0.5 ? 1.0 : 0.0}, {"format", 1.0}}},
                   {"reason", "checked"},
                   {"tokens", 12},
                   {"finish_reason", "stop"},
                   {"policy_version", 1}};
      xs.push_back(x);
    }
    log.log_samples(2, xs);
    log.log_samples(
        3, bj::array{bj::object{{"completion", std::string(300, 'x') + " \x1b[31mred\x1b[0m end"}, {"reward", 0}}});
  }
  auto order = [](const std::string& text) {
    std::vector<int> out;
    for (size_t p = text.find("· sample "); p != std::string::npos; p = text.find("· sample ", p + 1))
      out.push_back(text[p + 10] - '0');
    return out;
  };
  SamplesOptions o;
  o.run = d;
  o.step = 2;
  std::ostringstream best, worst, plain, err;
  o.order = SamplesOptions::Order::best;
  run_samples(o, best, err);
  CHECK(order(best.str()) == std::vector<int>{1, 4, 0, 2, 3});  // no reward: last
  CHECK(has(best.str(),
            "step 2 · 5 samples in 2 groups · reward mean 0.5625, min 0, max 1 · showing the 5 best by reward"));
  CHECK(has(best.str(), "── #1 · reward 1 · group 0 · sample 1 ─"));
  CHECK(has(best.str(), "parts  math 1 · format 1"));
  CHECK(has(best.str(), "reason checked"));
  CHECK(has(best.str(), "about  12 tokens · finish stop · policy version 1"));
  CHECK(has(best.str(), "completion\n  │ answer 1\n"));
  o.order = SamplesOptions::Order::worst;
  o.limit = 2;
  run_samples(o, worst, err);
  CHECK(order(worst.str()) == std::vector<int>{2, 0});
  CHECK(has(worst.str(), "(3 more; --limit 0 shows all)"));
  o.order = SamplesOptions::Order::file;
  o.limit = 0;
  run_samples(o, plain, err);
  CHECK(order(plain.str()) == std::vector<int>{0, 1, 2, 3, 4});

  // Default step: the last; long text wraps to the width; escape sequences are shown, not sent.
  SamplesOptions last;
  last.run = d;
  last.width = 60;
  std::ostringstream w;
  run_samples(last, w, err);
  CHECK(has(w.str(), "step 3 · 1 sample"));
  for (const auto& l : lines_of(w.str())) {
    CAPTURE(l);
    CHECK(columns(l) <= 60);
  }
  CHECK_FALSE(has(w.str(), "\x1b"));
  CHECK(has(w.str(), "\\x1b[31mred"));

  o.step = 7;
  CHECK_THROWS_WITH_AS(run_samples(o, w, err),
                       doctest::Contains("no samples at step 7; the nearest steps with samples are 3 (3 steps from 1 "
                                         "to 3 have samples)"),
                       r1::ConfigError);
}

TEST_CASE("r1 curves: guard events of events.jsonl are markers: a tick row in the terminal, lines in files") {
  fs::path a = make_run("curves_events", 20);
  {
    RunLog log(a);
    log.log_event({{"step", 10}, {"event", "guard"}, {"rule", "kl"}, {"action", "rollback"}, {"message", "kl: high"}});
    log.log_event({{"step", 10}, {"event", "rollback"}, {"restored_step", 7}});
    log.log_event({{"step", 30}, {"event", "guard"}, {"rule", "entropy"}, {"action", "warn"}, {"message", "late"}});
  }
  append_text(a / "events.jsonl", "not json\n");
  std::ostringstream out, err;
  CurvesOptions o;
  o.runs = {a};
  o.metrics = {"kl"};
  o.width = 40;
  o.height = 4;
  o.out = fresh_dir("curves_events_out") / "c.svg";
  run_curves(o, out, err);
  const auto rows = lines_of(out.str());
  // Under the x axis: one tick, at step 10 of 1..20 (column round(9/19 * 79) / 2 = 18).
  auto axis = std::find_if(rows.begin(), rows.end(), [](const std::string& r) { return has(r, "└"); });
  REQUIRE(axis + 1 != rows.end());
  const std::string& ticks = *(axis + 1);
  CHECK(count(ticks, "▲") == 1);
  CHECK(columns(ticks.substr(0, ticks.find("▲"))) == columns(axis->substr(0, axis->find("└"))) + 1 + 18);
  CHECK(has(out.str(),
            "guard events (▲):\n  step 10 kl rollback: kl: high\n  step 10 rollback: rolled back to step 7\n"));
  CHECK(has(err.str(), "events.jsonl:4: skipped"));
  const std::string svg = r1::read_file(o.out);
  CHECK(xml_problem(svg) == "");
  CHECK(count(svg, "class=\"marker\"") == 2);  // step 30 is outside the logged steps
  CHECK(has(svg, "<title>step 10: kl: high</title>"));
}
