# The reward service and its client over loopback: concurrency, malformed/oversize input, slow
# clients, timeouts, deadlines, graceful shutdown, restart with retries, backend parity.
if(TARGET r1_reward_service)
  r1_add_test(test_service SOURCES test_service.cpp LIBS r1_reward_backend)
  set_tests_properties(test_service PROPERTIES TIMEOUT 300)
endif()
