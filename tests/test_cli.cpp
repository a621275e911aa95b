// The r1 program end to end: every subcommand has --help, config errors exit 2 with
// file:line:column before anything starts, `r1 config check` makes every check `r1 train` makes,
// scoring and eval build every checker (code included), docs/CONFIG.md is current, and greedy
// generation on the embedded default model is deterministic (temperature 0).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/statvfs.h>

#include <boost/json.hpp>

#include "attack_corpus.hpp"
#include "test_paths.hpp"
#include "test_process.hpp"

namespace {

using Result = r1::test::ProcessResult;

Result run_r1(const std::string& args) {
  return r1::test::run_shell((r1::test::binary_dir() / "r1").string() + " " + args);
}

std::string write_tmp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

int64_t free_bytes(const std::filesystem::path& p) {
  struct statvfs v {};
  REQUIRE(::statvfs(p.c_str(), &v) == 0);
  return static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
}

// Shared memory held on the host (tmpfs, shm, memfds: /proc/meminfo "Shmem"), what a run that left
// something behind would hold; process memory is covered by "no process of the sandbox's uids".
int64_t shmem_bytes() {
  std::ifstream f("/proc/meminfo");
  for (std::string k; f >> k;) {
    int64_t kb = 0;
    f >> kb;
    if (k == "Shmem:") return kb * 1024;
    f.ignore(1 << 10, '\n');
  }
  return -1;
}

}  // namespace

TEST_CASE("every subcommand has --help") {
  for (const char* sub :
       {"train", "generate", "eval", "export", "tokenize", "rewards", "curves", "samples", "config"}) {
    CAPTURE(sub);
    Result r = run_r1(std::string(sub) + " --help");
    CHECK(r.code == 0);
    CHECK(has(r.out, "Usage"));
  }
  CHECK(run_r1("").code == 2);  // a subcommand is required
  CHECK(run_r1("no-such-command").code == 2);
}

TEST_CASE("config check: valid file exits 0, errors exit 2 with location and did-you-mean") {
  Result ok = run_r1("config check " + (r1::test::source_dir() / "configs" / "demo.toml").string());
  CHECK(ok.code == 0);
  std::string bad = write_tmp("r1_bad.toml", "[model]\ndtyp = \"float32\"\n[run]\nseed = -1\n");
  Result r = run_r1("config check " + bad);
  CHECK(r.code == 2);
  CHECK(has(r.out, "r1_bad.toml:2:1: model.dtyp: unknown key (did you mean 'model.dtype'?)"));
  CHECK(has(r.out, "r1_bad.toml:4:8: run.seed: value -1 is out of range"));
  Result typed = run_r1("config check " + write_tmp("r1_type.toml", "[model]\nthreads = \"two\"\n"));
  CHECK(typed.code == 2);
  CHECK(has(typed.out, "model.threads: expected an integer, got a string"));
  CHECK(run_r1("config check /nonexistent.toml").code == 2);
  CHECK(run_r1("config check " + write_tmp("r1_syntax.toml", "[model\n")).code == 2);
}

