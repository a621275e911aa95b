// r1: train, generate, eval, tokenize, rewards, curves, samples, config. Errors become exit codes here:
// 0 success, 1 runtime failure, 2 bad usage or config (nothing was started).
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cli/commands.hpp"
#include "common/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"r1.cpp: R1-Zero-style reinforcement learning for language models, in C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "r1.cpp 0.1.0");
  r1::cli::add_train(app);
  r1::cli::add_pretrain(app);
  r1::cli::add_generate(app);
  r1::cli::add_eval(app);
  r1::cli::add_tokenize(app);
  r1::cli::add_rewards(app);
  r1::cli::add_curves(app);
  r1::cli::add_samples(app);
  r1::cli::add_config(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "r1: {}\n", e.what());
    return r1::exit_code_for(e);
  }
  return 0;
}
