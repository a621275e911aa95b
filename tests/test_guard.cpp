// Guardrails ([guard], rl/guard.hpp): every rule on synthetic metric streams (fires at its step and
// not before, once per episode), the state a checkpoint keeps, the config checks, and real runs on
// the tiny model with an injected fault (a learning-rate spike through the test seam, a reward that
// is constant) that warn, stop, or roll back and continue exactly. Also: the TensorBoard event file
// a run writes holds every scalar of metrics.jsonl.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "metrics/tensorboard.hpp"
#include "rl/guard.hpp"
#include "rl/run_checks.hpp"
#include "rl/run_config.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;
using r1::GuardAction;
using r1::GuardOptions;

namespace {

// Every rule off: a test turns on the one it checks.
GuardOptions all_off() {
  GuardOptions o;
  o.entropy.action = o.length.action = o.kl.action = o.clip.action = o.zero_std.action = o.reward_drop.action =
      o.mismatch.action = GuardAction::off;
  return o;
}

// The steps (1-based) at which each rule fired over a stream of values of `key`.
std::map<std::string, std::vector<int64_t>> fire_steps(const GuardOptions& o, const std::string& key,
                                                       const std::vector<double>& values, int64_t max_new = 100) {
  r1::Guard g(o, max_new);
  std::map<std::string, std::vector<int64_t>> out;
  for (size_t i = 0; i < values.size(); ++i) {
    bj::object line{{"step", static_cast<int64_t>(i + 1)}, {key, values[i]}};
    for (const auto& f : g.observe(static_cast<int64_t>(i + 1), line)) out[f.rule].push_back(f.step);
  }
  return out;
}

using Steps = std::vector<int64_t>;

}  // namespace

TEST_CASE("guard: entropy below its floor fires when the window mean crosses it, not before") {
  GuardOptions o = all_off();
  o.entropy = {.action = GuardAction::warn, .window = 3, .floor = 0.1, .max_fall = 0};
  // Window means: s3 1, s4 0.683, s5 0.367, s6 0.05 (< 0.1).
  CHECK(fire_steps(o, "entropy", {1, 1, 1, 0.05, 0.05, 0.05, 0.05})["entropy"] == Steps{6});
  CHECK(fire_steps(o, "entropy", {0.05, 0.05})["entropy"].empty());  // never before a full window
}

TEST_CASE("guard: entropy falling faster than max_fall fires at the first window that falls that fast") {
  GuardOptions o = all_off();
  o.entropy = {.action = GuardAction::warn, .window = 3, .floor = 0, .max_fall = 0.2};
  // Falls 0.1 per step: relative to the window mean 11%, 12.5%, 14%, 17%, 20% (not more), 25% at step 8.
  auto fired = fire_steps(o, "entropy", {1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2});
  CHECK(fired["entropy"] == Steps{8});
  CHECK(fire_steps(o, "entropy", {1, 1, 1, 1, 1})["entropy"].empty());
}

TEST_CASE("guard: length blow-up fires on truncated or on length/mean near the budget") {
  GuardOptions o = all_off();
  o.length = {.action = GuardAction::warn, .window = 2, .max_truncated = 0.5, .max_length_frac = 0.9};
  CHECK(fire_steps(o, "truncated", {0, 0, 0.4, 0.8, 0.9})["length"] == Steps{4});        // means 0.2, 0.6
  CHECK(fire_steps(o, "length/mean", {50, 50, 95, 95, 99}, 100)["length"] == Steps{4});  // 72.5, then 95 > 90
  CHECK(fire_steps(o, "length/mean", {50, 50, 95, 95, 99}, 200)["length"].empty());      // bound 180
}

TEST_CASE("guard: kl, clip and mismatch fire above their bounds; a metric the run does not log never fires") {
  GuardOptions o = all_off();
  o.kl = {.action = GuardAction::warn, .window = 2, .max = 0.5};
  CHECK(fire_steps(o, "kl", {0.1, 0.1, 0.9, 0.9})["kl"] == Steps{4});  // s3 mean 0.5 is not above
  CHECK(fire_steps(o, "entropy", {0.1, 0.1, 0.9, 0.9})["kl"].empty());
  o = all_off();
  o.mismatch = {.action = GuardAction::warn, .window = 1, .max = 0.1};
  CHECK(fire_steps(o, "mismatch/logprob_abs_mean", {0.01, 0.2, 0.01})["mismatch"] == Steps{2});
  o = all_off();
  o.clip = {.action = GuardAction::warn, .window = 1, .max = 0.3};
  r1::Guard g(o, 100);
  CHECK(g.observe(1, {{"clip/low", 0.1}, {"clip/high", 0.1}}).empty());
  auto f = g.observe(2, {{"clip/low", 0.2}, {"clip/high", 0.2}});  // the sum, 0.4
  REQUIRE(f.size() == 1);
  CHECK(f[0].metric == "clip");
  CHECK(f[0].value == doctest::Approx(0.4));
}

