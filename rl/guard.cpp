#include "rl/guard.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>

#include "common/config.hpp"
#include "common/error.hpp"

namespace r1 {

namespace {

namespace bj = boost::json;
using Entry = GuardState::Entry;

// The metrics the rules read; "clip" is derived (clip/low + clip/high).
constexpr const char* kWatched[] = {"entropy",
                                    "truncated",
                                    "length/mean",
                                    "kl",
                                    "clip/low",
                                    "clip/high",
                                    "zero_std_frac",
                                    "reward/mean",
                                    "mismatch/logprob_abs_mean"};

struct Window {
  std::vector<double> values;   // oldest first
  int64_t first = 0, last = 0;  // logged steps
  double mean = 0;
};

// The last `w` values of `key`; nullopt unless each of the last `w` steps logged it.
std::optional<Window> last_window(const std::vector<Entry>& recent, const std::string& key, int64_t w) {
  if (static_cast<int64_t>(recent.size()) < w) return std::nullopt;
  Window out;
  for (size_t i = recent.size() - static_cast<size_t>(w); i < recent.size(); ++i) {
    auto it = recent[i].values.find(key);
    if (it == recent[i].values.end()) return std::nullopt;
    out.values.push_back(it->second);
    out.mean += it->second / static_cast<double>(w);
  }
  out.first = recent[recent.size() - static_cast<size_t>(w)].step;
  out.last = recent.back().step;
  return out;
}

// The least-squares slope of `y` against 0, 1, 2, ... (per step).
double slope(const std::vector<double>& y) {
  const double n = static_cast<double>(y.size()), xm = (n - 1) / 2;
  double ym = 0;
  for (double v : y) ym += v / n;
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (static_cast<double>(i) - xm) * (y[i] - ym);
    den += (static_cast<double>(i) - xm) * (static_cast<double>(i) - xm);
  }
  return den > 0 ? num / den : 0;
}

struct Condition {
  std::string metric;
  double value = 0, bound = 0;
  int64_t since = 0;
  std::string what;
};
using Found = std::optional<Condition>;

std::string span(const Window& w) {
  return w.first == w.last ? fmt::format("step {}", w.first) : fmt::format("steps {}-{}", w.first, w.last);
}

// A window mean above `bound`.
Found mean_above(const GuardState& s, const std::string& key, int64_t window, double bound, const char* field) {
  auto w = last_window(s.recent, key, window);
  if (!w || w->mean <= bound) return std::nullopt;
  return Condition{key, w->mean, bound, w->first,
                   fmt::format("mean {} {:.4g} over {} is above {} = {:.4g}", key, w->mean, span(*w), field, bound)};
}

Found entropy_rule(const GuardState& s, const GuardEntropy& o) {
  auto w = last_window(s.recent, "entropy", o.window);
  if (!w) return std::nullopt;
  if (o.floor > 0 && w->mean < o.floor)
    return Condition{
        "entropy", w->mean, o.floor, w->first,
        fmt::format("mean entropy {:.4g} over {} is below [guard.entropy] floor = {:.4g}", w->mean, span(*w), o.floor)};
  const double fall = w->mean > 0 ? -slope(w->values) / w->mean : 0;
  if (o.max_fall > 0 && fall > o.max_fall)
    return Condition{"entropy", fall, o.max_fall, w->first,
                     fmt::format("entropy falls by {:.1f}% of its value per step over {} ({:.4g} -> {:.4g}), faster "
                                 "than [guard.entropy] max_fall = {:.4g}",
                                 100 * fall, span(*w), w->values.front(), w->values.back(), o.max_fall)};
  return std::nullopt;
}

Found length_rule(const GuardState& s, const GuardLength& o, int64_t max_new_tokens) {
  if (Found f = mean_above(s, "truncated", o.window, o.max_truncated, "[guard.length] max_truncated")) return f;
  const double bound = o.max_length_frac * static_cast<double>(max_new_tokens);
  Found f = mean_above(s, "length/mean", o.window, bound, "[guard.length] max_length_frac * max_new_tokens");
  if (f) f->bound = bound;
  return f;
}

Found zero_std_rule(const GuardState& s, const GuardZeroStd& o) {
  auto w = last_window(s.recent, "zero_std_frac", o.window);
  if (!w) return std::nullopt;
  const double low = *std::min_element(w->values.begin(), w->values.end());
  if (low < o.min_frac) return std::nullopt;
  return Condition{"zero_std_frac", low, o.min_frac, w->first,
                   fmt::format("zero_std_frac is at least {:.4g} in every step of {} ([guard.zero_std] min_frac = "
                               "{:.4g}): the groups' rewards all agree, nothing to learn from",
                               low, span(*w), o.min_frac)};
}

// Updates the best window mean, then compares the current one with it.
Found reward_drop_rule(GuardState& s, const GuardRewardDrop& o) {
  auto w = last_window(s.recent, "reward/mean", o.window);
  if (!w) return std::nullopt;
  if (s.best_step == 0 || w->mean > s.best_reward) s.best_reward = w->mean, s.best_step = w->last;
  const double drop = s.best_reward - w->mean;
  if (drop <= o.max_drop) return std::nullopt;
  return Condition{"reward/mean", drop, o.max_drop, s.best_step + 1,
                   fmt::format("mean reward/mean {:.4g} over {} is {:.4g} below its best window mean {:.4g} (steps "
                               "to {}), more than [guard.reward_drop] max_drop = {:.4g}",
                               w->mean, span(*w), drop, s.best_reward, s.best_step, o.max_drop)};
}

Entry entry_of(int64_t step, const bj::object& line) {
  Entry e{step, {}};
  for (const char* key : kWatched)
    if (const bj::value* v = line.if_contains(key); v && v->is_number())
      if (const double x = v->to_number<double>(); std::isfinite(x)) e.values[key] = x;
  if (e.values.count("clip/low") && e.values.count("clip/high"))
    e.values["clip"] = e.values["clip/low"] + e.values["clip/high"];
  return e;
}

}  // namespace

