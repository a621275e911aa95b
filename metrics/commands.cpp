#include "metrics/commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <ostream>
#include <set>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/strings.hpp"
#include "metrics/chart.hpp"
#include "metrics/jsonl.hpp"
#include "metrics/reader.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;

namespace r1::metrics {

namespace {

// '*' matches any run of characters; everything else matches itself.
bool glob_match(std::string_view pat, std::string_view s) {
  if (pat.empty()) return s.empty();
  if (pat[0] == '*') {
    for (size_t i = 0; i <= s.size(); ++i)
      if (glob_match(pat.substr(1), s.substr(i))) return true;
    return false;
  }
  return !s.empty() && pat[0] == s[0] && glob_match(pat.substr(1), s.substr(1));
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The metrics to draw, in the order asked, each present in at least one run.
std::vector<std::string> select_metrics(const std::vector<std::string>& asked, const std::vector<std::string>& names,
                                        std::ostream& err) {
  std::vector<std::string> out;
  auto add = [&](const std::string& m) {
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  };
  if (asked.empty()) {
    for (const auto& m : default_curve_metrics())
      if (std::binary_search(names.begin(), names.end(), m)) add(m);
    if (out.empty()) {
      for (size_t i = 0; i < names.size() && i < 5; ++i) add(names[i]);
      err << fmt::format(
          "r1 curves: none of the default metrics ({}) is logged; showing {} (--metric NAME picks "
          "others)\n",
          join(default_curve_metrics(), ", "), join(out, ", "));
    }
    return out;
  }
  for (const auto& a : asked) {
    bool found = false;
    for (const auto& n : names)
      if (a.find('*') == std::string::npos ? a == n : glob_match(a, n)) add(n), found = true;
    if (found) continue;
    std::string hint = a.find('*') == std::string::npos ? did_you_mean(a, names) : "";
    throw ConfigError(fmt::format("r1 curves: unknown metric '{}'{}; the runs log: {}", a,
                                  hint.empty() ? "" : " (did you mean '" + hint + "'?)",
                                  names.empty() ? "nothing yet" : join(names, ", ")));
  }
  return out;
}

// ---- samples: text made safe for a terminal, and wrapped ----

// Control characters in model output (escape sequences!) would drive the terminal: show them as
// \xNN instead. Tabs become spaces, carriage returns are dropped.
std::string sanitize(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n')
      out += '\n';
    else if (c == '\t')
      out += "    ";
    else if (c == '\r')
      continue;
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
             static_cast<unsigned char>(s[i + 1]) <= 0x9F)  // C1 controls, U+0080..U+009F
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(s[++i]));
    else
      out += static_cast<char>(c);
  }
  return out;
}

