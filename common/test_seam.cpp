#include "common/test_seam.hpp"

#include <csignal>
#include <cstdlib>
#include <string>

namespace r1::test_seam {

void crash_point(Point point, int64_t step, int64_t rank) {
  const char* spec = std::getenv("R1_TEST_CRASH");
  if (!spec) return;
  const std::string s = spec;
  const std::string name = point == Point::after_step ? "after_step:" : "in_save:";
  if (s.rfind(name, 0) != 0) return;
  const size_t at = s.find('@');
  const int64_t n = std::atoll(s.substr(name.size(), at - name.size()).c_str());
  const bool rank_ok = at == std::string::npos || std::atoll(s.c_str() + at + 1) == rank;
  if (n == step && rank_ok) std::raise(SIGKILL);
}

}  // namespace r1::test_seam
