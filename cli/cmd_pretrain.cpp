// r1 pretrain [CONFIG]: make the embedded demo's tiny base model from the synthetic arithmetic
// textbook, and the held-out problem files GRPO trains and evaluates on.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "common/config.hpp"
#include "rl/pretrain.hpp"

namespace r1::cli {

void add_pretrain(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> sets;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("pretrain", "Pretrain the demo's tiny base model on a synthetic arithmetic textbook");
  cmd->add_option("config", a->config,
                  "TOML file with [pretrain] fields at top level (default: the built-in settings)");
  cmd->add_option("--set", a->sets, "override a field: key=value, e.g. steps=200 (repeatable)");
  cmd->callback([a] {
    PretrainOptions o = cfg::load<PretrainOptions>(a->config, a->sets);
    PretrainSummary s = pretrain(o);
    fmt::print("pretrained {} in {:.0f}s on {} tokens: loss {:.3f} -> {:.3f}; data in {}\n", o.out, s.seconds, s.tokens,
               s.first_loss, s.last_loss, o.data_dir);
  });
}

}  // namespace r1::cli
