// The "code" reward checker: a Python solution run in the sandbox against the sample's tests.
//
// Two test styles, chosen by the sample's reference fields:
//   - assert-based (HumanEval, MBPP): `test` holds test code, `entry_point` the function name
//     (HumanEval's `def check(candidate)`; without a check function, top-level asserts).
//   - stdin/stdout: `tests` or `input_output` holds {"inputs": [...], "outputs": [...]} or
//     [{"input": ..., "output": ...}, ...], as an object or as a JSON text (APPS, CodeContests).
//     Each case is its own sandbox run; the output is compared on the host.
// Score = fraction of tests passed (or all-or-nothing, see `score`); parts: pass_rate and
// all_passed. The reason starts with the verdict: passed, wrong_answer, runtime_error, timeout,
// memory_limit or sandbox_error.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config_fields.hpp"
#include "rewards/checker.hpp"
#include "rewards/sandbox/sandbox.hpp"

namespace r1::rewards {
class Registry;
}

namespace r1::sandbox {

struct CodeOptions {
#define R1_CODE_FIELDS(F)                                                                             \
  F(std::string, extract, "auto",                                                                     \
    "where the code is: auto (the last ```python fenced block if any, else the whole completion), "   \
    "fenced (a fenced block is required) or raw (the whole completion)",                              \
    x == "auto" || x == "fenced" || x == "raw")                                                       \
  F(std::string, prepend_prompt, "auto",                                                              \
    "assert tests: put the reference prompt before the code: auto (when the code does not define "    \
    "the entry point, as in HumanEval continuations), always or never",                               \
    x == "auto" || x == "always" || x == "never")                                                     \
  F(std::string, compare, "whitespace",                                                               \
    "stdin/stdout tests: exact (after normalising line ends and trailing newlines), whitespace "      \
    "(the same whitespace-separated tokens) or float (tokens equal or numbers within float_tolerance)", \
    x == "exact" || x == "whitespace" || x == "float")                                                \
  F(double, float_tolerance, 1e-6, "absolute and relative tolerance of compare = \"float\"", x >= 0) \
  F(std::string, score, "fraction", "fraction: share of tests passed; all: 1 only when all pass",    \
    x == "fraction" || x == "all")                                                                    \
  F(int64_t, timeout_ms, 6000, "wall-clock limit of one sandbox run (all asserts, or one stdin case)", \
    x >= 10)                                                                                           \
  F(int64_t, cpu_seconds, 5, "CPU-time limit of one sandbox run", x >= 1)                            \
  F(int64_t, memory_mb, 1024, "address-space limit per process", x >= 64)                           \
  F(int64_t, max_cases, 64, "stdin/stdout cases run at most (the first ones)", x >= 1)              \
  F(bool, stop_on_timeout, true, "stdin/stdout: after a case times out, count the rest as failed "    \
    "without running them", true)                                                                     \
  F(bool, plain_values, true,                                                                         \
    "assert tests: the entry point must return plain built-in values (int, str, list, dict, ...), "  \
    "so an object whose __eq__ always says True cannot pass", true)                                 \
  F(std::string, prompt_field, "prompt", "reference field with the code prompt (else the sample's "   \
    "prompt)", !x.empty())                                                                            \
  F(std::string, test_field, "test", "reference field with assert-based test code", !x.empty())     \
  F(std::string, entry_point_field, "entry_point", "reference field with the function under test",  \
    !x.empty())                                                                                       \
  F(std::vector<std::string>, io_fields, (std::vector<std::string>{"tests", "input_output"}),                                 \
    "reference fields tried, in order, for stdin/stdout cases", true)
  R1_CONFIG(CodeOptions, R1_CODE_FIELDS)
};

enum class Verdict { passed, wrong_answer, runtime_error, timeout, memory_limit, sandbox_error };
const char* verdict_name(Verdict v);
constexpr int kVerdictCount = 6;

struct CodeResult {
  Verdict verdict = Verdict::sandbox_error;
  int tests = 0, passed = 0;
  std::string detail;  // the first failure, or why nothing ran
  double pass_rate() const { return tests > 0 ? static_cast<double>(passed) / tests : 0.0; }
};

// A stdin/stdout case.
struct IoCase {
  std::string input, output;
};

// Compares program output with the expected output in mode exact, whitespace or float.
bool outputs_match(std::string_view got, std::string_view want, const std::string& mode, double tol);

// The code to run: per `extract`, the last ```python (or ```py / ```) fenced block, or the text.
// Empty when `extract` is "fenced" and there is none.
std::string extract_code(const std::string& completion, const std::string& extract);

// Runs `code` against assert-based `test` code (HumanEval/MBPP). `entry_point` may be empty
// for MBPP-style top-level asserts.
CodeResult run_assert_tests(Sandbox& sb, const std::string& code, const std::string& test,
                            const std::string& entry_point, const CodeOptions& o,
                            int64_t wall_ms_cap = 0);
// Runs `code` as a program once per case, feeding the input and comparing stdout on the host.
CodeResult run_io_tests(Sandbox& sb, const std::string& code, const std::vector<IoCase>& cases,
                        const CodeOptions& o, int64_t wall_ms_cap = 0);

// Verdict counters shared by all code checkers of a process (the service exports them).
struct VerdictCounts {
  uint64_t n[kVerdictCount] = {};
};
VerdictCounts verdict_counts();

// The checker. Thread-safe; all instances may share one Sandbox (its slots bound parallelism).
rewards::CheckerPtr make_code_checker(std::shared_ptr<Sandbox> sandbox, CodeOptions o);

// Reads CodeOptions from a JSON object text (a [[rewards.checkers]] entry's `options`), with
// the same checks and did-you-mean as TOML; "" gives the defaults.
CodeOptions code_options_from_json(const std::string& json_text, const std::string& where);

// Registers the checker kind "code" in `registry`: each [[rewards.checkers]] entry with
// checker = "code" gets its CodeOptions from the entry's `options` JSON text, and all entries run
// in `sandbox` (created with default SandboxOptions on first use when null).
void register_code_checker(rewards::Registry& registry, std::shared_ptr<Sandbox> sandbox = nullptr);

// The process-wide sandbox register_code_checker uses when given none.
std::shared_ptr<Sandbox> default_sandbox();

}  // namespace r1::sandbox

namespace r1::rewards {
// The one-line hook for whoever builds a Registry: registry gets the "code" checker.
inline void register_code_checker(Registry& registry, std::shared_ptr<sandbox::Sandbox> sb = nullptr) {
  sandbox::register_code_checker(registry, std::move(sb));
}
}  // namespace r1::rewards