TEST_CASE("config check runs every check r1 train runs; r1 train refuses the same config with exit 2, nothing made") {
  const std::string tiny = (r1::test::source_dir() / "models" / "tiny").string();
  const std::string data = (r1::test::source_dir() / "data" / "arith" / "heldout.jsonl").string();
  const std::string good =
      "[model]\npath = \"" + tiny + "\"\n[data]\npath = \"" + data + "\"\nprompt_template = \"Q: {question} A:\"\n";
  struct Bad {
    std::string toml, error;
  };
  const std::vector<Bad> bad = {
      {good + "[[rewards.checkers]]\nchecker = \"mathh\"\n", "unknown checker 'mathh' (did you mean 'math'?)"},
      {good + "[[rewards.checkers]]\nchecker = \"format\"\nmath.float_rounding = 6\n",  // a default value, still wrong
       "options for checker \"math\" given, but this entry's checker is 'format'"},
      {good + "[[rewards.checkers]]\nchecker = \"math\"\n[train]\naccuracy_part = \"format\"\n",
       "train.accuracy_part: 'format' is not a reward part"},
      {good + "[[rewards.checkers]]\nchecker = \"math\"\n[eval]\npath = \"/nonexistent/eval.jsonl\"\n",
       "eval.path: dataset /nonexistent/eval.jsonl: cannot open"},
      {"[model]\npath = \"/nonexistent/model\"\n[data]\npath = \"" + data +
           "\"\nprompt_template = \"{question}\"\n"
           "[[rewards.checkers]]\nchecker = \"math\"\n",
       "model.path: /nonexistent/model is not a folder"},
      {"[model]\npath = \"" + tiny + "\"\n[data]\npath = \"" + data +
           "\"\nprompt_template = \"{problem}\"\n"
           "[[rewards.checkers]]\nchecker = \"math\"\n",
       "prompt_template uses {problem} but the record has no field 'problem'"},
      {good + "[[rewards.checkers]]\nchecker = \"math\"\n[[rewards.plugins]]\nname = \"kw\"\nlibrary = "
              "\"/nonexistent/kw.so\"\n",
       "rewards.plugins[kw].library: /nonexistent/kw.so does not exist"},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    CAPTURE(bad[i].error);
    const std::string file = write_tmp("r1_check_" + std::to_string(i) + ".toml", bad[i].toml);
    Result check = run_r1("config check " + file);
    CHECK(check.code == 2);
    CHECK_MESSAGE(has(check.out, bad[i].error), check.out);
    const auto run_dir = std::filesystem::temp_directory_path() / ("r1_check_run_" + std::to_string(i));
    std::filesystem::remove_all(run_dir);
    Result train = run_r1("train " + file + " --quiet --run-dir " + run_dir.string());
    CHECK(train.code == 2);
    CHECK_MESSAGE(has(train.out, bad[i].error), train.out);
    CHECK_FALSE(std::filesystem::exists(run_dir));  // exit 2: nothing was started
  }
  Result ok =
      run_r1("config check " + write_tmp("r1_check_ok.toml", good + "[[rewards.checkers]]\nchecker = \"math\"\n"));
  CHECK_MESSAGE(ok.code == 0, ok.out);
}

TEST_CASE("rewards score and eval build their checkers in the one factory: code included, [sandbox] read") {
  const std::string cfg = write_tmp("r1_code_rewards.toml",
                                    "[sandbox]\nparallelism = 1\nwall_timeout_ms = 4000\n"
                                    "[rewards]\n[[rewards.checkers]]\nchecker = \"code\"\ncode.timeout_ms = 3000\n");
  const std::string in =
      write_tmp("r1_code_samples.jsonl",
                "{\"completion\": \"def add(a, b):\\n    return a + b\\n\", \"test\": \"def check(c):\\n"
                "    assert c(1, 2) == 3\\n\", \"entry_point\": \"add\"}\n");
  Result scored = run_r1("rewards score --config " + cfg + " -i " + in);
  CHECK_MESSAGE(scored.code == 0, scored.out);
  CHECK(has(scored.out, "\"score\":1"));
  CHECK(has(scored.out, "passed: 1/1 tests passed"));
  Result bad_sandbox = run_r1("rewards score --config " + cfg + " -i " + in + " --set sandbox.parallelismm=2");
  CHECK(bad_sandbox.code == 2);
  CHECK(has(bad_sandbox.out, "did you mean 'sandbox.parallelism'"));
  // r1 eval with the code checker on HumanEval-format records.
  const std::string code = (r1::test::fixtures() / "recipes" / "code.jsonl").string();
  Result eval = run_r1("eval --data " + code +
                       " --template '{prompt}' --reference-fields prompt,test,entry_point "
                       "--checker code --limit 2 --max-new-tokens 8");
  CHECK_MESSAGE(eval.code == 0, eval.out);
  CHECK(has(eval.out, "pass@1"));
  CHECK(has(eval.out, "(correct: code >= 1)"));
  CHECK(run_r1("eval --data " + code + " --checker code --accuracy-part math --limit 1").code == 2);
}

