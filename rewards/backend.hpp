// The one place that assembles reward scoring. Training rewards, the trainer's eval, `r1 eval`,
// `r1 rewards score` and `r1 rewards serve` all get their checkers here:
//   - in-process: a Scorer over every built-in (format, math, countdown, length, and code in a
//     Sandbox made from [sandbox] the first time a code entry needs one), plus the plugins and
//     commands [rewards] declares;
//   - remote: the reward service's client, when [rewards] endpoint is set;
//   - and the reward service itself, serving the same registry.
// check_rewards_config() makes every check that building would make, without loading a plugin,
// starting a command or a sandbox: `r1 config check` and `r1 train` run it before anything starts.
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rewards/options.hpp"
#include "rewards/sandbox/options.hpp"
#include "rewards/scorer.hpp"
#include "rewards/service/service.hpp"

namespace r1::rewards {

// What a reward stack is made from: a config file's [rewards] and [sandbox] sections.
struct RewardSetup {
  RewardsConfig rewards;
  sandbox::SandboxOptions sandbox;
};

// Reads [rewards] (required) and [sandbox] (optional) of a TOML file; its other sections are not
// read. `--set` overrides apply to the whole file ("rewards.threads=4").
RewardSetup load_reward_setup(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

// The sandbox the code checker runs in, made on first use.
using SandboxSource = std::function<std::shared_ptr<sandbox::Sandbox>()>;
SandboxSource sandbox_from(const sandbox::SandboxOptions& options);
SandboxSource sandbox_from(std::shared_ptr<sandbox::Sandbox> sandbox);

// Every checker kind: the built-ins, code (in the sandbox), and what `cfg` declares.
Registry make_registry(const RewardsConfig& cfg, SandboxSource sandbox);

// The backend a run scores through: remote when cfg.endpoint is set, else in-process.
std::unique_ptr<RewardBackend> make_reward_backend(const RewardsConfig& cfg, SandboxSource sandbox);
inline std::unique_ptr<RewardBackend> make_reward_backend(const RewardSetup& s) {
  return make_reward_backend(s.rewards, sandbox_from(s.sandbox));
}

// The reward service of `r1 rewards serve`: every kind of make_registry, code in a Sandbox made
// from cfg.sandbox (made up front: its statistics are exported).
std::unique_ptr<service::Server> make_reward_server(const service::ServiceConfig& cfg);

// Throws ConfigError listing every problem of `cfg`: no checkers, unknown kinds, options for
// another kind, duplicate part names, plugin libraries and command programs that do not exist,
// options JSON that does not parse. With an endpoint the service's own composition scores and
// [[rewards.checkers]] only names the parts it returns, so only the names are checked here (the
// remote backend checks the service's answer against them).
void check_rewards_config(const RewardsConfig& cfg);

}  // namespace r1::rewards
