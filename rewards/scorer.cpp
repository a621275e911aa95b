// The scorer: registry, thread pool with a watchdog, composition of weighted parts, JSONL I/O.
#include "rewards/scorer.hpp"

#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <istream>
#include <mutex>
#include <ostream>
#include <thread>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/utf8.hpp"
#include "rewards/builtin.hpp"
#include "rewards/plugins.hpp"

namespace r1::rewards {

// ---- Registry ---------------------------------------------------------------------------------

const std::vector<std::string>& builtin_kinds() {
  static const std::vector<std::string> k{"format", "math", "countdown", "length", "code"};
  return k;
}

Registry Registry::with_builtins() {
  Registry r;
  r.add("format", [](const RewardEntry& e) { return make_format_checker(e.format.value_or(FormatOptions{})); });
  r.add("math", [](const RewardEntry& e) { return make_math_checker(e.math.value_or(MathOptions{})); });
  r.add("countdown",
        [](const RewardEntry& e) { return make_countdown_checker(e.countdown.value_or(CountdownOptions{})); });
  r.add("length", [](const RewardEntry& e) { return make_length_checker(e.length.value_or(LengthOptions{})); });
  return r;
}

namespace {
std::string options_object(const RewardEntry& e, const std::string& where) {
  if (e.options.empty()) return "{}";
  boost::system::error_code ec;
  auto v = boost::json::parse(e.options, ec);
  if (ec || !v.is_object())
    throw ConfigError(where + ".options: must be a JSON object text such as '{\"key\": 1}', got: " + e.options);
  return boost::json::serialize(v);
}

bool is_builtin(const std::string& kind) {
  const auto& b = builtin_kinds();
  return std::find(b.begin(), b.end(), kind) != b.end();
}
}  // namespace

void check_entry(const RewardEntry& e, const std::string& where, const std::vector<std::string>& kinds) {
  if (std::find(kinds.begin(), kinds.end(), e.checker) == kinds.end()) {
    std::string hint = cfg::did_you_mean(e.checker, kinds);
    std::string known;
    for (const auto& k : kinds) known += (known.empty() ? "" : ", ") + k;
    throw ConfigError(where + ".checker: unknown checker '" + e.checker + "'" +
                      (hint.empty() ? "" : " (did you mean '" + hint + "'?)") + "; known: " + known +
                      " (declare plugins in [[rewards.plugins]] and commands in [[rewards.commands]])");
  }
  // A built-in's options table on an entry of another kind is a mistake (copy-paste, wrong kind).
  auto misplaced = [&](bool present, const char* kind) {
    if (present && e.checker != kind)
      throw ConfigError(where + "." + kind + ": options for checker \"" + kind +
                        "\" given, but this entry's checker is '" + e.checker + "'");
  };
  misplaced(e.format.has_value(), "format");
  misplaced(e.math.has_value(), "math");
  misplaced(e.countdown.has_value(), "countdown");
  misplaced(e.length.has_value(), "length");
  misplaced(e.code.has_value(), "code");
  if (is_builtin(e.checker) && !e.options.empty())
    throw ConfigError(where + ".options: only plugins and commands take an options JSON; built-in '" + e.checker +
                      "' takes its options in the " + e.checker + ".* table");
  if (!is_builtin(e.checker)) options_object(e, where);
}

std::vector<std::string> part_names(const RewardsConfig& cfg) {
  if (cfg.checkers.empty())
    throw ConfigError("[rewards] has no [[rewards.checkers]] entries: add at least one, e.g. checker = \"math\"");
  std::vector<std::string> names;
  for (size_t i = 0; i < cfg.checkers.size(); ++i) {
    std::string n = cfg.checkers[i].part_name();
    if (std::find(names.begin(), names.end(), n) != names.end())
      throw ConfigError("rewards.checkers[" + std::to_string(i) + "].name: part name '" + n +
                        "' is used twice; give each entry a distinct name");
    names.push_back(std::move(n));
  }
  return names;
}

Registry Registry::for_config(const RewardsConfig& cfg) {
  Registry r = with_builtins();
  for (const auto& p : cfg.plugins) {
    // Loaded once per entry that uses it, with that entry's options.
    r.add(p.name, [p](const RewardEntry& e) {
      return make_plugin_checker(p, options_object(e, "rewards.checkers[" + e.name + "]"));
    });
  }
  for (const auto& c : cfg.commands)
    r.add(c.name, [c](const RewardEntry& e) {
      return make_command_checker(c, options_object(e, "rewards.checkers[" + e.name + "]"));
    });
  return r;
}

void Registry::add(const std::string& kind, Factory f) {
  if (f_.count(kind))
    throw ConfigError("reward checker name '" + kind +
                      "' is declared twice (built-in names: format, math, countdown, length, code)");
  f_[kind] = std::move(f);
}

std::vector<std::string> Registry::kinds() const {
  std::vector<std::string> k;
  for (const auto& [n, f] : f_) k.push_back(n);
  return k;
}

CheckerPtr Registry::create(const RewardEntry& e, const std::string& where) const {
  check_entry(e, where, kinds());
  try {
    return f_.at(e.checker)(e);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& ex) {
    throw ConfigError(where + ": " + ex.what());
  }
}

// ---- Thread pool with abandonment -------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

// Workers are detached and share this state, so a worker stuck in a checker can outlive the pool.
struct PoolState {
  std::mutex m;
  std::condition_variable cv, exited;
  std::deque<std::function<void()>> q;
  bool stop = false;
  int live = 0;
  int excess = 0;  // replacements spawned for abandoned workers, not yet retired
};

class Pool {
 public:
  explicit Pool(int n) : st_(std::make_shared<PoolState>()) {
    for (int i = 0; i < n; ++i) spawn();
  }
  ~Pool() {
    std::unique_lock lk(st_->m);
    st_->stop = true;
    st_->cv.notify_all();
    // Idle workers leave at once; abandoned ones keep the shared state alive until they return.
    st_->exited.wait_for(lk, std::chrono::seconds(5), [&] { return st_->live <= st_->excess; });
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lk(st_->m);
      st_->q.push_back(std::move(job));
    }
    st_->cv.notify_one();
  }
  // A worker is stuck in an abandoned job: add a thread so capacity stays; the first worker to
  // finish a job while there is excess retires.
  void replace_abandoned() {
    {
      std::lock_guard lk(st_->m);
      ++st_->excess;
    }
    spawn();
  }

