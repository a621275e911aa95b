// r1 config check|show|docs: validate a run config as r1 train would, print it with defaults
// filled, or document it.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "common/config.hpp"
#include "rl/run_checks.hpp"
#include "rl/run_config.hpp"

namespace r1::cli {

void add_config(CLI::App& app) {
  auto* cfg = app.add_subcommand("config", "Validate, show or document TOML run configs");
  cfg->require_subcommand(1);

  struct Args {
    std::string file;
    std::vector<std::string> sets;
  };
  auto args = std::make_shared<Args>();

  auto* check = cfg->add_subcommand(
      "check",
      "Validate FILE as r1 train does before it starts (types, ranges, unknown keys, reward checkers, "
      "model, data and eval files); exit 2 on errors");
  check->add_option("file", args->file, "TOML run config")->required();
  check->add_option("--set", args->sets, "override a field: section.key=value (repeatable)");
  check->callback([args] {
    check_run_config(load_run_config(args->file, args->sets));
    fmt::print("{}: ok\n", args->file);
  });

  auto* show = cfg->add_subcommand("show", "Print the effective config of FILE (defaults filled in)");
  show->add_option("file", args->file, "TOML run config (omit for the defaults)");
  show->add_option("--set", args->sets, "override a field: section.key=value (repeatable)");
  show->callback([args] { fmt::print("{}", cfg::to_toml(cfg::load<RunConfig>(args->file, args->sets))); });

  auto* docs = cfg->add_subcommand("docs", "Print the reference of every config field as Markdown");
  docs->callback([] { fmt::print("{}", cfg::to_markdown<RunConfig>()); });
}

}  // namespace r1::cli
