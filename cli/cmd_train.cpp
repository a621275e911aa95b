// r1 train [CONFIG]: GRPO training from a TOML run config (default: the embedded R1-Zero demo).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>

#include "cli/commands.hpp"
#include "common/config.hpp"
#include "common/error.hpp"
#include "common/install.hpp"
#include "rl/memory_plan.hpp"
#include "rl/trainer.hpp"

namespace fs = std::filesystem;

namespace r1::cli {

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& sets) {
  if (!file.empty()) return cfg::load<RunConfig>(file, sets);
  // The embedded demo: share/r1/configs/demo.toml, whose relative paths are inside share/r1.
  const fs::path share = share_dir();
  toml::table t = cfg::parse_file(share / "configs" / "demo.toml");
  for (const char* key : {"model.path", "data.path", "eval.path"})
    if (auto* n = t.at_path(key).as_string(); n && !n->get().empty() && fs::path(n->get()).is_relative())
      *n = (share / n->get()).string();
  return cfg::load<RunConfig>(std::move(t), sets);
}

void add_train(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> sets;
    std::string run_dir;
    std::string resume;
    bool quiet = false;
    bool plan = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "GRPO training from a TOML run config (default: the embedded R1-Zero demo)");
  cmd->add_option("config", a->config, "TOML run config (default: share/r1/configs/demo.toml, the embedded demo)");
  cmd->add_option("--set", a->sets, "override a field: section.key=value (repeatable)");
  cmd->add_option("--run-dir", a->run_dir, "run directory (default: run.out_dir/run.name)");
  cmd->add_option("--resume", a->resume,
                  "continue RUN_DIR from its newest good checkpoint, with its config.toml (--set still applies)");
  cmd->add_flag("--quiet", a->quiet, "no live progress line");
  cmd->add_flag("--plan", a->plan,
                "print the expected peak memory per device by component and exit (r1 train refuses a run whose plan "
                "exceeds the device's memory or [model] memory_limit_gb)");
  cmd->callback([a] {
    std::string file = a->config, run_dir = a->run_dir;
    if (!a->resume.empty()) {
      file = (fs::path(a->resume) / "config.toml").string();
      run_dir = a->resume;
      if (!fs::exists(file)) throw ConfigError(a->resume + ": no config.toml (is this a run directory?)");
    }
    RunConfig cfg = load_run_config(file, a->sets);
    if (a->plan) {
      const MemoryPlan plan = plan_memory(cfg, plan_inputs(cfg));
      fmt::print("{}", describe(plan));
      check_memory(plan);
      return;
    }
    const LaunchEnv env = LaunchEnv::from_environment();
    TrainSummary s = train(
        cfg, {.run_dir = run_dir, .launch = env, .progress = !a->quiet && env.rank == 0, .resume = !a->resume.empty()});
    if (env.rank != 0) return;
    fmt::print("run {}: {} steps in {:.0f}s\n", s.run_dir.string(), s.steps, s.seconds);
    if (s.before.accuracy >= 0)
      fmt::print("held-out accuracy {:.3f} -> {:.3f} ({:+.1f} points), format {:.3f} -> {:.3f}\n", s.before.accuracy,
                 s.after.accuracy, 100 * (s.after.accuracy - s.before.accuracy), s.before.part("format"),
                 s.after.part("format"));
    fmt::print("model saved to {}; curves: r1 curves {}\n", s.model_dir.string(), s.run_dir.string());
  });
}

}  // namespace r1::cli
