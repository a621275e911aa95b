// The r1 program: one function per subcommand, each adding itself to the CLI11 app.
#pragma once
#include <CLI/App.hpp>

#include "rl/run_config.hpp"

#include <string>
#include <vector>

namespace r1::cli {

void add_config(CLI::App& app);
void add_generate(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_rewards(CLI::App& app);
void add_rewards_serve(CLI::App& rewards_subcommand);  // cmd_rewards_serve.cpp: `r1 rewards serve`
void add_train(CLI::App& app);                         // cmd_train.cpp
// A run config: FILE with `--set` overrides, or the embedded demo when FILE is empty.
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& sets);
void add_pretrain(CLI::App& app);            // cmd_pretrain.cpp
void add_launch(CLI::App& app);              // cmd_launch.cpp
std::vector<std::string>& launch_command();  // what follows -- in `r1 launch ... -- COMMAND`
void add_eval(CLI::App& app);
void add_export(CLI::App& app);   // cmd_export.cpp: `r1 export --merge-lora`
void add_curves(CLI::App& app);   // cmd_curves.cpp: `r1 curves` (logic in metrics/)
void add_samples(CLI::App& app);  // cmd_curves.cpp: `r1 samples`

}  // namespace r1::cli
