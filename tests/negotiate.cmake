# tests/negotiate.cmake: the negotiation tests that need root (load eBPF,
# ip netns, tshark on lo). They skip with a message when not root.
if(NOT USMC_NEGOTIATE_BPF)
  return()
endif()

add_library(usmc_negotiate_harness STATIC negotiate_harness.cc)
target_link_libraries(usmc_negotiate_harness PUBLIC usmc_negotiate
                      GTest::gtest)
# Child processes with captured output, for the black-box drivers.
add_library(usmc_test_proc STATIC proc_util.cc)
target_link_libraries(usmc_test_proc PUBLIC usmc_negotiate_harness)

# Handshake tests attach only to a private child cgroup; the lock keeps them
# from capturing on lo at the same time as each other.
add_executable(negotiate_handshake_test negotiate_handshake_test.cc)
target_link_libraries(negotiate_handshake_test PRIVATE usmc_negotiate_harness
                      GTest::gtest GTest::gtest_main)
gtest_discover_tests(negotiate_handshake_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
                     RESOURCE_LOCK usmc_negotiate TIMEOUT 300)

# `usmc setup` tests attach to the cgroup2 root (every process on the host):
# they run alone.
add_executable(negotiate_setup_test negotiate_setup_test.cc)
target_link_libraries(negotiate_setup_test PRIVATE usmc_negotiate_harness
                      GTest::gtest GTest::gtest_main)
target_compile_definitions(negotiate_setup_test PRIVATE
                           USMC_BIN="$<TARGET_FILE:usmc>")
add_dependencies(negotiate_setup_test usmc)
gtest_discover_tests(negotiate_setup_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
                     RUN_SERIAL TRUE RESOURCE_LOCK usmc_negotiate TIMEOUT 300)
