// r1: train, generate, eval, export, tokenize, rewards, curves, samples, config. Errors become exit codes here:
// 0 success, 1 runtime failure, 2 bad usage or config (nothing was started), 3 a training run
// stopped by a guard rule (with its final checkpoint).
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/memory.hpp"

int main(int argc, char** argv) {
  r1::keep_freed_memory();
  CLI::App app{"r1.cpp: R1-Zero-style reinforcement learning for language models, in C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "r1.cpp 0.1.0");
  r1::cli::add_train(app);
  r1::cli::add_pretrain(app);
  r1::cli::add_launch(app);
  r1::cli::add_generate(app);
  r1::cli::add_eval(app);
  r1::cli::add_export(app);
  r1::cli::add_tokenize(app);
  r1::cli::add_rewards(app);
  r1::cli::add_curves(app);
  r1::cli::add_samples(app);
  r1::cli::add_config(app);
  // `r1 launch [options] -- COMMAND...`: everything after -- belongs to the ranks, not to CLI11.
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "launch") {
    auto dash = std::find(args.begin(), args.end(), "--");
    if (dash != args.end()) {
      r1::cli::launch_command().assign(dash + 1, args.end());
      args.erase(dash, args.end());
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last-first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "r1: {}\n", e.what());
    return r1::exit_code_for(e);
  }
  return 0;
}
