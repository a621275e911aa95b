// r1 generate: completions from a Hugging Face model folder, greedy or sampled (text or token-id
// prompts), on the batched KV-cache engine.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/flags.hpp"
#include "common/error.hpp"
#include "policy/checkpoint.hpp"
#include "policy/device.hpp"
#include "policy/tokenizer.hpp"
#include "rollout/engine.hpp"

namespace r1::cli {

namespace {

struct GenerateArgs {
  PolicyOptions model;
  SamplingOptions sampling;
  std::string prompt;
  std::string prompt_ids;
  int64_t n = 1;
  bool json = false;
};

std::vector<TokenId> parse_ids(const std::string& s) {
  std::vector<TokenId> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    std::string part = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    try {
      size_t used = 0;
      long v = std::stol(part, &used);
      if (used != part.size()) throw std::invalid_argument(part);
      ids.push_back(static_cast<TokenId>(v));
    } catch (const std::exception&) {
      throw ConfigError(fmt::format("--prompt-ids: '{}' is not an integer (expected e.g. 1,2,3)", part));
    }
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return ids;
}

void run(const GenerateArgs& a) {
  if (a.prompt.empty() == a.prompt_ids.empty())
    throw ConfigError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  if (a.n < 1) throw ConfigError("-n must be >= 1");
  check_sampling(a.sampling);

  const std::filesystem::path dir = a.model.model_dir();
  CausalLM model = load_pretrained(a.model);
  model->eval();
  std::optional<Tokenizer> tok;
  if (std::filesystem::exists(dir / "tokenizer.json")) tok = Tokenizer::load(dir / "tokenizer.json");
  if (!tok && !a.sampling.stop.empty()) throw ConfigError("--stop needs tokenizer.json in the model folder");

  std::vector<TokenId> prompt;
  if (!a.prompt.empty()) {
    if (!tok) throw Error(fmt::format("{} has no tokenizer.json; use --prompt-ids instead of --prompt", dir.string()));
    prompt = tok->encode(a.prompt);
  } else {
    prompt = parse_ids(a.prompt_ids);
  }
  Engine engine(model, tok ? &*tok : nullptr, {.max_batch = std::max<int64_t>(a.n, 1)});
  auto t0 = std::chrono::steady_clock::now();
  auto outs = engine.generate({{prompt, a.n, 0}}, a.sampling);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t total = 0;
  for (const auto& c : outs) {
    total += c.tokens.size();
    if (a.json) {
      boost::json::object o{{"prompt_ids", boost::json::value_from(prompt)},
                            {"sample", c.sample},
                            {"ids", boost::json::value_from(c.tokens)},
                            {"logprobs", boost::json::value_from(c.logprobs)},
                            {"finish_reason", cfg::name_of(c.finish_reason)}};
      if (tok) o["text"] = c.text;
      fmt::print("{}\n", boost::json::serialize(o));
    } else if (tok) {
      fmt::print("{}{}\n", a.prompt.empty() ? tok->decode(prompt) : a.prompt, c.text);
    } else {
      fmt::print("{}\n", fmt::join(c.tokens, ","));
    }
  }
  fmt::print(stderr, "[{} completion(s), {} new tokens in {:.2f}s, {:.1f} tok/s; {}]\n", outs.size(), total, secs,
             secs > 0 ? static_cast<double>(total) / secs : 0.0, device_summary());
}

}  // namespace

void add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  a->sampling.temperature = 0.0;  // greedy unless asked
  a->sampling.max_new_tokens = 32;
  auto* cmd = app.add_subcommand("generate", "Generate completions from a Hugging Face model folder");
  add_model_flags(cmd, a->model);
  cmd->add_option("--prompt", a->prompt, "prompt text (needs tokenizer.json in the model folder)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "prompt token ids, comma-separated: 1,2,3");
  add_sampling_flags(cmd, a->sampling);
  cmd->add_option("-n,--samples", a->n, "completions to sample for the prompt");
  cmd->add_flag("--json", a->json, "one JSON object per completion: prompt_ids, ids, logprobs, text, finish_reason");
  cmd->callback([a] { run(*a); });
}

}  // namespace r1::cli
