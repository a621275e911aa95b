#include "common/error.hpp"

namespace r1 {

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return 2;
  if (dynamic_cast<const GuardStop*>(&e)) return 3;
  return 1;
}

}  // namespace r1
