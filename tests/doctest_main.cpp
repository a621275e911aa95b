// The doctest main of every suite. A test case that needs a fixture that is missing is skipped
// visibly: its decorator (r1::test::needs_shared, test_paths.hpp) marks it skipped and names the
// file; when the run skipped any such case and nothing failed, the suite prints what was skipped
// and exits 77, which ctest reports as "Skipped" (SKIP_RETURN_CODE, tests/CMakeLists.txt). In CI
// (the environment sets CI) a missing fixture fails the suite instead: CI has every fixture.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_paths.hpp"

namespace {

// doctest's filter matching for -tc/-tce: comma-separated patterns with * and ?, case-insensitive.
bool wildcard(const char* p, const char* s) {
  if (*p == '\0') return *s == '\0';
  if (*p == '*') return wildcard(p + 1, s) || (*s && wildcard(p, s + 1));
  if (*s && (*p == '?' || std::tolower(static_cast<unsigned char>(*p)) == std::tolower(static_cast<unsigned char>(*s))))
    return wildcard(p + 1, s + 1);
  return false;
}

bool any_matches(const std::string& patterns, const char* name) {
  size_t b = 0;
  while (b <= patterns.size()) {
    size_t e = patterns.find(',', b);
    if (e == std::string::npos) e = patterns.size();
    if (wildcard(patterns.substr(b, e - b).c_str(), name)) return true;
    b = e + 1;
  }
  return false;
}

struct Filters {
  std::string include, exclude;  // -tc / -tce
  bool selects(const char* name) const {
    return (include.empty() || any_matches(include, name)) && (exclude.empty() || !any_matches(exclude, name));
  }
};
Filters g_filters;
std::vector<std::string> g_skipped;  // "test case: missing path"

struct FixtureSkips : doctest::IReporter {
  explicit FixtureSkips(const doctest::ContextOptions&) {}
  void test_case_skipped(const doctest::TestCaseData& tc) override {
    const auto& missing = r1::test::missing_fixtures();
    auto it = missing.find(tc.m_name);
    if (it != missing.end() && g_filters.selects(tc.m_name))
      g_skipped.push_back(std::string(tc.m_name) + ": " + it->second);
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
};
REGISTER_LISTENER("fixture-skips", 1, FixtureSkips);

void read_filters(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    for (const char* p : {"-tc=", "--test-case=", "-dt-tc=", "--dt-test-case="})
      if (a.rfind(p, 0) == 0) g_filters.include = a.substr(std::strlen(p));
    for (const char* p : {"-tce=", "--test-case-exclude=", "-dt-tce=", "--dt-test-case-exclude="})
      if (a.rfind(p, 0) == 0) g_filters.exclude = a.substr(std::strlen(p));
  }
}

}  // namespace

int main(int argc, char** argv) {
  read_filters(argc, argv);
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit() || rc != 0) return rc;
  if (g_skipped.empty()) return 0;
  const bool ci = std::getenv("CI") != nullptr;
  std::fprintf(stderr, "[r1] %s %zu test case(s) for missing fixtures:\n",
               ci ? "FAILED: CI has every fixture, but skipped" : "SKIPPED", g_skipped.size());
  for (const auto& s : g_skipped) std::fprintf(stderr, "[r1]   %s\n", s.c_str());
  return ci ? 1 : r1::test::kSkipExitCode;
}
