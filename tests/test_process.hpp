// Running a shell command from a test: exit code, combined stdout+stderr, and wall time.
#pragma once
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

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

}  // namespace r1::test
