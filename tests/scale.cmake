# tests/scale.cmake: 10,000 concurrent SMC-D connections between two
# processes (issue 21), black-box through LD_PRELOAD like preload.cmake.
# Label "scale" (`ctest -L scale`); a few minutes on a 2-core machine.
#   scale_probe   the server (one epoll loop) and the client, under usmc
#   scale_test    the gtest driver: SMC-D on every connection, fds per
#                 connection, setup cost of the last 1,000 vs the first
if(NOT USMC_NEGOTIATE_BPF OR NOT TARGET usmc_negotiate_harness)
  message(STATUS "scale test: not built (needs the eBPF negotiation program)")
  return()
endif()

add_executable(scale_probe scale_probe.cc)
target_compile_options(scale_probe PRIVATE -O2)

add_executable(scale_test scale_test.cc)
target_link_libraries(scale_test PRIVATE usmc_test_proc usmc_negotiate_harness
                      nlohmann_json::nlohmann_json GTest::gtest
                      GTest::gtest_main)
target_compile_definitions(scale_test PRIVATE
  USMC_PRELOAD_LIB="$<TARGET_FILE:usmc_preload>"
  USMC_SCALE_PROBE="$<TARGET_FILE:scale_probe>")
add_dependencies(scale_test usmc_preload scale_probe)
gtest_discover_tests(scale_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
                                LABELS scale TIMEOUT 600)
