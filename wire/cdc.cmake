# CDC messages (SMC-R SEND and SMC-D DMB area) and RMBE cursor arithmetic.
add_library(usmc_wire_cdc STATIC cdc.cc)
target_link_libraries(usmc_wire_cdc PUBLIC usmc_wire_common)
usmc_test(wire_cdc_test SOURCES cdc_test.cc cdc_cursor_test.cc
          LIBS usmc_wire_cdc)
usmc_fuzzer(cdc_fuzz ${CMAKE_SOURCE_DIR}/fuzz/cdc_fuzz.cc usmc_wire_cdc)
