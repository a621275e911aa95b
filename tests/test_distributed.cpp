// Data parallelism through the r1 program and c10d (Gloo over loopback): two ranks give the same
// weights (<= 1e-6) and metrics as one rank with the same global batch after 3 steps (also with
// activation checkpointing, whose nested backward must still feed the overlapped all-reduce), and when a
// rank is killed mid-run the others fail with a clear error within the configured timeout.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/fs.hpp"
#include "policy/safetensors.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace fs = std::filesystem;

namespace {

using Run = r1::test::ProcessResult;
Run sh(const std::string& cmd) { return r1::test::run_shell(cmd); }

fs::path setup_dir() {
  fs::path d = r1::test::binary_dir() / "tests" / "scratch" / "distributed";
  r1::test::write_tiny_run(
      d,
      "[rollout]\ngroup_size = 4\nprompts_per_step = 4\nprompts_per_batch = 2\nmax_batch = 8\n"
      "[grpo]\nkl_coef = 0.05\n[train]\nsteps = 3\nlr = 1e-4\nmicro_batch = 3\n"
      // With Adam's default eps (1e-8), gradient entries near 1e-8 (the tied lm_head rows of
      // rare tokens) move by up to lr on their sign alone, so reduction-order rounding could
      // show up as lr-sized weight differences; 1e-6 keeps their updates proportional.
      "adam_eps = 1e-6\n"
      "[distributed]\ntimeout_s = 10\nchecksum_every = 1\nbucket_mb = 0.05\n");  // ~8 buckets of 430 KB
  return d;
}

using r1::test::r1_exe;

// The largest difference between the weights of two saved models, over every tensor.
double max_weight_gap(const fs::path& x, const fs::path& y) {
  r1::SafetensorsReader a(x), b(y);
  double worst = 0;
  for (const auto& [name, e] : a.entries())
    worst = std::max(worst, (a.get(name) - b.get(name)).abs().max().item<double>());
  return worst;
}

}  // namespace

TEST_CASE("two ranks over loopback equal one rank with the same global batch") {
  fs::path d = setup_dir();
  const std::string cfg = (d / "run.toml").string();
  Run one = sh(r1_exe() + " train " + cfg + " --quiet --run-dir " + (d / "one").string());
  REQUIRE(one.code == 0);
  Run two = sh(r1_exe() + " launch --nproc 2 --master-port 29731 -- train " + cfg + " --quiet --run-dir " +
               (d / "two").string());
  CAPTURE(two.out);
  REQUIRE(two.code == 0);
  r1::SafetensorsReader a(d / "one" / "model"), b(d / "two" / "model"),
      base(r1::test::source_dir() / "models" / "tiny");
  double worst = 0, moved = 0;
  for (const auto& [name, e] : a.entries()) {
    worst = std::max(worst, (a.get(name) - b.get(name)).abs().max().item<double>());
    moved = std::max(moved, (a.get(name) - base.get(name)).abs().max().item<double>());
  }
  MESSAGE("max |w(1 rank) - w(2 ranks)| = " << worst << ", training moved weights by up to " << moved);
  CHECK(worst <= 1e-6);
  CHECK(moved > 1e-4);  // the comparison is not vacuous
  // Metrics are reduced over ranks: the same rewards and lengths as the single rank.
  std::string m1 = r1::read_file(d / "one" / "metrics.jsonl"), m2 = r1::read_file(d / "two" / "metrics.jsonl");
  auto field = [](const std::string& text, const std::string& key) {
    std::vector<std::string> v;
    for (size_t p = text.find("\"" + key + "\":"); p != std::string::npos; p = text.find("\"" + key + "\":", p + 1))
      v.push_back(text.substr(p, text.find(',', p) - p));
    return v;
  };
  CHECK(field(m1, "reward/mean") == field(m2, "reward/mean"));
  CHECK(field(m1, "length/mean") == field(m2, "length/mean"));
  CHECK(field(m2, "reward/mean").size() == 3);
  // Gradient buckets were all-reduced while backward was still running, not after it.
  std::vector<std::string> overlapped = field(m2, "dist/overlapped_buckets");
  REQUIRE(overlapped.size() == 3);
  for (const auto& o : overlapped) CHECK(std::stod(o.substr(o.find(':') + 1)) > 0.5);
  MESSAGE("share of buckets launched inside backward: " << overlapped[0]);
}

TEST_CASE("activation checkpointing on two ranks: the weights of one rank without it, buckets still overlapped") {
  fs::path d = setup_dir();
  const std::string cfg = (d / "run.toml").string();
  Run one = sh(r1_exe() + " train " + cfg + " --quiet --run-dir " + (d / "plain").string());
  REQUIRE(one.code == 0);
  Run two = sh(r1_exe() + " launch --nproc 2 --master-port 29735 -- train " + cfg + " --quiet --run-dir " +
               (d / "ckpt").string() + " --set 'train.activation_checkpointing=\"layers\"'");
  CAPTURE(two.out);
  REQUIRE(two.code == 0);
  const double worst = max_weight_gap(d / "plain" / "model", d / "ckpt" / "model");
  MESSAGE("max |w(1 rank) - w(2 ranks, checkpointed)| = " << worst);
  CHECK(worst <= 1e-6);
  // The gradients produced inside the recomputed layers' nested backward still start their
  // all-reduce while backward runs.
  const std::string m = r1::read_file(d / "ckpt" / "metrics.jsonl");
  const size_t p = m.find("\"dist/overlapped_buckets\":");
  REQUIRE(p != std::string::npos);
  CHECK(std::stod(m.substr(p + 26)) > 0.5);
}