 private:
  std::shared_ptr<PoolState> st_;

  void spawn() {
    {
      std::lock_guard lk(st_->m);
      ++st_->live;
    }
    std::thread([st = st_] {
      std::unique_lock lk(st->m);
      while (true) {
        st->cv.wait(lk, [&] { return st->stop || !st->q.empty(); });
        if (st->q.empty()) break;
        auto job = std::move(st->q.front());
        st->q.pop_front();
        lk.unlock();
        job();
        job = nullptr;
        lk.lock();
        if (st->excess > 0) {
          --st->excess;
          break;
        }
      }
      --st->live;
      st->exited.notify_all();
    }).detach();
  }
};

enum class Phase { queued, running, done, abandoned };

struct Task {
  Phase phase = Phase::queued;
  Clock::time_point started;
  CheckResult result;
};

struct Batch {
  std::mutex m;
  std::condition_variable cv;
};

}  // namespace

struct Scorer::Impl {
  struct Part {
    PartResult meta;
    CheckerPtr checker;
  };
  std::vector<Part> parts;
  std::chrono::milliseconds budget{2000};
  std::unique_ptr<Pool> pool;
  std::atomic<uint64_t> samples{0}, checks{0}, timeouts{0}, errors{0}, abandoned{0};

  void init(int64_t threads, int64_t deadline_ms) {
    budget = std::chrono::milliseconds(deadline_ms);
    int n =
        threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    pool = std::make_unique<Pool>(n);
  }

  // Watchdog: waits for each task; one that runs past its deadline (plus a grace period for
  // cooperative checks to notice) is abandoned, scored "timeout", and its worker replaced.
  void await(std::vector<std::shared_ptr<Task>>& tasks, Batch& sync) {
    const auto grace = std::chrono::milliseconds(50) + budget / 10;
    std::unique_lock lk(sync.m);
    for (auto& t : tasks) {
      while (t->phase != Phase::done) {
        if (t->phase != Phase::running) {
          sync.cv.wait_for(lk, std::chrono::milliseconds(20));
          continue;
        }
        const auto limit = t->started + budget + grace;
        if (Clock::now() < limit) {
          sync.cv.wait_until(lk, limit);
          continue;
        }
        t->phase = Phase::abandoned;
        t->result = CheckResult::failure(Status::timeout, "timeout");
        ++abandoned;
        lk.unlock();
        pool->replace_abandoned();
        lk.lock();
        break;
      }
    }
  }
};

Scorer::Scorer(const RewardsConfig& cfg, const Registry& registry) : impl_(std::make_unique<Impl>()) {
  const std::vector<std::string> names = rewards::part_names(cfg);
  for (size_t i = 0; i < cfg.checkers.size(); ++i) {
    const RewardEntry& e = cfg.checkers[i];
    Impl::Part p;
    p.meta.name = names[i];
    p.meta.weight = e.weight;
    p.checker = registry.create(e, "rewards.checkers[" + std::to_string(i) + "]");
    impl_->parts.push_back(std::move(p));
  }
  // Commands and isolated plugins have their own timeout; the watchdog allows for it.
  int64_t budget = cfg.deadline_ms;
  for (const auto& c : cfg.commands) budget = std::max(budget, c.timeout_ms);
  for (const auto& p : cfg.plugins)
    if (p.isolated) budget = std::max(budget, p.timeout_ms);
  impl_->init(cfg.threads, budget);
}

