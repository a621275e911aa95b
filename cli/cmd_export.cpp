// r1 export --merge-lora RUN_DIR OUT: a LoRA run's adapters merged into its base model, written as
// a Hugging Face checkpoint that transformers (and r1) load like any other (policy/lora.hpp).
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <optional>

#include "cli/commands.hpp"
#include "common/config_fields.hpp"
#include "common/error.hpp"
#include "policy/lora.hpp"

namespace fs = std::filesystem;

namespace r1::cli {

namespace {

struct ExportArgs {
  std::string from, out;
  bool merge_lora = false;
  std::string dtype;
};

// The adapter folder of RUN_DIR: its final model/, or RUN_DIR itself (a checkpoint or adapter folder).
fs::path adapter_folder(const fs::path& from) {
  for (const fs::path& d : {from / "model", from})
    if (is_adapter_dir(d)) return d;
  throw ConfigError(fmt::format(
      "{}: no adapter_config.json in it or in its model/ folder (is it a LoRA run, [lora] rank > 0?)", from.string()));
}

}  // namespace

void add_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "write a LoRA run's adapters merged into its base as a Hugging Face model");
  cmd->add_flag("--merge-lora", a->merge_lora, "merge the adapters into the base weights (required)")->required();
  cmd->add_option("run_dir", a->from, "run directory, checkpoint folder or PEFT adapter folder")->required();
  cmd->add_option("out", a->out, "output folder (replaced atomically)")->required();
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16 | float16 (default: the base model's torch_dtype)")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  cmd->callback([a] {
    const fs::path dir = adapter_folder(a->from);
    std::optional<Dtype> dtype;
    if (!a->dtype.empty()) dtype = cfg::parse_enum<Dtype>(a->dtype);
    export_merged(dir, a->out, dtype);
    fmt::print(stderr, "r1 export: {} merged into {}\n", dir.string(), a->out);
  });
}

}  // namespace r1::cli
