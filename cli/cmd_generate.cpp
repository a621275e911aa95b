// r1 generate: greedy decoding from a Hugging Face model folder (text or token-id prompts).
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <filesystem>

#include "cli/commands.hpp"
#include "common/config.hpp"
#include "common/error.hpp"
#include "policy/checkpoint.hpp"
#include "policy/device.hpp"
#include "policy/generate.hpp"
#include "policy/tokenizer.hpp"

namespace r1::cli {

namespace {

struct GenerateArgs {
  PolicyOptions model;
  std::string prompt;
  std::string prompt_ids;
  int64_t max_new_tokens = 32;
  double temperature = 0.0;
  bool json = false;
  bool ignore_eos = false;
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
  if (a.temperature != 0.0)
    throw NotImplemented("sampling with --temperature > 0 arrives with the rollout engine; use --temperature 0");
  if (a.max_new_tokens < 0) throw ConfigError("--max-new-tokens must be >= 0");

  const std::filesystem::path dir = a.model.path;
  CausalLM model = load_pretrained(a.model);
  model->eval();
  std::optional<Tokenizer> tok;
  if (std::filesystem::exists(dir / "tokenizer.json")) tok = Tokenizer::load(dir / "tokenizer.json");

  std::vector<TokenId> prompt;
  if (!a.prompt.empty()) {
    if (!tok) throw Error(fmt::format("{} has no tokenizer.json; use --prompt-ids instead of --prompt", dir.string()));
    prompt = tok->encode(a.prompt);
  } else {
    prompt = parse_ids(a.prompt_ids);
  }
  GreedyOptions go;
  go.max_new_tokens = a.max_new_tokens;
  if (!a.ignore_eos) {
    for (auto e : model->config().eos_token_ids) go.stop_ids.push_back(e);
    if (go.stop_ids.empty() && tok && tok->eos_id()) go.stop_ids.push_back(*tok->eos_id());
  }
  auto t0 = std::chrono::steady_clock::now();
  Generation g = greedy_generate(model, {prompt}, go)[0];
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string text = tok ? tok->decode(g.tokens) : std::string();
  if (a.json) {
    boost::json::object o{{"prompt_ids", boost::json::value_from(prompt)},
                          {"ids", boost::json::value_from(g.tokens)},
                          {"finish_reason", g.finish_reason},
                          {"seconds", secs}};
    if (tok) o["text"] = text;
    fmt::print("{}\n", boost::json::serialize(o));
  } else if (tok) {
    fmt::print("{}{}\n", a.prompt.empty() ? tok->decode(prompt) : a.prompt, text);
  } else {
    fmt::print("{}\n", fmt::join(g.tokens, ","));
  }
  if (!a.json)
    fmt::print(stderr, "[{} new tokens, {}, {:.1f} tok/s; {}]\n", g.tokens.size(), g.finish_reason,
               secs > 0 ? g.tokens.size() / secs : 0.0, device_summary());
}

}  // namespace

void add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate a completion from a Hugging Face model folder");
  cmd->add_option("--model", a->model.path, "model folder (default: the embedded tiny model)");
  cmd->add_option("--prompt", a->prompt, "prompt text (needs tokenizer.json in the model folder)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "prompt token ids, comma-separated: 1,2,3");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "tokens to generate (default 32)");
  cmd->add_option("--temperature", a->temperature, "0 = greedy (sampling arrives with the rollout engine)");
  cmd->add_option("--dtype", a->model.dtype, "float32 | bfloat16 | float16");
  cmd->add_option("--device", a->model.device, "cpu | cuda | cuda:N");
  cmd->add_option("--threads", a->model.threads, "CPU threads (0: all)");
  cmd->add_flag("--json", a->json, "print one JSON object: prompt_ids, ids, text, finish_reason");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "do not stop at the model's eos token");
  cmd->callback([a] { run(*a); });
}

}  // namespace r1::cli