TEST_CASE("guard: zero_std fires after every step of the window is at min_frac") {
  GuardOptions o = all_off();
  o.zero_std = {.action = GuardAction::stop, .window = 3, .min_frac = 0.95};
  CHECK(fire_steps(o, "zero_std_frac", {1, 1, 0.5, 1, 1, 1, 1})["zero_std"] == Steps{6});
}

TEST_CASE("guard: reward_drop fires when the window mean falls max_drop below its best; since follows the best") {
  GuardOptions o = all_off();
  o.reward_drop = {.action = GuardAction::warn, .window = 2, .max_drop = 0.5};
  r1::Guard g(o, 100);
  // Window means: s2 0.25, s3 0.75, s4 1 (the best), s5 0.8, s6 0.4 (0.6 below).
  const std::vector<double> r = {0, 0.5, 1, 1, 0.6, 0.2, 0.2};
  std::vector<r1::GuardFiring> all;
  for (size_t i = 0; i < r.size(); ++i)
    for (auto& f : g.observe(static_cast<int64_t>(i + 1), {{"reward/mean", r[i]}})) all.push_back(f);
  REQUIRE(all.size() == 1);
  CHECK(all[0].step == 6);
  CHECK(all[0].since == 5);
  CHECK(all[0].value == doctest::Approx(0.6));
  CHECK(all[0].message.find("reward_drop: ") == 0);
}

TEST_CASE("guard: a condition fires once while it holds and again only after it clears; off rules never fire") {
  GuardOptions o = all_off();
  o.kl = {.action = GuardAction::rollback, .window = 1, .max = 0.5};
  CHECK(fire_steps(o, "kl", {0.1, 0.9, 0.9, 0.9, 0.1, 0.9})["kl"] == Steps{2, 6});
  o.kl.action = GuardAction::off;
  CHECK(fire_steps(o, "kl", {0.9, 0.9})["kl"].empty());
  // Non-finite values are the non-finite guard's: they never count in a window.
  o.kl.action = GuardAction::warn;
  CHECK(fire_steps(o, "kl", {std::nan(""), std::nan("")})["kl"].empty());
}

TEST_CASE("guard: steps must follow each other; strongest picks rollback over stop over warn") {
  r1::Guard g(GuardOptions{}, 100);
  g.observe(1, {});
  CHECK_THROWS_WITH_AS(g.observe(3, {}), doctest::Contains("step 3 follows step 1"), r1::Error);
  std::vector<r1::GuardFiring> f(3);
  f[0].action = GuardAction::warn, f[1].action = GuardAction::rollback, f[2].action = GuardAction::stop;
  CHECK(r1::strongest(f) == GuardAction::rollback);
  CHECK_FALSE(r1::strongest({}).has_value());
}

TEST_CASE("guard: the state saved mid-stream continues exactly as the uninterrupted guard") {
  GuardOptions o;  // the defaults, every rule on
  o.reward_drop.window = 2;
  std::vector<bj::object> lines;
  for (int i = 0; i < 30; ++i) {
    const double t = i;
    lines.push_back({{"entropy", 1.0 / (1 + t)},
                     {"truncated", t / 30},
                     {"length/mean", 3 * t},
                     {"reward/mean", i < 15 ? t / 15 : 2 - t / 15},
                     {"zero_std_frac", i > 18 ? 1.0 : 0.5},
                     {"kl", t / 20}});
  }
  auto run = [&](r1::Guard& g, int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i)
      for (const auto& f : g.observe(i + 1, lines[static_cast<size_t>(i)])) out.push_back(f.message);
    return out;
  };
  r1::Guard whole(o, 100);
  auto expected = run(whole, 0, 30);
  CHECK(expected.size() >= 4);  // the stream trips several rules
  r1::Guard first(o, 100);
  auto got = run(first, 0, 12);
  const std::string saved = bj::serialize(first.state().to_json());
  r1::Guard second(o, 100);
  second.restore(r1::GuardState::from_json(bj::parse(saved).as_object()));
  for (auto& m : run(second, 12, 30)) got.push_back(m);
  CHECK(got == expected);
  CHECK_THROWS_AS(r1::GuardState::from_json(bj::object{{"recent", 1}}), r1::Error);
}

