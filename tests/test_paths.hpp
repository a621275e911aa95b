// Paths tests use: the source tree, the build tree, and ../shared (R1_SHARED_DIR overrides it).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace r1::test {

inline std::filesystem::path source_dir() { return R1_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return R1_BINARY_DIR; }
inline std::filesystem::path fixtures() { return source_dir() / "tests" / "fixtures"; }
inline std::filesystem::path shared_dir() {
  if (const char* s = std::getenv("R1_SHARED_DIR")) return s;
  return source_dir() / ".." / "shared";
}
// A shared file, or empty when it is missing (the test then skips with a message).
inline std::filesystem::path shared_file(const std::string& rel) {
  auto p = shared_dir() / rel;
  return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

}  // namespace r1::test
