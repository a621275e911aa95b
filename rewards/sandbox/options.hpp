// The typed options of rewards/sandbox/: [sandbox] (the runner) and the "code" checker's
// code.* table. No dependencies, so rewards/options.hpp and run configs can include them.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_fields.hpp"

namespace r1::sandbox {

struct SandboxOptions {
#define R1_SANDBOX_FIELDS(F)                                                                              \
  F(std::string, bwrap, "/usr/bin/bwrap", "the bubblewrap program", !x.empty())                           \
  F(std::string, python, "/usr/bin/python3",                                                              \
    "the interpreter run inside the sandbox (a host path "                                                \
    "under one of ro_binds)",                                                                             \
    !x.empty())                                                                                           \
  F(std::vector<std::string>, python_args, (std::vector<std::string>{"-I", "-S", "-B"}),                  \
    "interpreter flags: isolated mode, no site-packages, no .pyc writes", true)                           \
  F(std::vector<std::string>, ro_binds, (std::vector<std::string>{"/usr/bin", "/usr/lib", "/usr/lib64"}), \
    "host folders visible read-only inside (missing ones are skipped); nothing else of the host is "      \
    "visible",                                                                                            \
    true)                                                                                                 \
  F(int64_t, parallelism, 0, "sandboxes running at once (0 = hardware threads)", x >= 0 && x <= 1024)     \
  F(int64_t, wall_timeout_ms, 10000, "default wall-clock limit of one run", x >= 10)                      \
  F(int64_t, cpu_seconds, 10, "default CPU-time limit of one run (RLIMIT_CPU)", x >= 1)                   \
  F(int64_t, memory_mb, 1024, "default address-space limit per process (RLIMIT_AS)", x >= 64)             \
  F(int64_t, file_size_mb, 16, "largest file a run may write (RLIMIT_FSIZE)", x >= 1)                     \
  F(int64_t, tmp_size_mb, 64, "size of the private /tmp tmpfs", x >= 1)                                   \
  F(int64_t, max_processes, 32, "processes per run, bwrap's own included (RLIMIT_NPROC)", x >= 4)         \
  F(int64_t, max_open_files, 64, "open files per process (RLIMIT_NOFILE)", x >= 16)                       \
  F(int64_t, output_limit_kb, 1024, "stdout and stderr cap per run; past it the run is killed", x >= 1)   \
  F(int64_t, uid_base, 0,                                                                                 \
    "as root: slot i runs as host uid/gid uid_base + i. 0: each process takes a free range of 1024 uids " \
    "from 620000 on, held by a lock file under lock_dir while it runs, so concurrent r1 processes never " \
    "share a uid (the process limit is per uid); a value >= 1000 sets the range by hand",                 \
    x == 0 || x >= 1000)                                                                                  \
  F(std::string, lock_dir, "/run/r1-sandbox", "folder of the uid-range lock files (uid_base = 0)", !x.empty())
  R1_CONFIG(SandboxOptions, R1_SANDBOX_FIELDS)
};

enum class CodeExtract { automatic, fenced, raw };
constexpr std::array<const char*, 3> enum_names(CodeExtract) { return {"auto", "fenced", "raw"}; }
enum class PrependPrompt { automatic, always, never };
constexpr std::array<const char*, 3> enum_names(PrependPrompt) { return {"auto", "always", "never"}; }
enum class OutputCompare { exact, whitespace, floating };
constexpr std::array<const char*, 3> enum_names(OutputCompare) { return {"exact", "whitespace", "float"}; }
enum class CodeScore { fraction, all };
constexpr std::array<const char*, 2> enum_names(CodeScore) { return {"fraction", "all"}; }

struct CodeOptions {
#define R1_CODE_FIELDS(F)                                                                                       \
  F(CodeExtract, extract, CodeExtract::automatic,                                                               \
    "where the code is: auto (the last ```python fenced block if any, else the whole completion), "             \
    "fenced (a fenced block is required) or raw (the whole completion)",                                        \
    true)                                                                                                       \
  F(PrependPrompt, prepend_prompt, PrependPrompt::automatic,                                                    \
    "assert tests: put the reference prompt before the code: auto (when the code does not define "              \
    "the entry point, as in HumanEval continuations), always or never",                                         \
    true)                                                                                                       \
  F(OutputCompare, compare, OutputCompare::whitespace,                                                          \
    "stdin/stdout tests: exact (after normalising line ends and trailing newlines), whitespace "                \
    "(the same whitespace-separated tokens) or float (tokens equal or numbers within float_tolerance)",         \
    true)                                                                                                       \
  F(double, float_tolerance, 1e-6, "absolute and relative tolerance of compare = \"float\"", x >= 0)            \
  F(CodeScore, score, CodeScore::fraction, "fraction: share of tests passed; all: 1 only when all pass", true)  \
  F(int64_t, timeout_ms, 6000, "wall-clock limit of one sandbox run (all asserts, or one stdin case)", x >= 10) \
  F(int64_t, cpu_seconds, 5, "CPU-time limit of one sandbox run", x >= 1)                                       \
  F(int64_t, memory_mb, 1024, "address-space limit per process", x >= 64)                                       \
  F(int64_t, max_cases, 64, "stdin/stdout cases run at most (the first ones)", x >= 1)                          \
  F(bool, stop_on_timeout, true,                                                                                \
    "stdin/stdout: after a case times out, count the rest as failed "                                           \
    "without running them",                                                                                     \
    true)                                                                                                       \
  F(std::string, prompt_field, "prompt",                                                                        \
    "reference field with the code prompt (else the sample's "                                                  \
    "prompt)",                                                                                                  \
    !x.empty())                                                                                                 \
  F(std::string, test_field, "test", "reference field with assert-based test code", !x.empty())                 \
  F(std::string, entry_point_field, "entry_point", "reference field with the function under test", !x.empty())  \
  F(std::vector<std::string>, io_fields, (std::vector<std::string>{"tests", "input_output"}),                   \
    "reference fields tried, in order, for stdin/stdout cases", true)
  R1_CONFIG(CodeOptions, R1_CODE_FIELDS)
  bool operator==(const CodeOptions&) const = default;
};

}  // namespace r1::sandbox
