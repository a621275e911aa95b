// What every fuzz target shares: a finding is an abort with a message (libFuzzer saves the input),
// and inputs split into named parts at the first newline.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace r1::fuzz {

// A property the target checks does not hold: print it and abort (libFuzzer reports a crash).
[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "r1 fuzz finding: %s\n", what);
  std::abort();
}

// "first\nrest" -> {"first", "rest"}; without a newline the whole input is `rest`.
inline std::pair<std::string_view, std::string_view> split_line(std::string_view in) {
  const size_t nl = in.find('\n');
  if (nl == std::string_view::npos) return {{}, in};
  return {in.substr(0, nl), in.substr(nl + 1)};
}

}  // namespace r1::fuzz
