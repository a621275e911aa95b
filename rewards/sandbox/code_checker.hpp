// The "code" reward checker: a Python solution run in the sandbox against the sample's tests. Its
// options (CodeOptions, the entry's code.* table) are declared in rewards/sandbox/options.hpp.
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

#include "rewards/checker.hpp"
#include "rewards/sandbox/sandbox.hpp"

namespace r1::sandbox {

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
bool outputs_match(std::string_view got, std::string_view want, OutputCompare mode, double tol);

// The code to run: per `extract`, the last ```python (or ```py / ```) fenced block, or the text.
// Empty when `extract` is fenced and there is none.
std::string extract_code(const std::string& completion, CodeExtract extract);

// Runs `code` against assert-based `test` code (HumanEval/MBPP). `entry_point` may be empty
// for MBPP-style top-level asserts.
CodeResult run_assert_tests(Sandbox& sb, const std::string& code, const std::string& test,
                            const std::string& entry_point, const CodeOptions& o, int64_t wall_ms_cap = 0);
// Runs `code` as a program once per case, feeding the input and comparing stdout on the host.
CodeResult run_io_tests(Sandbox& sb, const std::string& code, const std::vector<IoCase>& cases, const CodeOptions& o,
                        int64_t wall_ms_cap = 0);

// Verdict counters shared by all code checkers of a process (the service exports them).
struct VerdictCounts {
  uint64_t n[kVerdictCount] = {};
};
VerdictCounts verdict_counts();

// The checker. Thread-safe; all instances may share one Sandbox (its slots bound parallelism).
rewards::CheckerPtr make_code_checker(std::shared_ptr<Sandbox> sandbox, CodeOptions o);

}  // namespace r1::sandbox
