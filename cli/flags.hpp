// Command-line flags shared by subcommands: model selection and sampling options.
#pragma once
#include <CLI/App.hpp>

#include "policy/options.hpp"
#include "rollout/options.hpp"

namespace r1::cli {

void add_model_flags(CLI::App* cmd, PolicyOptions& model);
void add_sampling_flags(CLI::App* cmd, SamplingOptions& s);
// Validates flag values with the same checks as the TOML fields (ConfigError on a bad value).
void check_sampling(const SamplingOptions& s);

}  // namespace r1::cli
