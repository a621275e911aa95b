#include "cli/flags.hpp"

#include <CLI/CLI.hpp>

#include <map>
#include <string>

#include "common/config.hpp"

namespace r1::cli {

namespace {
// name -> choice, for CLI11's CheckedTransformer.
template <class E>
std::map<std::string, E> choice_map() {
  std::map<std::string, E> m;
  for (size_t i = 0; i < enum_names(E{}).size(); ++i) m[enum_names(E{})[i]] = static_cast<E>(i);
  return m;
}
}  // namespace

void add_model_flags(CLI::App* cmd, PolicyOptions& m) {
  cmd->add_option("--model", m.path, "model folder (default: the embedded tiny model)");
  cmd->add_option("--dtype", m.dtype, cfg::choices_of<Dtype>())
      ->transform(CLI::CheckedTransformer(choice_map<Dtype>()));
  cmd->add_option("--device", m.device, "cpu | cuda | cuda:N");
  cmd->add_option("--threads", m.threads, "CPU threads (0: all)");
}

void add_sampling_flags(CLI::App* cmd, SamplingOptions& s) {
  cmd->add_option("--temperature", s.temperature, "softmax temperature; 0 = greedy");
  cmd->add_option("--top-p", s.top_p, "nucleus sampling mass");
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens (0: all)");
  cmd->add_option("--min-p", s.min_p, "drop tokens below min_p x the most likely");
  cmd->add_option("--max-new-tokens", s.max_new_tokens, "tokens per completion at most");
  cmd->add_option("--stop", s.stop, "stop string (repeatable)");
  cmd->add_option("--stop-token-id", s.stop_token_ids, "extra stop token id (repeatable)");
  cmd->add_flag("--ignore-eos", s.ignore_eos, "do not stop at the model's eos token");
  cmd->add_option("--seed", s.seed, "sampling seed");
}

void check_sampling(const SamplingOptions& s) {
  // Re-read through the typed config so flags get the same range checks as TOML.
  toml::table t;
  t.insert("temperature", s.temperature);
  t.insert("top_p", s.top_p);
  t.insert("top_k", s.top_k);
  t.insert("min_p", s.min_p);
  t.insert("max_new_tokens", s.max_new_tokens);
  t.insert("seed", s.seed);
  try {
    cfg::from_table<SamplingOptions>(t);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("bad sampling flag: ") + e.what());
  }
}

}  // namespace r1::cli
