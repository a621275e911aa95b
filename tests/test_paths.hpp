// Paths tests use: the source tree, the build tree, and ../shared (R1_SHARED_DIR overrides it),
// the decorator that skips a test case whose ../shared fixture is missing, a fresh scratch
// folder, and the message of what a call throws.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

namespace r1::test {

inline std::filesystem::path source_dir() { return R1_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return R1_BINARY_DIR; }
inline std::filesystem::path fixtures() { return source_dir() / "tests" / "fixtures"; }
// build/tests/scratch/NAME, emptied and created.
inline std::filesystem::path scratch(const std::string& name) {
  std::filesystem::path p = binary_dir() / "tests" / "scratch" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}
// What `f` throws (its what()), or "" when it returns.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
inline std::filesystem::path shared_dir() {
  if (const char* s = std::getenv("R1_SHARED_DIR")) return s;
  return source_dir() / ".." / "shared";
}
// A file under ../shared. A test case that reads one carries needs_shared(rel), so it is skipped,
// visibly, where the file is missing.
inline std::filesystem::path shared_file(const std::string& rel) { return shared_dir() / rel; }

// Test cases skipped for a missing fixture: test case name -> the missing path.
inline std::map<std::string, std::string>& missing_fixtures() {
  static std::map<std::string, std::string> m;
  return m;
}

// The exit code of a suite that skipped test cases (ctest's SKIP_RETURN_CODE; doctest_main.cpp).
constexpr int kSkipExitCode = 77;

// TEST_CASE("name" * r1::test::needs_shared("data/gsm8k/test.jsonl")): skipped when the file is
// missing, and reported as skipped by the suite (or as a failure in CI).
struct needs_shared {
  std::string rel;
  explicit needs_shared(std::string r) : rel(std::move(r)) {}
  void fill(doctest::detail::TestCase& tc) const {
    const auto p = shared_dir() / rel;
    if (std::filesystem::exists(p)) return;
    tc.m_skip = true;
    missing_fixtures()[tc.m_name] = p.string();
  }
  void fill(doctest::detail::TestSuite&) const {}
};

}  // namespace r1::test