TEST_CASE("a rank killed mid-run makes the others fail with a clear error within the timeout") {
  fs::path d = setup_dir();
  const std::string cfg = (d / "run.toml").string();
  Run r = sh("R1_TEST_CRASH=after_step:1@1 " + r1_exe() + " launch --nproc 2 --master-port 29733 --grace 60 -- train " +
             cfg + " --quiet --run-dir " + (d / "killed").string());
  CAPTURE(r.out);
  CHECK(r.code != 0);
  CHECK(r.out.find("rank 1 was killed by signal 9") != std::string::npos);
  CHECK(r.out.find("data parallel") != std::string::npos);  // rank 0's own error, not the launcher's kill
  CHECK(r.out.find("killed the ranks still running") == std::string::npos);
  CHECK(r.seconds < 40);  // timeout_s = 10, plus start-up
}

// The non-finite guard on two ranks: NaN gradients on rank 1 alone reach rank 0 through the
// all-reduce, both skip that optimizer step (checksum_every = 1 compares the weights after every
// step, so a rank that stepped would fail the run), and guard/skipped_steps counts it. NaN in
// max_skipped_steps updates in a row stops the run with a clear error and no checkpoint of them.
TEST_CASE("bf16-mixed on two ranks: a NaN gradient on one rank skips the step on both; 3 in a row stop the run") {
  fs::path d = setup_dir();
  const std::string cfg = (d / "run.toml").string() +
                          " --set model.dtype=bfloat16 --set train.precision=bf16-mixed --set train.save_every=1";
  Run once = sh("R1_TEST_FAULT=nan_grad:2@1 " + r1_exe() + " launch --nproc 2 --master-port 29737 -- train " + cfg +
                " --quiet --run-dir " + (d / "nan_once").string());
  CAPTURE(once.out);
  REQUIRE(once.code == 0);
  std::ifstream in(d / "nan_once" / "metrics.jsonl");
  std::vector<double> skipped;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"guard/skipped_steps\"") != std::string::npos)
      skipped.push_back(std::stod(line.substr(line.find("\"guard/skipped_steps\":") + 22)));
  CHECK(skipped == std::vector<double>({0, 1, 0}));

  Run stop =
      sh("R1_TEST_FAULT=nan_grad:2+5@1 " + r1_exe() + " launch --nproc 2 --master-port 29739 --grace 30 -- train " +
         cfg + " --set train.max_skipped_steps=2 --set train.steps=5 --quiet --run-dir " + (d / "nan_stop").string());
  CAPTURE(stop.out);
  CHECK(stop.code != 0);
  CHECK(stop.out.find("2 optimizer steps in a row had a non-finite gradient norm") != std::string::npos);
  // Step 2 skipped its update, so its checkpoint holds step 1's weights; step 3 stopped the run.
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(d / "nan_stop" / "checkpoints")) ckpts.push_back(e.path().filename());
  std::sort(ckpts.begin(), ckpts.end());
  REQUIRE(ckpts == std::vector<std::string>({"step-000001", "step-000002"}));
  const fs::path c = d / "nan_stop" / "checkpoints";
  CHECK(r1::read_file(c / "step-000001" / "model.safetensors") ==
        r1::read_file(c / "step-000002" / "model.safetensors"));
}

TEST_CASE("resume with a different number of ranks: two ranks save, one rank continues") {
  fs::path d = setup_dir();
  const std::string cfg = (d / "run.toml").string();
  REQUIRE(sh(r1_exe() + " train " + cfg + " --quiet --run-dir " + (d / "one").string()).code == 0);
  Run killed =
      sh("R1_TEST_CRASH=after_step:2 " + r1_exe() + " launch --nproc 2 --master-port 29735 --grace 30 -- train " + cfg +
         " --quiet --set train.save_every=1 --run-dir " + (d / "two").string());
  CHECK(killed.code != 0);
  Run resumed = sh(r1_exe() + " train --quiet --resume " + (d / "two").string());
  CAPTURE(resumed.out);
  REQUIRE(resumed.code == 0);
  const double worst = max_weight_gap(d / "one" / "model", d / "two" / "model");
  MESSAGE("1 rank vs (2 ranks, then resumed on 1): max weight difference " << worst);
  CHECK(worst <= 1e-6);
  CHECK(r1::read_file(d / "two" / "metrics.jsonl").find("\"step\":3") !=
        std::string::npos);  // the resumed run finished
}
