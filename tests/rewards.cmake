# Reward checkers: unit tests per checker, the Math-Verify corpus and agreement fixtures, the
# deadline/watchdog, plugins (.so, isolated, command) and JSONL scoring.
r1_add_test(test_rewards
  SOURCES test_rewards.cpp test_rewards_math.cpp test_rewards_plugins.cpp
  LIBS r1_reward_backend)
if(TARGET custom_reward)
  add_dependencies(test_rewards custom_reward custom_reward_v99 r1-plugin-host)
  target_compile_definitions(test_rewards PRIVATE
    R1_CUSTOM_REWARD_PLUGIN="$<TARGET_FILE:custom_reward>"
    R1_CUSTOM_REWARD_PLUGIN_V99="$<TARGET_FILE:custom_reward_v99>")
  # The example plugin on its own: one sample through r1-plugin-host (the loader r1 uses).
  add_test(NAME custom_reward_plugin
    COMMAND sh -c "echo '{\"id\":1,\"completion\":\"therefore 4\",\"reference\":{},\"metadata\":{},\"options\":{}}' | $<TARGET_FILE:r1-plugin-host> $<TARGET_FILE:custom_reward> | grep -q '\"score\":1'")
endif()
