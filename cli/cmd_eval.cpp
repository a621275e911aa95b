// r1 eval: sample k completions per prompt of a JSONL dataset, score them with the reward checkers,
// and report pass@1, pass@k, maj@k, each part's mean score and the mean length; per-sample results
// go to JSONL.
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <fstream>

#include "cli/commands.hpp"
#include "cli/flags.hpp"
#include "common/config.hpp"
#include "common/error.hpp"
#include "policy/checkpoint.hpp"
#include "rewards/backend.hpp"
#include "rl/eval.hpp"

namespace r1::cli {

namespace {

struct EvalArgs {
  PolicyOptions model;
  SamplingOptions sampling;
  DatasetOptions data;
  std::string checker = "math";
  std::string config;
  std::string out;
  EvalOptions eval;
};

// The rewards to score with: --config's [rewards] and [sandbox], or the one built-in --checker.
// The accuracy part: --accuracy-part, else the config's [train] accuracy_part, else the first part.
rewards::RewardSetup reward_setup(EvalArgs& a) {
  rewards::RewardSetup setup;
  std::string config_part;
  if (!a.config.empty()) {
    setup = rewards::load_reward_setup(a.config);
    if (auto p = cfg::parse_file(a.config).at_path("train.accuracy_part").value<std::string>()) config_part = *p;
  } else {
    rewards::RewardEntry e;
    e.checker = a.checker;
    setup.rewards.checkers.push_back(e);
  }
  rewards::check_rewards_config(setup.rewards);
  const std::vector<std::string> parts = rewards::part_names(setup.rewards);
  if (a.eval.accuracy_part.empty()) a.eval.accuracy_part = config_part.empty() ? parts[0] : config_part;
  if (std::find(parts.begin(), parts.end(), a.eval.accuracy_part) == parts.end())
    throw ConfigError(fmt::format("--accuracy-part '{}' is not a reward part (the parts are: {})", a.eval.accuracy_part,
                                  fmt::join(parts, ", ")));
  return setup;
}

void progress_bar(int64_t done, int64_t total, std::chrono::steady_clock::time_point t0) {
  static const bool tty = isatty(STDERR_FILENO);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double eta = done > 0 ? secs / static_cast<double>(done) * static_cast<double>(total - done) : 0;
  const int width = 30, fill = total > 0 ? static_cast<int>(width * done / total) : width;
  std::string bar = fmt::format("[{}{}] {}/{} prompts, {:.0f}s elapsed, ETA {:.0f}s", std::string(fill, '#'),
                                std::string(width - fill, '.'), done, total, secs, eta);
  if (tty)
    fmt::print(stderr, "\r{}{}", bar, done == total ? "\n" : "");
  else
    fmt::print(stderr, "{}\n", bar);
}

void run(EvalArgs& a) {
  check_sampling(a.sampling);
  if (a.eval.samples < 1) throw ConfigError("--samples must be >= 1");
  auto scorer = rewards::make_reward_backend(reward_setup(a));
  Dataset dataset(a.data);
  std::vector<PromptRecord> prompts;
  for (size_t i = 0; i < dataset.size(); ++i) prompts.push_back(dataset.at(i));

  CausalLM model = load_pretrained(a.model);
  model->eval();
  Tokenizer tok = Tokenizer::load(a.model.model_dir() / "tokenizer.json");
  Engine engine(model, &tok, {.max_batch = std::max<int64_t>(64, a.eval.samples)});

  std::ofstream out;
  if (!a.out.empty()) {
    out.open(a.out);
    if (!out) throw ConfigError("cannot write " + a.out);
  }
  auto t0 = std::chrono::steady_clock::now();
  EvalReport rep = evaluate(
      engine, tok, prompts, *scorer, a.sampling, a.eval,
      [&](const EvalSample& s) {
        if (!out.is_open()) return;
        boost::json::object o = rewards::to_json(s.scored);
        o["prompt_index"] = s.prompt;
        o["sample"] = s.sample;
        o["completion"] = s.completion;
        o["tokens"] = s.tokens;
        o["finish_reason"] = cfg::name_of(s.finish_reason);
        o["correct"] = s.correct;
        out << boost::json::serialize(o) << '\n';
      },
      [&](int64_t done, int64_t total) { progress_bar(done, total, t0); });
  const int64_t k = a.eval.samples;
  std::string parts;
  for (const auto& [name, mean] : rep.part_means) parts += fmt::format("  {} {:.4f}", name, mean);
  fmt::print(
      "prompts {}  samples/prompt {}  pass@1 {:.4f}  pass@{} {:.4f}  maj@{} {:.4f}  mean score {:.4f}{}  "
      "mean length {:.1f}  truncated {:.3f}  {:.1f} tok/s  (correct: {} >= 1)\n",
      rep.prompts, k, rep.pass_at_1, k, rep.pass_at_k, k, rep.maj_at_k, rep.mean_score, parts, rep.mean_length,
      rep.truncated, rep.tokens_per_second, a.eval.accuracy_part);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  a->sampling.max_new_tokens = 256;
  a->data.shuffle = false;
  auto* cmd = app.add_subcommand("eval", "pass@1, pass@k, maj@k and mean length of a model on a JSONL dataset");
  add_model_flags(cmd, a->model);
  cmd->add_option("--data", a->data.path, "JSONL dataset")->required();
  cmd->add_option("--template", a->data.prompt_template, "prompt template with {field} placeholders");
  cmd->add_option("--reference-fields", a->data.reference_fields,
                  "record fields given to the checker (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--limit", a->data.limit, "evaluate the first N records");
  cmd->add_option("--checker", a->checker, "built-in checker: math, countdown, format, length, code (or use --config)");
  cmd->add_option("--config", a->config,
                  "TOML with a [rewards] section (and optionally [sandbox]) to score with instead of --checker; "
                  "a run config works");
  cmd->add_option("--accuracy-part", a->eval.accuracy_part,
                  "the reward part whose score >= 1 makes a sample correct (default: the config's [train] "
                  "accuracy_part, else the first part)");
  cmd->add_option("-k,--samples", a->eval.samples, "completions per prompt (k)");
  cmd->add_option("--batch", a->eval.prompts_per_batch, "prompts generated together");
  cmd->add_option("--out", a->out, "write per-sample results to this JSONL file");
  add_sampling_flags(cmd, a->sampling);
  auto* temp = cmd->get_option("--temperature");
  cmd->callback([a, temp] {
    // Greedy for k = 1, T = 1 sampling for k > 1, unless --temperature says otherwise.
    if (temp->count() == 0) a->sampling.temperature = a->eval.samples == 1 ? 0.0 : 1.0;
    run(*a);
  });
}

}  // namespace r1::cli
