#include "metrics/reader.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/strings.hpp"
#include "metrics/jsonl.hpp"
#include "metrics/run_log.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;

namespace r1::metrics {

namespace {

// The log file of a run: `path` itself when it is a file, else path/name. A missing one is a usage
// error (exit 2): the user named the wrong directory.
fs::path log_file(const fs::path& path, const char* name) {
  if (fs::is_regular_file(path)) return path;
  if (!fs::exists(path))
    throw ConfigError(
        fmt::format("{}: no such run directory (pass the folder `r1 train` writes its logs to)", path.string()));
  fs::path file = path / name;
  if (!fs::exists(file))
    throw ConfigError(
        fmt::format("{}: no {} here; is it a run directory? (`r1 train` writes {} there)", path.string(), name, name));
  return file;
}

// Parses one line as a JSON object with an integer "step". Returns nullopt (with `why`) on a bad line.
std::optional<bj::object> parse_line(std::string_view line, std::string& why) {
  boost::system::error_code ec;
  bj::value v = bj::parse(line, ec);
  if (ec) {
    why = "invalid JSON: " + ec.message();
    return std::nullopt;
  }
  if (!v.is_object()) {
    why = "expected a JSON object";
    return std::nullopt;
  }
  auto* s = v.get_object().if_contains("step");
  if (!s || !(s->is_int64() || s->is_uint64())) {
    why = "no integer \"step\"";
    return std::nullopt;
  }
  return std::move(v.get_object());
}

int64_t step_of(const bj::object& o) {
  const bj::value& s = o.at("step");
  return s.is_int64() ? s.get_int64() : static_cast<int64_t>(s.get_uint64());
}

std::string torn_warning(const fs::path& file, const jsonl::Line& l) {
  return fmt::format(
      "{}:{}: skipped a torn last line ({} bytes; the run is still writing it, or was "
      "interrupted while writing it)",
      file.string(), l.number, l.text.size());
}

void add_values(const bj::object& o, const std::string& prefix, int64_t step,
                std::map<std::string, Series, std::less<>>& out) {
  for (const auto& kv : o) {
    std::string name = prefix + std::string(kv.key());
    if (prefix.empty() && (name == "step" || name == "time")) continue;
    if (kv.value().is_object()) {
      add_values(kv.value().get_object(), name + "/", step, out);
      continue;
    }
    auto v = jsonl::number(kv.value());
    if (!v || !std::isfinite(*v)) continue;
    Series& s = out[name];
    if (s.name.empty()) s.name = name;
    s.points.push_back({step, *v});
  }
}

}  // namespace

std::vector<std::string> MetricsLog::names() const {
  std::vector<std::string> out;
  for (const auto& [name, s] : series) out.push_back(name);
  return out;
}

const Series& MetricsLog::at(std::string_view name) const {
  auto it = series.find(name);
  if (it != series.end()) return it->second;
  auto all = names();
  std::string hint = did_you_mean(name, all);
  std::string list;
  for (const auto& n : all) list += (list.empty() ? "" : ", ") + n;
  throw ConfigError(fmt::format("{}: unknown metric '{}'{}; available: {}", file.string(), name,
                                hint.empty() ? "" : " (did you mean '" + hint + "'?)", list.empty() ? "none" : list));
}

MetricsLog parse_metrics(std::string_view text, const fs::path& file) {
  MetricsLog log;
  log.file = file;
  int64_t last_step = 0;
  bool any = false;
  for (const auto& l : jsonl::split(text)) {
    std::string why;
    auto o = parse_line(l.text, why);
    if (!o) {
      if (!l.terminated) {
        log.warnings.push_back(torn_warning(file, l));
        continue;
      }
      fail("{}:{}: {}; each line of {} is one JSON object with an integer \"step\" (fix or delete that line)",
           file.string(), l.number, why, kMetricsFile);
    }
    int64_t step = step_of(*o);
    if (any && step <= last_step) {
      // A restart from an earlier step: the new lines replace the old ones from `step` on.
      log.warnings.push_back(
          fmt::format("{}:{}: step {} follows step {}: the run restarted there; its later lines "
                      "replace the earlier ones from step {} on",
                      file.string(), l.number, step, last_step, step));
      for (auto& [name, s] : log.series) std::erase_if(s.points, [&](const Point& p) { return p.step >= step; });
    }
    any = true;
    last_step = step;
    ++log.steps;
    add_values(*o, "", step, log.series);
  }
  std::erase_if(log.series, [](const auto& kv) { return kv.second.points.empty(); });
  return log;
}

MetricsLog read_metrics(const fs::path& path) {
  fs::path file = log_file(path, kMetricsFile);
  return parse_metrics(read_file(file), file);
}

Series ema(const Series& s, double weight) {
  R1_CHECK(weight >= 0 && weight < 1, "smoothing weight {} is out of range: use a value in [0, 1) such as 0.9", weight);
  Series out{s.name, {}};
  out.points.reserve(s.points.size());
  double m = 0, decay = 1;
  for (const auto& p : s.points) {
    m = weight * m + (1 - weight) * p.value;
    decay *= weight;
    out.points.push_back({p.step, weight == 0 ? p.value : m / (1 - decay)});
  }
  return out;
}

std::vector<RunEvent> read_run_events(const fs::path& path, std::vector<std::string>* warnings) {
  const fs::path file = (fs::is_regular_file(path) ? path.parent_path() : path) / kEventsFile;
  std::vector<RunEvent> out;
  if (!fs::exists(file)) return out;
  const std::string text = read_file(file);
  auto str = [](const bj::object& o, const char* key) {
    const bj::value* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  for (const auto& l : jsonl::split(text)) {
    std::string why;
    auto o = parse_line(l.text, why);
    if (!o) {
      if (warnings) warnings->push_back(fmt::format("{}:{}: skipped: {}", file.string(), l.number, why));
      continue;
    }
    RunEvent e{step_of(*o), str(*o, "event"), str(*o, "rule"), str(*o, "action"), str(*o, "message")};
    if (e.event == "rollback")
      if (auto r = o->if_contains("restored_step"); r && r->is_int64())
        e.message = fmt::format("rolled back to step {}", r->get_int64());
    out.push_back(std::move(e));
  }
  return out;
}

StepSamples read_samples(const fs::path& run_dir, std::optional<int64_t> want) {
  StepSamples out;
  out.file = log_file(run_dir, kSamplesFile);
  const std::string text = read_file(out.file);
  const auto lines = jsonl::split(text);

  // Pass 1: the steps present, from the cheap `{"step":N` prefix where possible.
  std::vector<int64_t> line_steps(lines.size(), 0);
  std::vector<char> ok(lines.size(), 1);
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    if (auto s = l.terminated ? jsonl::fast_step(l.text) : std::nullopt) {
      line_steps[i] = *s;
      continue;
    }
    std::string why;
    auto o = parse_line(l.text, why);
    if (o) {
      line_steps[i] = step_of(*o);
    } else if (!l.terminated) {
      out.warnings.push_back(torn_warning(out.file, l));
      ok[i] = 0;
    } else {
      fail("{}:{}: {}; each line of {} is one JSON object with an integer \"step\" (fix or delete that line)",
           out.file.string(), l.number, why, kSamplesFile);
    }
  }
  for (size_t i = 0; i < lines.size(); ++i)
    if (ok[i]) out.steps.push_back(line_steps[i]);
  std::sort(out.steps.begin(), out.steps.end());
  out.steps.erase(std::unique(out.steps.begin(), out.steps.end()), out.steps.end());
  if (out.steps.empty()) throw ConfigError(fmt::format("{}: no samples logged yet", out.file.string()));

  out.step = want.value_or(out.steps.back());
  if (!std::binary_search(out.steps.begin(), out.steps.end(), out.step)) {
    auto hi = std::lower_bound(out.steps.begin(), out.steps.end(), out.step);
    std::string nearest;
    if (hi != out.steps.begin()) nearest += std::to_string(*std::prev(hi));
    if (hi != out.steps.end()) nearest += (nearest.empty() ? "" : " and ") + std::to_string(*hi);
    std::string range = out.steps.size() == 1 ? fmt::format("only step {} has samples", out.steps.front())
                                              : fmt::format("{} steps from {} to {} have samples", out.steps.size(),
                                                            out.steps.front(), out.steps.back());
    throw ConfigError(fmt::format("{}: no samples at step {}; the nearest steps with samples are {} ({})",
                                  out.file.string(), out.step, nearest, range));
  }

  // Pass 2: the lines of that step. A restart at or before it (steps going backwards) replaces what
  // was collected so far.
  int64_t prev = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!ok[i]) continue;
    int64_t s = line_steps[i];
    if (i > 0 && s < prev && s <= out.step) out.samples.clear();
    prev = s;
    if (s != out.step) continue;
    std::string why;
    auto o = parse_line(lines[i].text, why);
    if (!o) {
      if (!lines[i].terminated) continue;
      fail("{}:{}: {}", out.file.string(), lines[i].number, why);
    }
    out.samples.push_back(std::move(*o));
  }
  return out;
}

}  // namespace r1::metrics
