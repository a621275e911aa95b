// Every run config in configs/recipes/ runs: `r1 config check` accepts it and `r1 train` runs one
// step and its eval in the recipe's own precision (bf16-mixed), on the tiny model with the recipe's
// data and eval paths pointed at a tiny dataset in the same record format (tests/fixtures/recipes/).
// A recipe whose checkers, template or fields cannot run fails here, not on a user's GPU.
#include <doctest/doctest.h>

#include <toml++/toml.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace fs = std::filesystem;

namespace {

// The tiny dataset in a recipe's record format, chosen by the fields its template and rewards read.
fs::path dataset_for(const toml::table& recipe) {
  std::vector<std::string> fields;
  if (const auto* a = recipe.at_path("data.reference_fields").as_array())
    for (const auto& f : *a) fields.push_back(f.value_or(std::string()));
  const fs::path dir = r1::test::fixtures() / "recipes";
  auto has = [&](const char* f) { return std::find(fields.begin(), fields.end(), f) != fields.end(); };
  if (has("entry_point")) return dir / "code.jsonl";
  if (has("nums") && has("target")) return dir / "countdown.jsonl";
  if (has("answer")) return dir / "gsm8k.jsonl";
  return {};
}

std::string tiny_overrides(const fs::path& data, const fs::path& run_dir) {
  std::string s;
  for (const std::string& kv : std::vector<std::string>{
           "model.path=" + (r1::test::source_dir() / "models" / "tiny").string(), "model.device=cpu", "model.threads=1",
           "data.path=" + data.string(), "eval.path=" + data.string(), "eval.limit=2", "eval.max_new_tokens=8",
           "train.steps=1", "train.warmup_steps=0", "train.micro_batch=4", "rollout.group_size=2",
           "rollout.prompts_per_step=2", "rollout.prompts_per_batch=2", "rollout.max_batch=4", "rollout.workers=1",
           "sampling.max_new_tokens=8", "run.out_dir=" + run_dir.parent_path().string(),
           "run.name=" + run_dir.filename().string()})
    s += " --set '" + kv + "'";
  return s;
}

}  // namespace

TEST_CASE("every recipe in configs/recipes/ passes r1 config check and trains one step with its eval") {
  const fs::path scratch = r1::test::binary_dir() / "tests" / "scratch" / "recipes";
  fs::remove_all(scratch);
  int recipes = 0;
  for (const auto& e : fs::directory_iterator(r1::test::source_dir() / "configs" / "recipes")) {
    if (e.path().extension() != ".toml") continue;
    ++recipes;
    const std::string name = e.path().stem().string();
    CAPTURE(name);
    const fs::path data = dataset_for(toml::parse_file(e.path().string()));
    REQUIRE_MESSAGE(!data.empty(), "add a tiny dataset in this recipe's record format to tests/fixtures/recipes/");
    const std::string sets = tiny_overrides(data, scratch / name);
    auto check = r1::test::run_shell(r1::test::r1_exe() + " config check " + e.path().string() + sets);
    CHECK_MESSAGE(check.code == 0, check.out);
    auto run = r1::test::run_shell(r1::test::r1_exe() + " train " + e.path().string() + sets + " --quiet");
    CHECK_MESSAGE(run.code == 0, run.out);
    std::ifstream in(scratch / name / "metrics.jsonl");
    std::vector<boost::json::object> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(r1::json::parse(l, name).as_object());
    REQUIRE(lines.size() == 2);  // the eval before training, then step 1 with its eval
    CHECK(lines[0].contains("eval/accuracy"));
    CHECK(lines[1].at("step").as_int64() == 1);
    CHECK(lines[1].contains("reward/mean"));
    CHECK(lines[1].contains("eval/accuracy"));
    const bool lora = toml::parse_file(e.path().string()).at_path("lora.rank").value_or(int64_t{0}) > 0;
    CHECK(fs::exists(scratch / name / "model" / (lora ? "adapter_model.safetensors" : "model.safetensors")));
  }
  CHECK(recipes >= 4);
}