// Lines of at most `width` code points, broken after a space where possible. Indentation and
// repeated spaces are kept (completions are often code).
std::vector<std::string> wrap(std::string_view text, size_t width) {
  std::vector<std::string> lines;
  width = std::max<size_t>(width, 10);
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view para = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    // Split the paragraph into code points.
    std::vector<std::string_view> cps;
    for (size_t i = 0; i < para.size();) {
      unsigned char c = static_cast<unsigned char>(para[i]);
      size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      n = std::min(n, para.size() - i);
      cps.push_back(para.substr(i, n));
      i += n;
    }
    size_t b = 0;
    do {
      size_t e = std::min(cps.size(), b + width);
      if (e < cps.size()) {  // break after the last space of the line, if any
        for (size_t k = e; k > b + width / 3; --k)
          if (cps[k - 1] == " ") {
            e = k;
            break;
          }
      }
      std::string line;
      for (size_t k = b; k < e; ++k) line += cps[k];
      lines.push_back(std::move(line));
      b = e;
    } while (b < cps.size());
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

// Display columns of UTF-8 text (code points; the text here has no wide characters to speak of).
size_t columns(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::optional<double> reward_of(const bj::object& s) {
  auto* r = s.if_contains("reward");
  if (!r) return std::nullopt;
  auto v = jsonl::number(*r);
  if (!v || !std::isfinite(*v)) return std::nullopt;
  return v;
}

std::string value_text(const bj::value& v) {
  if (auto d = jsonl::number(v); d && !v.is_bool()) return format_value(*d);
  if (v.is_string()) return sanitize(v.get_string());
  if (v.is_null()) return "-";
  std::string s;
  jsonl::append(v, s);
  return sanitize(s);
}

}  // namespace

std::vector<std::string> default_curve_metrics() { return {"reward/mean", "accuracy", "length/mean", "kl", "entropy"}; }

std::vector<std::string> run_labels(const std::vector<fs::path>& runs) {
  auto name = [](const fs::path& p, int parts) {
    fs::path q = p.lexically_normal();
    if (q.has_filename() && (q.filename() == "metrics.jsonl")) q = q.parent_path();
    if (!q.has_filename()) q = q.parent_path();  // "runs/a/" -> "runs/a"
    std::vector<std::string> comps;
    for (const auto& c : q) comps.push_back(c.string());
    std::string out;
    for (size_t i = comps.size() > static_cast<size_t>(parts) ? comps.size() - static_cast<size_t>(parts) : 0;
         i < comps.size(); ++i)
      out += (out.empty() ? "" : "/") + comps[i];
    return out.empty() ? fs::absolute(p).filename().string() : out;
  };
  std::vector<std::string> labels;
  for (int parts = 1; parts <= 8; ++parts) {
    labels.clear();
    for (const auto& r : runs) labels.push_back(name(r, parts));
    std::set<std::string> uniq(labels.begin(), labels.end());
    if (uniq.size() == labels.size()) return labels;
  }
  for (size_t i = 0; i < labels.size(); ++i) labels[i] += fmt::format(" #{}", i + 1);  // the same path twice
  return labels;
}

void run_curves(const CurvesOptions& o, std::ostream& out, std::ostream& err) {
  if (o.runs.empty()) throw ConfigError("r1 curves: name at least one run directory");
  if (!(o.smooth >= 0 && o.smooth < 1))
    throw ConfigError(
        fmt::format("r1 curves: --smooth {} is out of range: use a weight in [0, 1) such as 0.9 "
                    "(0: no smoothing, closer to 1: smoother)",
                    o.smooth));
  if (o.height < 2 || o.height > 200 || o.width < 0 || o.width > 1000)
    throw ConfigError(
        fmt::format("r1 curves: --width {} --height {}: use a width of 8 to 1000 cells and a height "
                    "of 2 to 200 rows",
                    o.width, o.height));
  std::string ext = lower(o.out.extension().string());
  if (!o.out.empty() && ext != ".svg" && ext != ".html" && ext != ".htm")
    throw ConfigError(fmt::format("r1 curves: --out {}: the file name must end in .svg or .html", o.out.string()));

  std::vector<MetricsLog> logs;
  std::set<std::string> all;
  for (const auto& r : o.runs) {
    logs.push_back(read_metrics(r));
    for (const auto& w : logs.back().warnings) err << "r1 curves: warning: " << w << '\n';
    for (const auto& [name, s] : logs.back().series) all.insert(name);
    if (logs.back().steps == 0) err << "r1 curves: warning: " << logs.back().file.string() << ": no steps logged yet\n";
  }
  const std::vector<std::string> names(all.begin(), all.end());
  if (names.empty())
    throw ConfigError(fmt::format("r1 curves: {}: no metric values logged yet (is the run still starting?)",
                                  logs.size() == 1 ? logs.front().file.string() : "these runs"));

  Figure fig;
  fig.runs = run_labels(o.runs);
  fig.smoothing = o.smooth;
  std::vector<std::string> warnings;
  for (size_t i = 0; i < o.runs.size(); ++i)
    for (auto& e : read_run_events(o.runs[i], &warnings))
      fig.markers.push_back({i, e.step, e.event == "guard" ? e.rule + " " + e.action : e.event, e.message});
  for (const auto& w : warnings) err << "r1 curves: warning: " << w << '\n';
  for (const auto& m : select_metrics(o.metrics, names, err)) {
    Panel p{m, {}};
    for (size_t i = 0; i < logs.size(); ++i) {
      if (!logs[i].has(m)) continue;
      const Series& s = logs[i].at(m);
      Curve c{i, s.points, {}};
      if (o.smooth > 0) c.points = ema(s, o.smooth).points, c.raw = s.points;
      p.curves.push_back(std::move(c));
    }
    fig.panels.push_back(std::move(p));
  }

  TermStyle style;
  style.width = o.width > 0 ? o.width : std::clamp(o.terminal_columns - 14, 20, 100);
  style.height = o.height;
  style.color = o.color;
  for (size_t i = 0; i < fig.panels.size(); ++i) out << (i ? "\n" : "") << render_terminal(fig, i, style);
  if (!fig.markers.empty()) out << "\nguard events (▲):\n";
  for (const auto& m : fig.markers)
    out << fmt::format("  {}step {} {}: {}\n", fig.runs.size() > 1 ? fig.runs[m.run] + " " : "", m.step, m.label,
                       m.message);

  if (!o.out.empty()) {
    write_file_atomic(o.out, ext == ".svg" ? render_svg(fig) : render_html(fig));
    out << fmt::format("\nwrote {} ({} panel{}, {} run{})\n", o.out.string(), fig.panels.size(),
                       fig.panels.size() == 1 ? "" : "s", fig.runs.size(), fig.runs.size() == 1 ? "" : "s");
  }
}

void run_samples(const SamplesOptions& o, std::ostream& out, std::ostream& err) {
  if (o.limit < 0) throw ConfigError(fmt::format("r1 samples: --limit {}: use 0 (all) or a positive count", o.limit));
  StepSamples s = read_samples(o.run, o.step);
  for (const auto& w : s.warnings) err << "r1 samples: warning: " << w << '\n';
  const size_t width = static_cast<size_t>(o.width > 0 ? std::max(o.width, 40) : 100);
  auto bold = [&](const std::string& t) { return o.color ? "\x1b[1m" + t + "\x1b[0m" : t; };
  auto dim = [&](const std::string& t) { return o.color ? "\x1b[2m" + t + "\x1b[0m" : t; };

  // Order: file order, or by reward (samples without a reward last either way; ties keep file order).
  std::vector<size_t> order(s.samples.size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (o.order != SamplesOptions::Order::file) {
    const bool best = o.order == SamplesOptions::Order::best;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      auto ra = reward_of(s.samples[a]), rb = reward_of(s.samples[b]);
      if (!ra || !rb) return ra.has_value() && !rb.has_value();
      return best ? *ra > *rb : *ra < *rb;
    });
  }
  const size_t shown = o.limit > 0 ? std::min(order.size(), static_cast<size_t>(o.limit)) : order.size();

  // Summary of the step.
  std::vector<double> rewards;
  std::set<std::string> groups;
  for (const auto& x : s.samples) {
    if (auto r = reward_of(x)) rewards.push_back(*r);
    if (auto* g = x.if_contains("group")) groups.insert(value_text(*g));
  }
  std::string head = fmt::format("step {} · {} sample{}", s.step, s.samples.size(), s.samples.size() == 1 ? "" : "s");
  if (!groups.empty()) head += fmt::format(" in {} group{}", groups.size(), groups.size() == 1 ? "" : "s");
  if (!rewards.empty()) {
    double mean = std::accumulate(rewards.begin(), rewards.end(), 0.0) / static_cast<double>(rewards.size());
    auto [lo, hi] = std::minmax_element(rewards.begin(), rewards.end());
    head += fmt::format(" · reward mean {}, min {}, max {}", format_value(mean), format_value(*lo), format_value(*hi));
  }
  if (o.order != SamplesOptions::Order::file)
    head +=
        fmt::format(" · showing the {} {} by reward", shown, o.order == SamplesOptions::Order::best ? "best" : "worst");
  else if (shown < s.samples.size())
    head += fmt::format(" · showing the first {}", shown);
  out << bold(head) << "\n";

  static const std::set<std::string> known = {"step",  "group",  "sample", "prompt",        "completion",    "reward",
                                              "parts", "reason", "tokens", "finish_reason", "policy_version"};
  auto block = [&](const char* label, const std::string& text) {
    out << dim(label) << "\n";
    if (text.empty()) {
      out << "  " << dim("│ (empty)") << "\n";
      return;
    }
    for (const auto& l : wrap(text, width - 4)) out << "  " << dim("│") << " " << l << "\n";
  };
  for (size_t k = 0; k < shown; ++k) {
    const bj::object& x = s.samples[order[k]];
    // Header: rank, reward, where it came from.
    std::string h = fmt::format("#{}", k + 1);
    if (auto r = reward_of(x)) h += " · reward " + format_value(*r);
    if (auto* g = x.if_contains("group")) h += " · group " + value_text(*g);
    if (auto* i = x.if_contains("sample")) h += " · sample " + value_text(*i);
    const std::string title = "── " + h + " ";
    const size_t used = columns(title);
    out << "\n" << bold(title) << dim(repeat("─", used < width ? width - used : 3)) << "\n";
    // The reward breakdown and the facts about the completion.
    if (auto* parts = x.if_contains("parts"); parts && parts->is_object()) {
      std::vector<std::string> items;
      for (const auto& kv : parts->get_object()) items.push_back(sanitize(kv.key()) + " " + value_text(kv.value()));
      out << dim("parts ") << " " << (items.empty() ? "-" : join(items, " · ")) << "\n";
    }
    if (auto* reason = x.if_contains("reason"); reason && !reason->is_null()) {
      auto lines = wrap(value_text(*reason), width - 8);
      for (size_t i = 0; i < lines.size(); ++i) out << dim(i ? "       " : "reason ") << lines[i] << "\n";
    }
    std::vector<std::string> facts;
    if (auto* t = x.if_contains("tokens")) facts.push_back(value_text(*t) + " tokens");
    if (auto* f = x.if_contains("finish_reason")) facts.push_back("finish " + value_text(*f));
    if (auto* v = x.if_contains("policy_version")) facts.push_back("policy version " + value_text(*v));
    for (const auto& kv : x)
      if (!known.count(std::string(kv.key()))) facts.push_back(sanitize(kv.key()) + " " + value_text(kv.value()));
    if (!facts.empty())
      for (const auto& l : wrap(join(facts, " · "), width - 7)) out << dim("about ") << " " << l << "\n";
    if (auto* p = x.if_contains("prompt")) block("prompt", value_text(*p));
    if (auto* c = x.if_contains("completion")) block("completion", value_text(*c));
  }
  if (shown < s.samples.size())
    out << "\n" << dim(fmt::format("({} more; --limit 0 shows all)", s.samples.size() - shown)) << "\n";
}

}  // namespace r1::metrics
