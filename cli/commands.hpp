// The r1 program: one function per subcommand, each adding itself to the CLI11 app.
#pragma once
#include <CLI/App.hpp>

namespace r1::cli {

void add_config(CLI::App& app);
void add_generate(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_rewards(CLI::App& app);
void add_rewards_serve(CLI::App& rewards_subcommand);  // cmd_rewards_serve.cpp: `r1 rewards serve`
void add_train(CLI::App& app);   // cmd_later.cpp until the trainer lands
void add_eval(CLI::App& app);
void add_curves(CLI::App& app);

}  // namespace r1::cli
