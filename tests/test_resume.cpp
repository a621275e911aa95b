// Exact resume: a run killed with SIGKILL after a step, or in the middle of writing a checkpoint,
// or whose newest checkpoint is damaged, continues from the newest good checkpoint and produces
// the same metrics and the same final weights as the run that was never interrupted.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/fs.hpp"
#include "common/json.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace fs = std::filesystem;

namespace {

using Run = r1::test::ProcessResult;
Run sh(const std::string& cmd) { return r1::test::run_shell(cmd); }

fs::path scratch() {
  fs::path d = r1::test::binary_dir() / "tests" / "scratch" / "resume";
  static bool made = [&] {
    r1::test::write_tiny_run(d,
                             "[rollout]\ngroup_size = 4\nprompts_per_step = 2\nprompts_per_batch = 2\nmax_batch = 8\n"
                             "[[rewards.checkers]]\nchecker = \"math\"\n[grpo]\nkl_coef = 0.02\n"
                             "[train]\nsteps = 4\nlr = 1e-3\nsave_every = 1\nkeep_checkpoints = 2\nmicro_batch = 3\n"
                             "inner_epochs = 2\nminibatches = 2\n");
    return true;
  }();
  (void)made;
  return d;
}

std::string r1_train(const std::string& args, const std::string& env = "") {
  return env + " " + r1::test::r1_exe() + " train --quiet " + args;
}

// metrics.jsonl without the wall-clock fields, one JSON text per step.
std::vector<std::string> deterministic_metrics(const fs::path& run) {
  std::vector<std::string> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto o = r1::json::parse(line, "metrics").as_object();
    for (const char* k : {"time", "time/rollout", "time/generate", "time/reward", "time/train", "time/sync",
                          "tokens_per_s/gen", "tokens_per_s/train"})
      o.erase(k);
    out.push_back(boost::json::serialize(o));
  }
  return out;
}

}  // namespace

TEST_CASE("kill -9 after a step, then --resume: the same metrics and weights as an uninterrupted run") {
  fs::path d = scratch();
  const std::string cfg = (d / "run.toml").string();
  REQUIRE(sh(r1_train(cfg + " --run-dir " + (d / "full").string())).code == 0);
  auto full = deterministic_metrics(d / "full");
  REQUIRE(full.size() == 4);

  Run killed = sh(r1_train(cfg + " --run-dir " + (d / "killed").string(), "R1_TEST_CRASH=after_step:2"));
  CHECK(killed.code != 0);  // died by SIGKILL
  CHECK(deterministic_metrics(d / "killed").size() == 2);
  Run resumed = sh(r1_train("--resume " + (d / "killed").string()));
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK(resumed.out.find("resuming") != std::string::npos);
  CHECK(deterministic_metrics(d / "killed") == full);
  CHECK(r1::read_file(d / "killed" / "model" / "model.safetensors") ==
        r1::read_file(d / "full" / "model" / "model.safetensors"));
}

// bf16-mixed with bfloat16 checkpoints: the float32 masters (masters/) and AdamW moments come back
// bit for bit, so the resumed run's last checkpoint equals the uninterrupted run's, file by file.
TEST_CASE("bf16-mixed: kill -9, then --resume restores the float32 masters and moments exactly") {
  fs::path d = scratch();
  const std::string cfg =
      (d / "run.toml").string() +
      " --set model.dtype=bfloat16 --set train.precision=bf16-mixed --set train.save_dtype=bfloat16";
  REQUIRE(sh(r1_train(cfg + " --run-dir " + (d / "mixed_full").string())).code == 0);
  Run killed = sh(r1_train(cfg + " --run-dir " + (d / "mixed_killed").string(), "R1_TEST_CRASH=after_step:2"));
  CHECK(killed.code != 0);
  Run resumed = sh(r1_train("--resume " + (d / "mixed_killed").string()));
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK(deterministic_metrics(d / "mixed_killed") == deterministic_metrics(d / "mixed_full"));
  const fs::path last = fs::path("checkpoints") / "step-000004";
  for (const char* f :
       {"masters/model.safetensors", "optimizer/rank-00000-of-00001.safetensors", "model.safetensors"}) {
    CAPTURE(f);
    REQUIRE(fs::exists(d / "mixed_full" / last / f));
    CHECK(r1::read_file(d / "mixed_killed" / last / f) == r1::read_file(d / "mixed_full" / last / f));
  }
  const std::string config = r1::read_file(d / "mixed_full" / last / "config.json");
  CHECK(config.find("\"bfloat16\"") != std::string::npos);  // the Hugging Face copy in save_dtype
  CHECK(r1::read_file(d / "mixed_full" / last / "masters" / "config.json").find("\"float32\"") != std::string::npos);
}

