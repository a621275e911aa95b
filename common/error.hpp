// r1 errors: what failed, where (file, key, tensor) and how to fix it. The library throws; the
// boundaries (the r1 program, the HTTP service) turn an error into an exit code or a status.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace r1 {

// Any error with a message fit for a user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad configuration or command-line input: nothing was started. Exit code 2.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A run that a guard rule stopped cleanly: its final checkpoint is written, and the message names
// the rule and the values. Exit code 3.
class GuardStop : public Error {
 public:
  using Error::Error;
};

template <class... A>
[[noreturn]] void fail(fmt::format_string<A...> f, A&&... a) {
  throw Error(fmt::format(f, std::forward<A>(a)...));
}

// Exit code for an exception caught at the program boundary: 2 for usage/config, 3 for a guard's
// stop, 1 otherwise.
int exit_code_for(const std::exception& e);

}  // namespace r1

// R1_CHECK(cond, "fmt", args...): throws r1::Error with the formatted message when cond is false.
#define R1_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::r1::fail(__VA_ARGS__); \
  } while (0)