Scorer::Scorer(std::vector<std::pair<PartResult, CheckerPtr>> checkers, int64_t threads, int64_t deadline_ms)
    : impl_(std::make_unique<Impl>()) {
  for (auto& [meta, c] : checkers) impl_->parts.push_back({meta, c});
  impl_->init(threads, deadline_ms);
}

Scorer::~Scorer() = default;

std::vector<std::string> Scorer::part_names() const {
  std::vector<std::string> n;
  for (const auto& p : impl_->parts) n.push_back(p.meta.name);
  return n;
}

std::string Scorer::describe() const {
  std::string names;
  for (const auto& p : impl_->parts) names += (names.empty() ? "" : ", ") + p.meta.name;
  return "in-process (" + names + ")";
}

const PartResult* Scored::part(std::string_view name) const {
  for (const auto& p : parts)
    if (p.name == name) return &p;
  return nullptr;
}

bool is_correct(const Scored& s, std::string_view accuracy_part) {
  const PartResult* p = s.part(accuracy_part);
  return p && p->result.status == Status::ok && p->result.score >= 1.0;
}

ScorerStats Scorer::stats() const {
  return {impl_->samples.load(), impl_->checks.load(), impl_->timeouts.load(), impl_->errors.load(),
          impl_->abandoned.load()};
}

namespace {

// Runs one check on a pool thread, unless the watchdog abandoned it first.
void run_task(Task& t, Batch& sync, const Checker& checker, const Sample& sample, std::chrono::milliseconds budget) {
  Clock::time_point start;
  {
    std::lock_guard lk(sync.m);
    if (t.phase != Phase::queued) return;
    t.phase = Phase::running;
    start = t.started = Clock::now();
  }
  CheckResult r;
  try {
    r = checker.check(sample, Deadline(start + budget));
  } catch (const DeadlineExceeded&) {
    r = CheckResult::failure(Status::timeout, "timeout");
  } catch (const std::exception& e) {
    r = CheckResult::failure(Status::error, e.what());
  } catch (...) {
    r = CheckResult::failure(Status::error, "unknown exception");
  }
  if (r.status != Status::ok) r.score = 0;
  // Whatever a checker, plugin or sandboxed program wrote, what leaves as JSON is valid UTF-8.
  if (utf8::valid_prefix(r.reason) != r.reason.size()) r.reason = utf8::repair(r.reason);
  if (utf8::valid_prefix(r.answer) != r.answer.size()) r.answer = utf8::repair(r.answer);
  std::lock_guard lk(sync.m);
  if (t.phase == Phase::running) {
    t.result = std::move(r);
    t.phase = Phase::done;
  }
  sync.cv.notify_all();
}

}  // namespace

std::vector<Scored> Scorer::score(const std::vector<Sample>& batch) {
  Impl& I = *impl_;
  const size_t np = I.parts.size();
  auto sync = std::make_shared<Batch>();
  // Samples are shared with the jobs so an abandoned job never reads freed memory.
  auto samples = std::make_shared<const std::vector<Sample>>(batch);
  std::vector<std::shared_ptr<Task>> tasks(batch.size() * np);
  for (size_t s = 0; s < batch.size(); ++s)
    for (size_t p = 0; p < np; ++p) {
      auto t = std::make_shared<Task>();
      tasks[s * np + p] = t;
      I.pool->submit([t, sync, samples, s, checker = I.parts[p].checker, budget = I.budget] {
        run_task(*t, *sync, *checker, (*samples)[s], budget);
      });
    }
  I.await(tasks, *sync);
  std::vector<Scored> out(batch.size());
  for (size_t s = 0; s < batch.size(); ++s) {
    Scored& sc = out[s];
    for (size_t p = 0; p < np; ++p) {
      PartResult pr = I.parts[p].meta;
      pr.result = std::move(tasks[s * np + p]->result);
      ++I.checks;
      if (pr.result.status == Status::timeout) ++I.timeouts;
      if (pr.result.status == Status::error) ++I.errors;
      if (pr.result.status == Status::ok) sc.score += pr.weight * pr.result.score;
      if (static_cast<int>(pr.result.status) > static_cast<int>(sc.status)) sc.status = pr.result.status;
      sc.parts.push_back(std::move(pr));
    }
    ++I.samples;
  }
  return out;
}

