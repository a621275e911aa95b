// r1 rewards serve: the HTTP reward service (rewards/service) on a port, configured by a TOML file
// with [service], [sandbox] and [rewards] sections. SIGTERM or Ctrl-C drains it gracefully.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "rewards/backend.hpp"

namespace r1::cli {

void add_rewards_serve(CLI::App& rewards_subcommand) {
  struct Args {
    std::string config, host;
    int64_t port = -1;
    std::vector<std::string> sets;
  };
  auto a = std::make_shared<Args>();
  auto* serve = rewards_subcommand.add_subcommand(
      "serve", "HTTP reward service: POST /v1/score, GET /healthz, GET /metrics (docs/REWARD_SERVICE.md)");
  serve->add_option("--config", a->config, "TOML file with [service], [sandbox] and [rewards] sections");
  serve->add_option("--port", a->port, "TCP port (overrides service.port; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  serve->add_option("--host", a->host, "address to listen on (overrides service.host)");
  serve->add_option("--set", a->sets, "override a field: service.max_inflight=32, rewards.threads=8 (repeatable)");
  serve->callback([a] {
    auto cfg = service::load_service_config(a->config, a->sets);
    if (a->port >= 0) cfg.service.port = a->port;
    if (!a->host.empty()) cfg.service.host = a->host;
    auto server = rewards::make_reward_server(cfg);
    fmt::print(stderr, "r1 rewards serve: listening on http://{}:{} ({} composition entries, {} scoring slots)\n",
               cfg.service.host, server->port(), cfg.rewards.checkers.size(), cfg.service.max_inflight);
    server->run();
    fmt::print(stderr, "r1 rewards serve: stopped\n");
  });
}

}  // namespace r1::cli
