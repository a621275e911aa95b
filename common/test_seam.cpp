#include "common/test_seam.hpp"

#include <csignal>
#include <cstdlib>
#include <mutex>
#include <set>
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

bool fault_point(Fault fault, int64_t step, int64_t rank) {
  const char* spec = std::getenv("R1_TEST_FAULT");
  if (!spec) return false;
  const std::string s = spec, name = fault == Fault::nan_grad ? "nan_grad:" : "lr_spike:";
  if (s.rfind(name, 0) != 0) return false;
  const size_t plus = s.find('+'), at = s.find('@');
  const int64_t first = std::atoll(s.c_str() + name.size());
  const int64_t count = plus == std::string::npos ? 1 : std::atoll(s.c_str() + plus + 1);
  const bool rank_ok = at == std::string::npos || std::atoll(s.c_str() + at + 1) == rank;
  if (!rank_ok || step < first || step >= first + count) return false;
  if (fault == Fault::nan_grad) return true;
  static std::mutex mu;  // lr_spike is transient: a step run again (after a rollback) runs clean
  static std::set<int64_t> seen;
  std::lock_guard lock(mu);
  return seen.insert(step).second;
}

}  // namespace r1::test_seam
