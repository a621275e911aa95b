// Subcommands that later milestones fill in. Each parses its options, says what is missing and
// exits 2 (nothing started).
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "common/error.hpp"

namespace r1::cli {

static void later(CLI::App& app, const char* name, const char* what, const char* milestone) {
  auto* cmd = app.add_subcommand(name, what);
  cmd->allow_extras();
  cmd->callback([name, milestone] {
    throw NotImplemented(fmt::format("`r1 {}` is not available yet: it arrives with {}.", name, milestone));
  });
}

void add_train(CLI::App& app) {
  later(app, "train", "GRPO training from a TOML config (arrives with the GRPO trainer)", "the GRPO trainer");
}
void add_curves(CLI::App& app) {
  later(app, "curves", "reward curves from a run's metrics.jsonl (arrives with the GRPO trainer)",
        "the GRPO trainer");
}

}  // namespace r1::cli
