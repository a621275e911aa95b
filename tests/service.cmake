# The reward service and its client over loopback: concurrency, malformed/oversize input, slow
# clients, timeouts, deadlines, graceful shutdown, restart with retries, backend parity.
if(TARGET r1_reward_service)
  r1_add_test(test_service SOURCES test_service.cpp LIBS r1_reward_backend)
  set_tests_properties(test_service PROPERTIES TIMEOUT 300)
endif()
# Soak: `r1 rewards serve` under R1_SOAK_SECONDS (default 120) of mixed traffic from 64 connections.
r1_add_test(test_soak SOURCES test_soak.cpp)
add_dependencies(test_soak r1)
set_tests_properties(test_soak PROPERTIES TIMEOUT 400)
