// Tests that drive the r1 program: running a shell command (exit code, combined output, wall
// time) and writing a small training run on the tiny fixture model.
#pragma once
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_paths.hpp"

namespace r1::test {

struct ProcessResult {
  int code = -1;  // exit status; -1 when killed by a signal
  std::string out;
  double seconds = 0;
};

inline ProcessResult run_shell(const std::string& cmd) {
  ProcessResult r;
  const auto t0 = std::chrono::steady_clock::now();
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

inline std::string r1_exe() { return (binary_dir() / "r1").string(); }

// Makes `dir` afresh with data.jsonl (40 "What is i + 2?" records) and run.toml: the tiny fixture
// model, 8-token completions, a length reward, then `extra` ([rollout], more [[rewards.checkers]],
// [grpo], [train], ... as the test needs). Returns the path of run.toml.
inline std::string write_tiny_run(const std::filesystem::path& dir, const std::string& extra) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / "data.jsonl");
  for (int i = 0; i < 40; ++i) f << "{\"question\": \"What is " << i << " + 2?\", \"answer\": \"" << i + 2 << "\"}\n";
  std::ofstream c(dir / "run.toml");
  c << "[run]\nseed = 3\n[model]\npath = \"" << (source_dir() / "models" / "tiny").string()
    << "\"\nthreads = 1\n[data]\npath = \"" << (dir / "data.jsonl").string()
    << "\"\nprompt_template = \"Q: {question} A:\"\n[sampling]\nmax_new_tokens = 8\n"
       "[[rewards.checkers]]\nchecker = \"length\"\nlength.max_length = 24\nlength.cache_length = 16\n"
       "length.unit = \"chars\"\n"
    << extra;
  return (dir / "run.toml").string();
}

}  // namespace r1::test