TEST_CASE("rewards score: every program of the adversarial corpus scores what it must, the host unchanged") {
  r1::test::HostCanaries host;
  const auto corpus = r1::test::attack_corpus(host.fill());
  REQUIRE(corpus.size() >= 70);
  std::string jsonl;
  for (const auto& a : corpus)
    jsonl += boost::json::serialize(
                 boost::json::object{{"completion", a.sample.completion}, {"reference", a.sample.reference}}) +
             "\n";
  const std::string in = write_tmp("r1_attacks.jsonl", jsonl);
  // Explicit uids outside the automatic ranges (sandbox.hpp), so that what is left can be told apart.
  const int64_t uid_base = 620000 + 256 * 1024 + (::getpid() % 64) * 16;
  const std::string cfg =
      write_tmp("r1_attacks.toml", "[sandbox]\nparallelism = 2\nuid_base = " + std::to_string(uid_base) +
                                       "\n[rewards]\nthreads = 2\n[[rewards.checkers]]\n"
                                       "checker = \"code\"\ncode.timeout_ms = 2000\n");
  const int64_t disk0 = free_bytes(std::filesystem::temp_directory_path()), shm0 = shmem_bytes();
  REQUIRE(shm0 >= 0);
  Result scored = run_r1("rewards score --config " + cfg + " -i " + in);
  REQUIRE_MESSAGE(scored.code == 0, scored.out.substr(0, 2000));
  std::vector<std::string> lines;
  for (size_t b = 0, e; (e = scored.out.find('\n', b)) != std::string::npos; b = e + 1)
    if (scored.out[b] == '{') lines.push_back(scored.out.substr(b, e - b));  // not the summary on stderr
  REQUIRE(lines.size() == corpus.size());
  int hostile = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    auto o = boost::json::parse(lines[i]).as_object();
    INFO(corpus[i].id << ": " << o.at("reason").as_string());
    CHECK(o.at("score").to_number<double>() == doctest::Approx(corpus[i].score));
    hostile += corpus[i].score < 1;
  }
  MESSAGE(corpus.size() << " samples (" << hostile << " hostile) through r1 rewards score in " << scored.seconds
                        << " s");
  std::vector<uint32_t> uids;
  for (int i = 0; i < 2; ++i) uids.push_back(static_cast<uint32_t>(uid_base + i));
  r1::test::require_no_processes_of(uids);
  host.check_untouched();
  CHECK(std::llabs(free_bytes(std::filesystem::temp_directory_path()) - disk0) < (64ll << 20));
  CHECK(shmem_bytes() - shm0 < (64ll << 20));
}

