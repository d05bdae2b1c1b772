# tests/status_e2e.cmake: `usmc ss`, `usmc stats` and `usmc chk` against real
# processes under `usmc run` (issue 6). Root only, like the preload tests:
# each test joins a private cgroup with the negotiation program attached.
#   status_peer       echo server / client whose bytes the test knows
#   status_e2e_test   the gtest driver
if(NOT USMC_NEGOTIATE_BPF OR NOT TARGET usmc_negotiate_harness)
  message(STATUS "status e2e tests: not built (no eBPF negotiation program)")
  return()
endif()

find_package(Threads REQUIRED)

add_executable(status_peer status_peer.cc)
target_link_libraries(status_peer PRIVATE Threads::Threads)

add_executable(status_e2e_test status_e2e_test.cc)
target_link_libraries(status_e2e_test PRIVATE usmc_negotiate_harness
                      nlohmann_json::nlohmann_json GTest::gtest
                      GTest::gtest_main)
target_compile_definitions(status_e2e_test PRIVATE
  USMC_BIN="$<TARGET_FILE:usmc>"
  USMC_PRELOAD_LIB="$<TARGET_FILE:usmc_preload>"
  USMC_STATUS_PEER="$<TARGET_FILE:status_peer>")
add_dependencies(status_e2e_test usmc usmc_preload status_peer)
gtest_discover_tests(status_e2e_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
                     TIMEOUT 120)