// ---- JSON ---------------------------------------------------------------------------------------

Sample sample_from_json(const boost::json::value& v, const std::string& where) {
  if (!v.is_object()) throw Error(where + ": a sample must be a JSON object");
  const auto& o = v.as_object();
  Sample s;
  auto str = [&](const char* key, bool required) -> std::string {
    auto* x = o.if_contains(key);
    if (!x || x->is_null()) {
      if (required) throw Error(where + ": missing \"" + key + "\" (a string)");
      return {};
    }
    if (!x->is_string()) throw Error(where + ": \"" + key + "\" must be a string");
    return std::string(x->as_string());
  };
  s.prompt = str("prompt", false);
  s.completion = str("completion", true);
  if (auto* r = o.if_contains("reference")) {
    if (!r->is_object()) throw Error(where + ": \"reference\" must be an object");
    s.reference = r->as_object();
  } else {
    for (const auto& [k, x] : o)
      if (k != "prompt" && k != "completion" && k != "metadata" && k != "id" && k != "completion_tokens")
        s.reference[k] = x;
  }
  if (auto* m = o.if_contains("metadata"); m && !m->is_null()) {
    if (!m->is_object()) throw Error(where + ": \"metadata\" must be an object");
    s.metadata = m->as_object();
  }
  if (auto* t = o.if_contains("completion_tokens"); t && !t->is_null()) {
    const bool non_negative =
        (t->is_int64() && t->as_int64() >= 0) || (t->is_uint64() && t->as_uint64() <= static_cast<uint64_t>(INT64_MAX));
    if (!non_negative) throw Error(where + ": \"completion_tokens\" must be a non-negative integer");
    s.completion_tokens = t->to_number<int64_t>();
  }
  return s;
}

boost::json::object to_json(const Scored& s) {
  boost::json::object o, parts, reasons;
  o["score"] = s.score;
  std::string reason;
  for (const auto& p : s.parts) {
    parts[p.name] = p.result.score;
    reasons[p.name] = p.result.reason;
    reason += (reason.empty() ? "" : "; ") + p.name + ": " + p.result.reason;
  }
  o["parts"] = std::move(parts);
  o["reason"] = reason;
  o["reasons"] = std::move(reasons);
  o["status"] = status_name(s.status);
  boost::json::object details;
  for (const auto& p : s.parts) {
    boost::json::object d;
    d["weight"] = p.weight;
    d["status"] = status_name(p.result.status);
    if (!p.result.answer.empty()) d["answer"] = p.result.answer;
    boost::json::object sub;
    for (const auto& [k, v] : p.result.parts) sub[k] = v;
    d["parts"] = std::move(sub);
    details[p.name] = std::move(d);
  }
  o["details"] = std::move(details);
  return o;
}

JsonlSummary score_jsonl(std::istream& in, std::ostream& out, RewardBackend& scorer, size_t batch_size) {
  JsonlSummary sum;
  struct Line {
    std::optional<boost::json::value> id;
    std::string error;  // non-empty: bad input
    size_t sample = 0;
  };
  std::string text;
  uint64_t lineno = 0;
  bool eof = false;
  while (!eof) {
    std::vector<Line> lines;
    std::vector<Sample> samples;
    while (samples.size() < batch_size && !(eof = !std::getline(in, text))) {
      ++lineno;
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are skipped
      Line l;
      boost::system::error_code ec;
      auto v = boost::json::parse(text, ec);
      if (ec) {
        l.error = "line " + std::to_string(lineno) + ": not valid JSON (" + ec.message() + ")";
      } else {
        if (v.is_object())
          if (auto* id = v.as_object().if_contains("id")) l.id = *id;
        try {
          samples.push_back(sample_from_json(v, "line " + std::to_string(lineno)));
          l.sample = samples.size() - 1;
        } catch (const std::exception& e) {
          l.error = e.what();
        }
      }
      lines.push_back(std::move(l));
    }
    auto scored = scorer.score(samples);
    for (const auto& l : lines) {
      ++sum.lines;
      boost::json::object o;
      if (!l.error.empty()) {
        ++sum.bad_lines;
        o["score"] = 0.0;
        o["parts"] = boost::json::object{};
        o["status"] = "error";
        o["reason"] = "bad input: " + l.error;
      } else {
        const Scored& s = scored[l.sample];
        o = to_json(s);
        sum.score_sum += s.score;
        if (s.status == Status::timeout) ++sum.timeouts;
        if (s.status == Status::error) ++sum.errors;
      }
      if (l.id) o["id"] = *l.id;
      out << boost::json::serialize(o) << '\n';
    }
    out.flush();
  }
  return sum;
}

}  // namespace r1::rewards