TEST_CASE("train with [rewards] endpoint: rewards and the eval both score through the remote service") {
  const std::string port = "18937";
  const auto dir = std::filesystem::temp_directory_path() / "r1_remote_train";
  std::filesystem::remove_all(dir);
  const std::string cfg = write_tmp(
      "r1_remote.toml", "[model]\npath = \"" + (r1::test::source_dir() / "models" / "tiny").string() +
                            "\"\nthreads = 1\n[data]\npath = \"" +
                            (r1::test::source_dir() / "data" / "arith" / "heldout.jsonl").string() +
                            "\"\nprompt_template = \"Q: {question} A:\"\n[sampling]\nmax_new_tokens = 8\n"
                            "[rollout]\ngroup_size = 2\nprompts_per_step = 2\nprompts_per_batch = 2\nmax_batch = 4\n"
                            "[rewards]\nendpoint = \"http://127.0.0.1:" +
                            port +
                            "\"\n"
                            "[[rewards.checkers]]\nchecker = \"math\"\n[[rewards.checkers]]\nchecker = \"format\"\n"
                            "[train]\nsteps = 1\n[eval]\npath = \"" +
                            (r1::test::source_dir() / "data" / "arith" / "heldout.jsonl").string() + "\"\nlimit = 2\n");
  const std::string exe = r1::test::r1_exe();
  const std::string serve = (r1::test::source_dir() / "configs" / "serve.toml").string();
  std::string script = "set -e; " + exe + " rewards serve --port " + port + " --config " + serve +
                       " 2>/dev/null & pid=$!; "
                       "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/" +
                       port + ") 2>/dev/null && break; sleep 0.1; done; " + exe + " train " + cfg +
                       " --quiet --run-dir " + (dir / "run").string() + "; echo train=$?; " + exe + " train " + cfg +
                       " --quiet --set 'rewards.checkers=[{checker=\"math\"}]' --run-dir " +
                       (dir / "mismatch").string() + " || echo mismatch=$?; kill -TERM $pid; wait $pid";
  Result r = r1::test::run_shell("bash " + write_tmp("r1_remote_train.sh", script));
  CAPTURE(r.out);
  CHECK(has(r.out, "train=0"));
  std::ifstream in(dir / "run" / "metrics.jsonl");
  std::string metrics((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(has(metrics, "\"eval/reward/math/mean\""));  // the eval scored through the service too
  CHECK(has(metrics, "\"reward/format/mean\""));
  CHECK(has(r.out, "mismatch=1"));  // the service's parts differ from the config's: a clear error
  CHECK(has(r.out, "scores the parts (format, math) but [[rewards.checkers]] names (math)"));
}

TEST_CASE("config show prints defaults and --set overrides; --set errors exit 2") {
  Result r = run_r1("config show --set model.dtype=bfloat16 --set run.seed=7");
  CHECK(r.code == 0);
  CHECK(has(r.out, "dtype = \"bfloat16\""));
  CHECK(has(r.out, "seed = 7"));
  CHECK(has(r.out, "# parameter and compute dtype"));
  Result e = run_r1("config show --set model.dtype=float64");
  CHECK(e.code == 2);
  CHECK(has(e.out, "--set model.dtype=float64"));
  CHECK(run_r1("config docs").out.find("| `seed` |") != std::string::npos);
}

TEST_CASE("docs/CONFIG.md is what r1 config docs prints (after its four-line header)") {
  std::ifstream in(r1::test::source_dir() / "docs" / "CONFIG.md");
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t body = 0;
  for (int i = 0; i < 4; ++i) body = doc.find('\n', body) + 1;
  CHECK_MESSAGE(doc.substr(body) == run_r1("config docs").out,
                "regenerate it: (head -4 docs/CONFIG.md; build/r1 config docs) > new && mv new docs/CONFIG.md");
}

TEST_CASE("curves and samples: draw a log, exit 2 on a wrong run directory or metric") {
  std::string log = write_tmp("r1_cli_metrics.jsonl", "{\"step\":1,\"kl\":0.5}\n{\"step\":2,\"kl\":0.25}\n");
  Result ok = run_r1("curves " + log + " --metric kl --width 30 --height 4");
  CHECK(ok.code == 0);
  CHECK(has(ok.out, "kl  last 0.25 at step 2"));
  Result unknown = run_r1("curves " + log + " --metric kk");
  CHECK(unknown.code == 2);
  CHECK(has(unknown.out, "unknown metric 'kk' (did you mean 'kl'?)"));
  Result missing = run_r1("curves /nonexistent/run");
  CHECK(missing.code == 2);
  CHECK(has(missing.out, "no such run directory"));
  Result samples = run_r1("samples /nonexistent/run --step 3 --best");
  CHECK(samples.code == 2);
  CHECK(run_r1("samples /nonexistent/run --best --worst").code == 2);  // exclusive flags
}

TEST_CASE("generate: greedy on the embedded default model, deterministic, JSON output") {
  Result a = run_r1("generate --prompt-ids 5,6,7 --max-new-tokens 8 --json --ignore-eos");
  REQUIRE(a.code == 0);
  CHECK(has(a.out, "\"prompt_ids\":[5,6,7]"));
  CHECK(has(a.out, "\"finish_reason\":\"length\""));
  Result b = run_r1("generate --prompt-ids 5,6,7 --max-new-tokens 8 --json --ignore-eos");
  auto ids = [](const std::string& s) {
    return s.substr(s.find("\"ids\""), s.find("]", s.find("\"ids\"")) - s.find("\"ids\""));
  };
  CHECK(ids(a.out) == ids(b.out));
  Result text = run_r1("generate --prompt \"Natalia sold 48 clips\" --max-new-tokens 4");
  CHECK(text.code == 0);
  CHECK(has(text.out, "Natalia sold 48 clips"));
}

TEST_CASE("export --merge-lora: a LoRA run's adapters become a checkpoint that generate loads; errors exit 2") {
  const auto dir = r1::test::binary_dir() / "tests" / "scratch" / "cli-lora";
  std::filesystem::remove_all(dir);
  Result t = run_r1(
      "train --set lora.rank=4 --set train.steps=2 --set train.lr=1e-2 --set 'eval.path=\"\"' --set run.out_dir=" +
      dir.string() + " --set run.name=run");
  REQUIRE(t.code == 0);
  CHECK(std::filesystem::exists(dir / "run" / "model" / "adapter_config.json"));
  Result e = run_r1("export --merge-lora " + (dir / "run").string() + " " + (dir / "merged").string());
  REQUIRE(e.code == 0);
  CHECK(std::filesystem::exists(dir / "merged" / "config.json"));
  CHECK(std::filesystem::exists(dir / "merged" / "tokenizer.json"));
  // The merged checkpoint and the adapter folder both load; each generates.
  for (const char* m : {"merged", "run/model"}) {
    CAPTURE(m);
    CHECK(run_r1("generate --model " + (dir / m).string() + " --prompt-ids 5,6,7 --max-new-tokens 4").code == 0);
  }
  Result plain = run_r1("export --merge-lora " + (r1::test::source_dir() / "models" / "tiny").string() + " " +
                        (dir / "x").string());
  CHECK(plain.code == 2);
  CHECK(has(plain.out, "adapter_config.json"));
  CHECK_FALSE(std::filesystem::exists(dir / "x"));
  CHECK(run_r1("export " + (dir / "run").string() + " " + (dir / "y").string()).code == 2);  // --merge-lora required
}

TEST_CASE("generate: bad input exits with a clear message") {
  CHECK(run_r1("generate --prompt-ids 1,x").code == 2);
  CHECK(run_r1("generate").code == 2);  // neither --prompt nor --prompt-ids
  CHECK(run_r1("generate --prompt-ids 1 --temperature -0.7").code == 2);
  CHECK(run_r1("generate --prompt-ids 1 --top-p 1.5").code == 2);
  Result missing = run_r1("generate --model /nonexistent --prompt-ids 1");
  CHECK(missing.code == 1);
  CHECK(has(missing.out, "/nonexistent"));
  Result oov = run_r1("generate --prompt-ids 100000");
  CHECK(oov.code == 1);
  CHECK(has(oov.out, "outside the vocabulary"));
}

TEST_CASE("eval: pass@k report, per-sample JSONL, progress" * r1::test::needs_shared("data/gsm8k/test.jsonl")) {
  auto gsm = r1::test::shared_file("data/gsm8k/test.jsonl");
  auto out = std::filesystem::temp_directory_path() / "r1_eval.jsonl";
  Result r = run_r1("eval --data " + gsm.string() + " --limit 3 --samples 2 --max-new-tokens 8 --out " + out.string());
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "pass@1"));
  CHECK(has(r.out, "pass@2"));
  CHECK(has(r.out, "maj@2"));
  CHECK(has(r.out, "3/3 prompts"));
  std::ifstream in(out);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    CHECK(has(line, "\"prompt_index\""));
    CHECK(has(line, "\"score\""));
  }
  CHECK(lines == 6);
  CHECK(run_r1("eval --data " + gsm.string() + " --checker nosuch --limit 1").code == 2);
}

