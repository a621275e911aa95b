// Plugins: a shared library through the C ABI (in-process and isolated), a version mismatch, and
// external commands that crash or hang: each gives an error or timeout for that sample only.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <chrono>

#include "common/error.hpp"
#include "rewards/rewards.hpp"
#include "test_paths.hpp"

using namespace r1::rewards;

namespace {
Sample sample(std::string c) {
  Sample s;
  s.completion = std::move(c);
  return s;
}
}  // namespace

#ifdef R1_CUSTOM_REWARD_PLUGIN
TEST_CASE("plugin: loads by name and scores in-process") {
  PluginDecl d;
  d.name = "kw";
  d.library = R1_CUSTOM_REWARD_PLUGIN;
  auto c = make_plugin_checker(d, R"({"keyword": "thus"})");
  auto r = c->check(sample("thus 4"), Deadline());
  CHECK(r.status == Status::ok);
  CHECK(r.score == 1.0);
  CHECK(r.reason == "keyword found");
  REQUIRE(r.parts.size() == 1);
  CHECK(r.parts[0].first == "length");
  CHECK(c->check(sample("so 4"), Deadline()).score == 0.0);
  auto f = c->check(sample("FAIL"), Deadline());
  CHECK(f.status == Status::error);
  CHECK(f.reason == "asked to fail");
  CHECK_THROWS_WITH_AS(make_plugin_checker(d, R"({"keyword": 5})"), doctest::Contains("refused its options"),
                       r1::ConfigError);
}

TEST_CASE("plugin: ABI version mismatch and missing library are clear errors") {
  PluginDecl d;
  d.name = "future";
  d.library = R1_CUSTOM_REWARD_PLUGIN_V99;
  CHECK_THROWS_WITH_AS(make_plugin_checker(d, "{}"),
                       doctest::Contains("built for reward plugin ABI version 99, but this r1 speaks version 1"),
                       r1::ConfigError);
  d.library = "/nonexistent/libnothing.so";
  CHECK_THROWS_WITH_AS(make_plugin_checker(d, "{}"), doctest::Contains("cannot load"), r1::ConfigError);
}

TEST_CASE("plugin: isolated mode turns a crash into an error for that sample, then recovers") {
  RewardsConfig cfg;
  PluginDecl d;
  d.name = "kw";
  d.library = R1_CUSTOM_REWARD_PLUGIN;
  d.isolated = true;
  d.timeout_ms = 5000;
  cfg.plugins = {d};
  RewardEntry e;
  e.checker = "kw";
  e.options = R"({"keyword": "therefore"})";
  cfg.checkers = {e};
  cfg.threads = 1;
  Scorer sc(cfg, Registry::for_config(cfg));
  auto out = sc.score({sample("therefore 1"), sample("CRASH now"), sample("therefore 2"), sample("no")});
  CHECK(out[0].score == 1.0);
  CHECK(out[1].status == Status::error);
  CHECK(out[1].parts[0].result.reason.find("died") != std::string::npos);
  MESSAGE("crash reason: " << out[1].parts[0].result.reason);
  CHECK(out[2].score == 1.0);  // restarted
  CHECK(out[3].score == 0.0);
}
#endif

TEST_CASE("command: JSONL process, crash and hang are per-sample, then restart") {
  CommandDecl d;
  d.name = "py";
  d.command = {"python3", (r1::test::source_dir() / "examples/command_reward/keyword_reward.py").string()};
  d.timeout_ms = 1500;
  d.processes = 2;
  auto c = make_command_checker(d, R"({"keywords": ["thus"]})");
  auto r = c->check(sample("thus, thus"), Deadline());
  CHECK(r.status == Status::ok);
  CHECK(r.score == 1.0);
  REQUIRE(r.parts.size() == 1);
  CHECK(r.parts[0].second == 2.0);
  auto crash = c->check(sample("CRASH"), Deadline());
  CHECK(crash.status == Status::error);
  CHECK(crash.reason.find("exited with status 3") != std::string::npos);
  auto t0 = std::chrono::steady_clock::now();
  auto hang = c->check(sample("HANG"), Deadline());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(hang.status == Status::timeout);
  CHECK(ms < 4000);
  for (int i = 0; i < 4; ++i) CHECK(c->check(sample("thus"), Deadline()).score == 1.0);
  CommandDecl bad = d;
  bad.command = {"/nonexistent/reward-binary"};
  CHECK_THROWS_WITH_AS(make_command_checker(bad, "{}"), doctest::Contains("cannot start"), r1::ConfigError);
}

TEST_CASE("command: registered by name through the config") {
  RewardsConfig cfg;
  CommandDecl d;
  d.name = "keyword_py";
  d.command = {"python3", (r1::test::source_dir() / "examples/command_reward/keyword_reward.py").string()};
  cfg.commands = {d};
  RewardEntry e;
  e.checker = "keyword_py";
  e.weight = 0.5;
  cfg.checkers = {e};
  Scorer sc(cfg, Registry::for_config(cfg));
  auto out = sc.score({sample("therefore"), sample("nope")});
  CHECK(out[0].score == doctest::Approx(0.5));
  CHECK(out[1].score == 0.0);
  e.options = "[1, 2]";
  cfg.checkers = {e};
  CHECK_THROWS_WITH_AS(Scorer(cfg, Registry::for_config(cfg)), doctest::Contains("must be a JSON object"),
                       r1::ConfigError);
}
