# The sandbox and the "code" checker: isolation, limits and reaping; HumanEval canonical solutions
# (from ../shared, skipped when missing) and their `pass` bodies; adversarial programs.
if(TARGET r1_sandbox)
  r1_add_test(test_sandbox SOURCES test_sandbox.cpp LIBS r1_reward_backend)
  set_tests_properties(test_sandbox PROPERTIES TIMEOUT 300)
endif()