TEST_CASE("guard config: a rollback rule needs checkpoints from before its window") {
  auto problem = [](const std::string& toml) {
    try {
      const fs::path f = r1::test::binary_dir() / "tests" / "scratch" / "guard.toml";
      fs::create_directories(f.parent_path());
      std::ofstream(f) << toml;
      r1::check_guard_config(r1::cfg::load<r1::RunConfig>(f));
      return std::string();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  };
  CHECK(problem("[guard.kl]\naction = \"rollback\"\n").find("set [train] save_every") != std::string::npos);
  // window 3, save_every 1: a checkpoint from 4 steps back must be kept.
  CHECK(problem("[train]\nsave_every = 1\nkeep_checkpoints = 3\n[guard.kl]\naction = \"rollback\"\n")
            .find("keep_checkpoints to at least 4") != std::string::npos);
  CHECK(problem("[train]\nsave_every = 1\nkeep_checkpoints = 4\n[guard.kl]\naction = \"rollback\"\n").empty());
  CHECK(problem("[guard.entropy]\naction = \"stop\"\n").empty());
  CHECK(problem("[guard.kl]\naction = \"later\"\n").find("off | warn | stop | rollback") != std::string::npos);
}

// ---- Real runs on the tiny model ----

namespace {

using Run = r1::test::ProcessResult;

// A tiny run with a KL to the reference (the lr spike shows there), saving every step.
std::string write_run(const fs::path& dir, const std::string& extra) {
  return r1::test::write_tiny_run(
      dir,
      "[[rewards.checkers]]\nchecker = \"math\"\n[rollout]\ngroup_size = 4\nprompts_per_step = 2\nprompts_per_batch = "
      "2\nmax_batch = 8\n[grpo]\nkl_coef = 0.02\n[train]\nsteps = 8\nlr = 1e-4\nsave_every = 1\nkeep_checkpoints = "
      "4\nmicro_batch = 8\n" +
          extra);
}

Run train(const std::string& config, const fs::path& run_dir, const std::string& env = "") {
  return r1::test::run_shell(env + " " + r1::test::r1_exe() + " train --quiet " + config + " --run-dir " +
                             run_dir.string());
}

fs::path scratch(const char* name) { return r1::test::binary_dir() / "tests" / "scratch" / "guard" / name; }

std::vector<bj::object> jsonl(const fs::path& f) {
  std::vector<bj::object> out;
  std::ifstream in(f);
  for (std::string line; std::getline(in, line);) out.push_back(r1::json::parse(line, f.string()).as_object());
  return out;
}

std::vector<bj::object> events(const fs::path& run, const char* kind) {
  std::vector<bj::object> out;
  for (auto& e : jsonl(run / "events.jsonl"))
    if (e.at("event").as_string() == kind) out.push_back(e);
  return out;
}

// The lr of each logged step as the log reads (later lines supersede earlier ones of a step).
std::map<int64_t, double> lr_by_step(const fs::path& run) {
  std::map<int64_t, double> out;
  for (auto& l : jsonl(run / "metrics.jsonl"))
    if (l.contains("lr")) out[l.at("step").to_number<int64_t>()] = l.at("lr").to_number<double>();
  return out;
}

const char* kKlRule = "[guard.kl]\naction = \"rollback\"\nwindow = 1\nmax = 0.5\n";

const fs::path& clean_run() {
  static const fs::path dir = [] {
    const fs::path d = scratch("clean");
    REQUIRE(train(write_run(d, ""), d / "run").code == 0);
    return d / "run";
  }();
  return dir;
}

}  // namespace

TEST_CASE("guard run: an lr spike trips the kl rule; the rollback restores the checkpoint before it, exactly") {
  const fs::path d = scratch("rollback");
  // The fault is transient: step 3 runs at 1000x the lr once, and clean when it is run again.
  Run r = train(write_run(d, std::string(kKlRule) + "[guard]\nrollback_lr_factor = 1.0\nrollback_skip_data = false\n"),
                d / "run", "R1_TEST_FAULT=lr_spike:3");
  CAPTURE(r.out);
  REQUIRE(r.code == 0);
  auto fired = events(d / "run", "guard");
  REQUIRE(fired.size() >= 1);
  CHECK(fired[0].at("rule").as_string() == "kl");
  CHECK(fired[0].at("step").to_number<int64_t>() == 4);  // step 4's first pass sees step 3's update
  CHECK(fired[0].at("value").to_number<double>() > 0.5);
  // The tiny run's 8-token completions are all cut at the budget: the length rule warns (default
  // action), and training goes on.
  bool warned = false;
  for (auto& e : fired) warned |= e.at("rule").as_string() == "length" && e.at("action").as_string() == "warn";
  CHECK(warned);
  auto rb = events(d / "run", "rollback");
  REQUIRE(rb.size() == 1);
  CHECK(rb[0].at("restored_step").to_number<int64_t>() == 2);  // the weights before the spike
  CHECK(rb[0].at("removed_checkpoints").to_number<int64_t>() == 1);
  // The line of the firing step names it; the rolled-back run then continues exactly as a run that
  // never had the fault: the same weights, bit for bit.
  bool named = false;
  for (auto& l : jsonl(d / "run" / "metrics.jsonl"))
    if (const auto* v = l.if_contains("guard/kl")) named = v->as_string() == "rollback";
  CHECK(named);
  CHECK(r1::read_file(d / "run" / "model" / "model.safetensors") ==
        r1::read_file(clean_run() / "model" / "model.safetensors"));
}

TEST_CASE("guard run: after a rollback the lr takes the factor and the data skips what the abandoned steps drew") {
  const fs::path d = scratch("skip");
  Run r = train(write_run(d, std::string(kKlRule) + "[guard]\nrollback_lr_factor = 0.5\n"), d / "run",
                "R1_TEST_FAULT=lr_spike:3");
  CAPTURE(r.out);
  REQUIRE(r.code == 0);
  auto rb = events(d / "run", "rollback");
  REQUIRE(rb.size() == 1);
  CHECK(rb[0].at("skipped_records").to_number<int64_t>() == 4);  // steps 3 and 4, two prompts each
  auto lr = lr_by_step(d / "run");
  CHECK(lr.at(2) == doctest::Approx(1e-4));
  for (int64_t s = 3; s <= 8; ++s) CHECK(lr.at(s) == doctest::Approx(5e-5));
  // The records drawn: the clean run's 16, plus the 4 skipped.
  auto state = r1::json::parse_file(d / "run" / "checkpoints" / "step-000008" / "trainer_state.json").as_object();
  CHECK(state.at("records_by_rank").as_array()[0].to_number<int64_t>() == 20);
  CHECK(state.at("guard").as_object().at("rollbacks").to_number<int64_t>() == 1);
  // A second run: killed after step 6 and resumed, it ends with the same weights (the lr scale and
  // the guard's windows come back from the checkpoint).
  Run killed = train(write_run(d / "b", std::string(kKlRule) + "[guard]\nrollback_lr_factor = 0.5\n"), d / "b" / "run",
                     "R1_TEST_FAULT=lr_spike:3 R1_TEST_CRASH=after_step:6");
  CHECK(killed.code != 0);
  Run resumed = r1::test::run_shell(r1::test::r1_exe() + " train --quiet --resume " + (d / "b" / "run").string());
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK(r1::read_file(d / "b" / "run" / "model" / "model.safetensors") ==
        r1::read_file(d / "run" / "model" / "model.safetensors"));
}

// With max_policy_lag = 1 the next step's groups are in flight when the rule fires: the rollback
// drops them with the pool and starts a fresh one from the restored weights.
TEST_CASE("guard run: a rollback with groups in flight (max_policy_lag = 1) restarts the workers and finishes") {
  const fs::path d = scratch("lag");
  Run r = train(write_run(d, kKlRule) + " --set rollout.max_policy_lag=1", d / "run", "R1_TEST_FAULT=lr_spike:3");
  CAPTURE(r.out);
  REQUIRE(r.code == 0);
  REQUIRE(events(d / "run", "rollback").size() == 1);
  const auto lines = jsonl(d / "run" / "metrics.jsonl");
  CHECK(lines.back().at("step").to_number<int64_t>() == 8);
  CHECK(fs::exists(d / "run" / "model" / "model.safetensors"));
}

TEST_CASE("guard run: stop writes a final checkpoint and exits 3 naming the rule and the values") {
  const fs::path d = scratch("stop");
  Run r = train(write_run(d, "[guard.kl]\naction = \"stop\"\nwindow = 1\nmax = 0.5\n"), d / "run",
                "R1_TEST_FAULT=lr_spike:3");
  CAPTURE(r.out);
  CHECK(r.code == 3);
  CHECK(r.out.find("stopped after step 4 by the guard: kl: mean kl") != std::string::npos);
  CHECK(r.out.find("is above [guard.kl] max = 0.5") != std::string::npos);
  CHECK(fs::exists(d / "run" / "checkpoints" / "step-000004" / "MANIFEST.json"));
  CHECK_FALSE(fs::exists(d / "run" / "checkpoints" / "step-000005"));
  CHECK_FALSE(fs::exists(d / "run" / "model"));
  auto stop = events(d / "run", "stop");
  REQUIRE(stop.size() == 1);
  CHECK(stop[0].at("step").to_number<int64_t>() == 4);
}

TEST_CASE("guard run: with no rollbacks left, a rollback rule stops the run instead") {
  const fs::path d = scratch("limit");
  Run r =
      train(write_run(d, std::string(kKlRule) + "[guard]\nmax_rollbacks = 0\n"), d / "run", "R1_TEST_FAULT=lr_spike:3");
  CAPTURE(r.out);
  CHECK(r.code == 3);
  CHECK(r.out.find("no rollback: 0 rollback(s) taken, [guard] max_rollbacks = 0") != std::string::npos);
  CHECK(events(d / "run", "rollback").empty());
}

TEST_CASE("guard run: a reward that is constant trips zero_std and stops the run") {
  const fs::path d = scratch("constant");
  // The length reward alone, with a budget no 8-token completion reaches: every one scores 0.
  const std::string cfg = r1::test::write_tiny_run(
      d,
      "[rewards]\nlint = \"warn\"\n[rollout]\ngroup_size = 4\nprompts_per_step = 2\nprompts_per_batch = 2\n"
      "[train]\nsteps = 10\n[guard.zero_std]\naction = \"stop\"\nwindow = 3\n");
  std::string text = r1::read_file(cfg);
  REQUIRE(text.find("length.max_length = 24") != std::string::npos);
  text.replace(text.find("length.max_length = 24"), 22, "length.max_length = 9999");
  r1::write_file_atomic(cfg, text);
  Run r = train(cfg, d / "run");
  CAPTURE(r.out);
  CHECK(r.code == 3);
  CHECK(r.out.find("stopped after step 3 by the guard: zero_std:") != std::string::npos);
}

TEST_CASE("tensorboard: a run's event file holds every scalar of metrics.jsonl, its samples and its config") {
  const fs::path run = clean_run();
  auto files = r1::metrics::tensorboard::event_files(run);
  REQUIRE(files.size() == 1);
  auto ev = r1::metrics::tensorboard::read_events(files[0]);
  CHECK(ev.warnings.empty());
  REQUIRE(!ev.events.empty());
  CHECK(ev.events[0].file_version == r1::metrics::tensorboard::kFileVersion);
  std::map<std::pair<std::string, int64_t>, double> scalars;
  std::vector<std::string> texts;
  for (const auto& e : ev.events)
    for (const auto& v : e.values) {
      if (v.kind == r1::metrics::tensorboard::Value::Kind::scalar)
        scalars[{v.tag, e.step}] = v.scalar;
      else
        texts.push_back(v.tag);
    }
  size_t checked = 0;
  for (auto& l : jsonl(run / "metrics.jsonl")) {
    const int64_t step = l.at("step").to_number<int64_t>();
    for (const auto& kv : l) {
      if (kv.key() == "step" || kv.key() == "time" || !kv.value().is_number()) continue;
      const double x = kv.value().to_number<double>();
      auto it = scalars.find({std::string(kv.key()), step});
      REQUIRE_MESSAGE(it != scalars.end(), kv.key(), " at step ", step);
      CHECK(it->second == static_cast<double>(static_cast<float>(x)));
      ++checked;
    }
  }
  CHECK(checked == scalars.size());  // nothing more, nothing less
  CHECK(std::count(texts.begin(), texts.end(), "config") == 1);
  CHECK(std::count(texts.begin(), texts.end(), "samples") == 8);
}