TEST_CASE("a crash while writing a checkpoint leaves the previous one good; resume uses it") {
  fs::path d = scratch();
  const std::string cfg = (d / "run.toml").string();
  if (!fs::exists(d / "full" / "metrics.jsonl"))
    REQUIRE(sh(r1_train(cfg + " --run-dir " + (d / "full").string())).code == 0);
  Run crashed = sh(r1_train(cfg + " --run-dir " + (d / "midsave").string(), "R1_TEST_CRASH=in_save:3"));
  CHECK(crashed.code != 0);
  CHECK_FALSE(fs::exists(d / "midsave" / "checkpoints" / "step-000003"));
  CHECK(fs::exists(d / "midsave" / "checkpoints" / "step-000002" / "MANIFEST.json"));
  Run resumed = sh(r1_train("--resume " + (d / "midsave").string()));
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK(resumed.out.find("a save that was interrupted") != std::string::npos);  // its temp folder, reported
  CHECK(deterministic_metrics(d / "midsave") == deterministic_metrics(d / "full"));
  CHECK(r1::read_file(d / "midsave" / "model" / "model.safetensors") ==
        r1::read_file(d / "full" / "model" / "model.safetensors"));
  for (const auto& e : fs::directory_iterator(d / "midsave" / "checkpoints"))
    CHECK_MESSAGE(e.path().filename().string()[0] != '.', "left behind: " << e.path());
}

TEST_CASE("when the only save was interrupted, resume says so and removes its temp folder") {
  fs::path d = scratch();
  const std::string cfg = (d / "run.toml").string();
  Run crashed =
      sh(r1_train(cfg + " --set train.save_every=0 --run-dir " + (d / "onlysave").string(), "R1_TEST_CRASH=in_save:4"));
  CHECK(crashed.code != 0);
  size_t temps = 0;
  for (const auto& e : fs::directory_iterator(d / "onlysave" / "checkpoints"))
    temps += e.path().filename().string()[0] == '.';
  REQUIRE(temps == 1);  // the crash left the interrupted save's temp folder
  Run resumed = sh(r1_train("--resume " + (d / "onlysave").string()));
  CAPTURE(resumed.out);
  CHECK(resumed.code == 1);
  CHECK(resumed.out.find("a save that was interrupted") != std::string::npos);
  CHECK(resumed.out.find("no good checkpoint") != std::string::npos);
  CHECK(resumed.out.find("save_every") == std::string::npos);  // one was configured: it just did not finish
  CHECK(fs::is_empty(d / "onlysave" / "checkpoints"));
}

TEST_CASE("a corrupt newest checkpoint is reported and the previous good one is used") {
  fs::path d = scratch();
  const std::string cfg = (d / "run.toml").string();
  if (!fs::exists(d / "full" / "metrics.jsonl"))
    REQUIRE(sh(r1_train(cfg + " --run-dir " + (d / "full").string())).code == 0);
  REQUIRE(sh(r1_train(cfg + " --run-dir " + (d / "corrupt").string(), "R1_TEST_CRASH=after_step:3")).code != 0);
  fs::path bad = d / "corrupt" / "checkpoints" / "step-000003" / "optimizer" / "rank-00000-of-00001.safetensors";
  REQUIRE(fs::exists(bad));
  fs::resize_file(bad, fs::file_size(bad) / 2);
  Run resumed = sh(r1_train("--resume " + (d / "corrupt").string()));
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  CHECK(resumed.out.find("skipping checkpoint") != std::string::npos);
  CHECK(resumed.out.find("step-000003") != std::string::npos);
  CHECK(deterministic_metrics(d / "corrupt") == deterministic_metrics(d / "full"));
  CHECK(r1::read_file(d / "corrupt" / "model" / "model.safetensors") ==
        r1::read_file(d / "full" / "model" / "model.safetensors"));

  // No good checkpoint at all: a clear error, exit 1.
  fs::create_directories(d / "empty");
  fs::copy_file(d / "run.toml", d / "empty" / "config.toml", fs::copy_options::overwrite_existing);
  Run none = sh(r1_train("--resume " + (d / "empty").string()));
  CHECK(none.code == 1);
  CHECK(none.out.find("no good checkpoint") != std::string::npos);
}
