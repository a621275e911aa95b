#include "common/install.hpp"

#include <cstdlib>

#include "common/error.hpp"

namespace fs = std::filesystem;

namespace r1 {

fs::path program_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  R1_CHECK(!ec, "cannot read /proc/self/exe: {}", ec.message());
  return exe.parent_path();
}

fs::path share_dir() {
  if (const char* s = std::getenv("R1_SHARE_DIR")) {
    R1_CHECK(fs::is_directory(s), "R1_SHARE_DIR={} is not a folder", s);
    return s;
  }
  const fs::path dir = program_dir();
  for (const fs::path& p : {dir / "share" / "r1", dir.parent_path() / "share" / "r1"})
    if (fs::is_directory(p)) return p;
  fail(
      "r1's shared files (the demo config, the tiny models) are in neither {} nor {}: run r1 from its build "
      "folder or its install prefix (cmake --install), or set R1_SHARE_DIR",
      (dir / "share" / "r1").string(), (dir.parent_path() / "share" / "r1").string());
}

}  // namespace r1
