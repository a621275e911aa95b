#include "common/error.hpp"

namespace r1 {

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return 2;
  return 1;
}

}  // namespace r1
