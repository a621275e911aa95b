// r1 rewards score|serve: score JSONL samples with the checkers of a TOML file's [rewards] and
// [sandbox] sections (a thin wrapper over r1::rewards::score_jsonl), or serve them over HTTP
// (cmd_rewards_serve.cpp).
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "rewards/backend.hpp"
#include "rl/reward_lint.hpp"

namespace r1::cli {

void add_rewards(CLI::App& app) {
  auto* rw = app.add_subcommand("rewards", "Score completions with rule-based reward checkers");
  rw->require_subcommand(1);

  struct Args {
    std::string config, input = "-", output = "-";
    std::vector<std::string> sets;
    int64_t threads = -1;
    size_t batch = 256;
  };
  auto a = std::make_shared<Args>();

  auto* score =
      rw->add_subcommand("score", "Score JSONL samples: r1 rewards score --config FILE < in.jsonl > out.jsonl");
  score
      ->add_option("--config", a->config,
                   "TOML file with a [rewards] section and optionally [sandbox] (a run config works)")
      ->required();
  score->add_option("--set", a->sets, "override a field: rewards.key=value (repeatable)");
  score->add_option("-i,--input", a->input, "samples JSONL ('-' = stdin)");
  score->add_option("-o,--output", a->output, "scored JSONL ('-' = stdout)");
  score->add_option("--threads", a->threads, "override rewards.threads");
  score->add_option("--batch", a->batch, "samples scored together")->check(CLI::Range(1, 1 << 20));
  score->callback([a] {
    rewards::RewardSetup setup = rewards::load_reward_setup(a->config, a->sets);
    if (a->threads >= 0) setup.rewards.threads = a->threads;
    auto scorer = rewards::make_reward_backend(setup);
    std::ifstream fin;
    std::ofstream fout;
    if (a->input != "-") {
      fin.open(a->input);
      if (!fin) throw ConfigError("cannot read " + a->input);
    }
    if (a->output != "-") {
      fout.open(a->output);
      if (!fout) throw ConfigError("cannot write " + a->output);
    }
    std::istream& in = a->input == "-" ? std::cin : fin;
    std::ostream& out = a->output == "-" ? std::cout : fout;
    auto sum = rewards::score_jsonl(in, out, *scorer, a->batch);
    fmt::print(stderr, "r1 rewards: {} lines, mean score {:.4f}, {} timeouts, {} errors, {} bad lines\n", sum.lines,
               sum.lines > sum.bad_lines ? sum.score_sum / static_cast<double>(sum.lines - sum.bad_lines) : 0.0,
               sum.timeouts, sum.errors, sum.bad_lines);
    if (sum.bad_lines > 0)
      throw Error(fmt::format("{} input lines were not valid samples (see their output lines)", sum.bad_lines));
  });

  auto* lint = rw->add_subcommand(
      "lint",
      "Check a run config's rewards on its training prompts: the gold answer must score full marks; an "
      "empty, echoed or format-only completion must not (exit 1 on a failure)");
  lint->add_option("--config", a->config, "run config (TOML)")->required();
  lint->add_option("--set", a->sets, "override a field: section.key=value (repeatable)");
  lint->callback([a] {
    RunConfig cfg = load_run_config(a->config, a->sets);
    auto backend = rewards::make_reward_backend(cfg.rewards, rewards::sandbox_from(cfg.sandbox));
    const rewards::LintReport r = lint_run_rewards(cfg, *backend);
    fmt::print("reward lint of {} ({} training prompts, accuracy part {}):\n{}", a->config, lint_probes(cfg).size(),
               cfg.accuracy_part(), r.describe());
    if (!r.passed()) throw Error("reward lint failed");
  });

  add_rewards_serve(*rw);
}

}  // namespace r1::cli