TEST_CASE("rewards serve: the r1 program serves /healthz and /v1/score over loopback and stops on SIGTERM") {
  const std::string port = "18931";
  const std::string cfg = (r1::test::source_dir() / "configs" / "serve.toml").string();
  const std::string exe = (r1::test::binary_dir() / "r1").string();
  // bash's /dev/tcp speaks HTTP/1.1 without needing curl on the machine.
  std::string script = "set -e; " + exe + " rewards serve --port " + port + " --config " + cfg +
                       " 2>/dev/null & pid=$!; "
                       "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/" +
                       port +
                       ") 2>/dev/null && break; sleep 0.1; done; "
                       "req() { exec 3<>/dev/tcp/127.0.0.1/" +
                       port +
                       "; printf \"$1\" >&3; cat <&3; exec 3>&-; }; "
                       "req 'GET /healthz HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n'; echo; "
                       "body='{\"samples\":[{\"completion\":\"<think>a</think> "
                       "<answer>72</answer>\",\"reference\":{\"answer\":\"#### 72\"}}]}'; "
                       "req \"POST /v1/score HTTP/1.1\\r\\nHost: t\\r\\nContent-Type: "
                       "application/json\\r\\nContent-Length: ${#body}\\r\\n"
                       "Connection: close\\r\\n\\r\\n$body\"; echo; "
                       "kill -TERM $pid; wait $pid; echo exit=$?";
  std::string path = write_tmp("r1_serve_test.sh", script);
  std::string out = r1::test::run_shell("bash " + path).out;
  CHECK(has(out, "\"status\":\"ok\""));
  CHECK(has(out, "math: 72 (answer_tag)"));
  CHECK(has(out, "exit=0"));  // graceful shutdown
}