bj::object GuardFiring::to_json() const {
  return {{"step", step},      {"event", "guard"}, {"rule", rule},   {"action", cfg::name_of(action)},
          {"metric", metric},  {"value", value},   {"bound", bound}, {"since", since},
          {"message", message}};
}

Guard::Guard(const GuardOptions& o, int64_t max_new_tokens) : o_(o), max_new_tokens_(max_new_tokens) {
  keep_ = static_cast<size_t>(std::max({o.entropy.window, o.length.window, o.kl.window, o.clip.window,
                                        o.zero_std.window, o.reward_drop.window, o.mismatch.window}));
}

void Guard::count_rollback() {
  ++state_.rollbacks;
  state_.lr_scale *= o_.rollback_lr_factor;
}

std::vector<GuardFiring> Guard::observe(int64_t step, const bj::object& line) {
  R1_CHECK(state_.recent.empty() || step == state_.recent.back().step + 1,
           "guard: step {} follows step {} (steps must increase by one)", step, state_.recent.back().step);
  state_.recent.push_back(entry_of(step, line));
  if (state_.recent.size() > keep_) state_.recent.erase(state_.recent.begin());
  struct Rule {
    const char* name;
    GuardAction action;
    Found found;
  };
  auto on = [](GuardAction a) { return a != GuardAction::off; };
  const GuardState& s = state_;
  std::vector<Rule> rules;
  if (on(o_.entropy.action)) rules.push_back({"entropy", o_.entropy.action, entropy_rule(s, o_.entropy)});
  if (on(o_.length.action)) rules.push_back({"length", o_.length.action, length_rule(s, o_.length, max_new_tokens_)});
  if (on(o_.kl.action))
    rules.push_back({"kl", o_.kl.action, mean_above(s, "kl", o_.kl.window, o_.kl.max, "[guard.kl] max")});
  if (on(o_.clip.action))
    rules.push_back({"clip", o_.clip.action, mean_above(s, "clip", o_.clip.window, o_.clip.max, "[guard.clip] max")});
  if (on(o_.zero_std.action)) rules.push_back({"zero_std", o_.zero_std.action, zero_std_rule(s, o_.zero_std)});
  if (on(o_.reward_drop.action))
    rules.push_back({"reward_drop", o_.reward_drop.action, reward_drop_rule(state_, o_.reward_drop)});
  if (on(o_.mismatch.action))
    rules.push_back(
        {"mismatch", o_.mismatch.action,
         mean_above(s, "mismatch/logprob_abs_mean", o_.mismatch.window, o_.mismatch.max, "[guard.mismatch] max")});
  std::vector<GuardFiring> fired;
  std::vector<std::string> holding;
  for (const Rule& r : rules) {
    if (!r.found) continue;
    holding.push_back(r.name);
    if (std::find(state_.holding.begin(), state_.holding.end(), r.name) != state_.holding.end()) continue;
    const Condition& c = *r.found;
    fired.push_back({r.name, r.action, c.metric, c.value, c.bound, step, c.since, std::string(r.name) + ": " + c.what});
  }
  state_.holding = std::move(holding);
  return fired;
}

std::optional<GuardAction> strongest(const std::vector<GuardFiring>& fired) {
  std::optional<GuardAction> out;
  for (const auto& f : fired)
    if (!out || static_cast<int>(f.action) > static_cast<int>(*out)) out = f.action;
  return out;
}

bj::object GuardState::to_json() const {
  bj::array rec;
  for (const auto& e : recent) {
    bj::object values;
    for (const auto& [k, v] : e.values) values[k] = v;
    rec.push_back(bj::object{{"step", e.step}, {"values", std::move(values)}});
  }
  bj::array hold;
  for (const auto& h : holding) hold.push_back(bj::string(h));
  return {{"recent", std::move(rec)},   {"best_reward", best_reward}, {"best_step", best_step},
          {"holding", std::move(hold)}, {"rollbacks", rollbacks},     {"lr_scale", lr_scale}};
}

GuardState GuardState::from_json(const bj::object& o) {
  try {
    GuardState s;
    for (const auto& r : o.at("recent").as_array()) {
      Entry e{r.at("step").to_number<int64_t>(), {}};
      for (const auto& kv : r.at("values").as_object()) e.values[kv.key()] = kv.value().to_number<double>();
      s.recent.push_back(std::move(e));
    }
    s.best_reward = o.at("best_reward").to_number<double>();
    s.best_step = o.at("best_step").to_number<int64_t>();
    for (const auto& h : o.at("holding").as_array()) s.holding.emplace_back(h.as_string());
    s.rollbacks = o.at("rollbacks").to_number<int64_t>();
    s.lr_scale = o.at("lr_scale").to_number<double>();
    return s;
  } catch (const std::exception& e) {
    fail("the guard state is malformed: {}", e.what());
  }
}

}  // namespace r1
