// The reward backends (in-process, remote), the registry with every built-in, and the config checks.
#include "rewards/backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>

#include <fmt/ranges.h>

#include "common/config.hpp"
#include "common/error.hpp"
#include "rewards/sandbox/code_checker.hpp"
#include "rewards/sandbox/sandbox.hpp"
#include "rewards/service/client.hpp"

namespace fs = std::filesystem;

namespace r1::rewards {

RewardSetup load_reward_setup(const fs::path& file, const std::vector<std::string>& overrides) {
  toml::table t = cfg::parse_file(file);
  for (const auto& o : overrides) cfg::apply_override(t, o);
  const toml::node* r = t.get("rewards");
  if (!r) {
    std::string hint;
    if (t.get("checkers")) hint = " (found a top-level 'checkers': put it under [rewards] as [[rewards.checkers]])";
    throw ConfigError(file.string() + ": no [rewards] section" + hint +
                      "; see configs/rewards_math.toml for an example");
  }
  RewardSetup s;
  cfg::Errors errs;
  if (r->is_array_of_tables())
    errs.add(r->source(), "rewards", "expected a [rewards] table; write the checkers as [[rewards.checkers]]");
  else
    cfg::read_section(t, "rewards", s.rewards, errs);
  cfg::read_section(t, "sandbox", s.sandbox, errs);
  errs.throw_if_any();
  return s;
}

SandboxSource sandbox_from(const sandbox::SandboxOptions& options) {
  struct Lazy {
    std::once_flag once;
    std::shared_ptr<sandbox::Sandbox> sb;
  };
  auto lazy = std::make_shared<Lazy>();
  return [lazy, options] {
    std::call_once(lazy->once, [&] { lazy->sb = std::make_shared<sandbox::Sandbox>(options); });
    return lazy->sb;
  };
}

SandboxSource sandbox_from(std::shared_ptr<sandbox::Sandbox> sandbox) {
  return [sandbox] { return sandbox; };
}

Registry make_registry(const RewardsConfig& cfg, SandboxSource sandbox) {
  Registry r = Registry::for_config(cfg);
  r.add("code", [sandbox](const RewardEntry& e) {
    return sandbox::make_code_checker(sandbox(), e.code.value_or(sandbox::CodeOptions{}));
  });
  return r;
}

namespace {

// The service scores with its own composition; its parts must be the ones the config names, or
// accuracy and per-part metrics would silently read nothing.
class RemoteBackend final : public RewardBackend {
 public:
  explicit RemoteBackend(const RewardsConfig& cfg) : client_(service::client_options(cfg)), endpoint_(cfg.endpoint) {
    for (const auto& e : cfg.checkers) names_.push_back(e.part_name());
  }
  std::vector<Scored> score(const std::vector<Sample>& batch) override {
    std::vector<Scored> out = client_.score(batch);
    for (const auto& s : out) check_parts(s);
    return out;
  }
  std::string describe() const override { return "remote " + endpoint_; }

 private:
  void check_parts(const Scored& s) const {
    std::vector<std::string> got;
    for (const auto& p : s.parts) got.push_back(p.name);
    auto want = names_;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    if (got != want)
      fail(
          "reward service at {}: it scores the parts ({}) but [[rewards.checkers]] names ({}); list the "
          "service's composition there",
          endpoint_, fmt::join(got, ", "), fmt::join(want, ", "));
  }
  service::RewardClient client_;
  std::string endpoint_;
  std::vector<std::string> names_;
};

}  // namespace

std::unique_ptr<RewardBackend> make_reward_backend(const RewardsConfig& cfg, SandboxSource sandbox) {
  check_rewards_config(cfg);
  if (!cfg.endpoint.empty()) return std::make_unique<RemoteBackend>(cfg);
  return std::make_unique<Scorer>(cfg, make_registry(cfg, std::move(sandbox)));
}

std::unique_ptr<service::Server> make_reward_server(const service::ServiceConfig& cfg) {
  if (!cfg.rewards.checkers.empty()) check_rewards_config(cfg.rewards);
  auto sb = std::make_shared<sandbox::Sandbox>(cfg.sandbox);
  return std::make_unique<service::Server>(cfg, make_registry(cfg.rewards, sandbox_from(sb)), sb);
}

namespace {

// argv[0] of a command: a path that exists, or a program on PATH.
bool program_exists(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return fs::exists(prog);
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t b = 0; b <= dirs.size();) {
    size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    fs::path p = fs::path(dirs.substr(b, e - b)) / prog;
    if (::access(p.c_str(), X_OK) == 0) return true;
    b = e + 1;
  }
  return false;
}

}  // namespace

void check_rewards_config(const RewardsConfig& cfg) {
  std::vector<std::string> problems;
  auto check = [&](auto&& f) {
    try {
      f();
    } catch (const ConfigError& e) {
      problems.push_back(e.what());
    }
  };
  check([&] { part_names(cfg); });
  if (cfg.endpoint.empty()) {
    std::vector<std::string> kinds = builtin_kinds();
    auto declare = [&](const std::string& name, const char* where) {
      if (std::find(kinds.begin(), kinds.end(), name) != kinds.end())
        problems.push_back(fmt::format("{}: the checker name '{}' is taken (built-in names: {})", where, name,
                                       fmt::join(builtin_kinds(), ", ")));
      kinds.push_back(name);
    };
    for (const auto& p : cfg.plugins) {
      declare(p.name, "rewards.plugins.name");
      if (!fs::exists(p.library))
        problems.push_back(
            fmt::format("rewards.plugins[{}].library: {} does not exist (paths are relative to the "
                        "working directory)",
                        p.name, p.library));
    }
    for (const auto& c : cfg.commands) {
      declare(c.name, "rewards.commands.name");
      if (!program_exists(c.command[0]))
        problems.push_back(
            fmt::format("rewards.commands[{}].command: program '{}' is not found (nor on PATH)", c.name, c.command[0]));
    }
    for (size_t i = 0; i < cfg.checkers.size(); ++i)
      check([&] { check_entry(cfg.checkers[i], "rewards.checkers[" + std::to_string(i) + "]", kinds); });
  }
  if (problems.empty()) return;
  std::string all = problems.size() == 1 ? problems[0] : fmt::format("{} reward config errors:", problems.size());
  if (problems.size() > 1)
    for (const auto& p : problems) all += "\n  " + p;
  throw ConfigError(all);
}

}  // namespace r1::rewards
