# tests/status_cli.cmake: `usmc ss` and `usmc stats` read what a process
# published (runtime/publish.h); their JSON validates against
# docs/status-schema.json.
add_executable(status_cli_test status_cli_test.cc)
target_link_libraries(status_cli_test PRIVATE usmc_runtime
                      nlohmann_json::nlohmann_json fmt::fmt GTest::gtest
                      GTest::gtest_main)
target_compile_definitions(status_cli_test PRIVATE
                           USMC_BIN="$<TARGET_FILE:usmc>")
add_dependencies(status_cli_test usmc)
gtest_discover_tests(status_cli_test DISCOVERY_TIMEOUT 60
                     PROPERTIES ENVIRONMENT "USMC_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

# A static program: `usmc run` must say it cannot interpose it.
add_executable(static_hello static_hello.c)
set_property(TARGET static_hello PROPERTY COMPILE_OPTIONS -Wall -Wextra -Werror)
set_property(TARGET static_hello PROPERTY LINK_OPTIONS -static)
target_compile_definitions(status_cli_test PRIVATE
                           USMC_STATIC_HELLO="$<TARGET_FILE:static_hello>")
add_dependencies(status_cli_test static_hello)
