# tests/preload.cmake: the interposer's semantics tests (issue 5), black-box
# through LD_PRELOAD. They need root (a private cgroup with the eBPF
# negotiation program attached) and skip with a message otherwise.
#   preload_probe         the program run under LD_PRELOAD (one scenario per
#                         subcommand, plain socket API, _FORTIFY_SOURCE on;
#                         preload_probe*.cc)
#   preload_probe_static  a static program for the failed exec handover
#   preload_test          the gtest driver
if(NOT USMC_NEGOTIATE_BPF)
  message(STATUS "preload tests: not built (the eBPF negotiation program is "
          "not built, so no connection could become SMC)")
  return()
endif()
if(NOT TARGET usmc_negotiate_harness)
  message(STATUS "preload tests: not built (tests/negotiate.cmake did not "
          "define usmc_negotiate_harness)")
  return()
endif()

find_package(Threads REQUIRED)

add_executable(preload_probe preload_probe.cc preload_probe_data.cc
               preload_probe_events.cc preload_probe_close.cc
               preload_probe_wake.cc preload_probe_early_epoll.cc
               preload_probe_exec.cc preload_probe_pass.cc
               preload_probe_clc.cc preload_probe_calls.cc
               preload_probe_passthru.cc)
# preload_probe_calls.cc counts usmc's calls of these: they must be in the
# dynamic symbol table to come before libc's.
target_link_options(preload_probe PRIVATE
                    -Wl,--export-dynamic-symbol=getpeername
                    -Wl,--export-dynamic-symbol=getpid
                    -Wl,--export-dynamic-symbol=getsockopt)
# Fortified glibc calls (__read_chk, __recv_chk, __poll_chk...) are part of
# what the interposer must catch.
target_compile_options(preload_probe PRIVATE -O2 -U_FORTIFY_SOURCE
                       -D_FORTIFY_SOURCE=2)
target_link_libraries(preload_probe PRIVATE usmc_negotiate Threads::Threads)

# Static: the loader never loads usmc into it. No sanitizers (they cannot
# link statically).
add_executable(preload_probe_static preload_probe_static.cc)
set_property(TARGET preload_probe_static PROPERTY COMPILE_OPTIONS
             -Wall -Wextra -Werror)
set_property(TARGET preload_probe_static PROPERTY LINK_OPTIONS -static)

add_executable(preload_test preload_test.cc)
target_link_libraries(preload_test PRIVATE usmc_test_proc usmc_negotiate_harness
                      nlohmann_json::nlohmann_json GTest::gtest
                      GTest::gtest_main)
target_compile_definitions(preload_test PRIVATE
  USMC_PRELOAD_LIB="$<TARGET_FILE:usmc_preload>"
  USMC_PROBE="$<TARGET_FILE:preload_probe>"
  USMC_PROBE_STATIC_BIN="$<TARGET_FILE:preload_probe_static>")
add_dependencies(preload_test usmc_preload preload_probe preload_probe_static)
gtest_discover_tests(preload_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
                     TIMEOUT 90)
