# LLC messages (SMC-R link layer control, V1 and V2).
add_library(usmc_wire_llc STATIC llc.cc llc_encode.cc llc_describe.cc)
target_link_libraries(usmc_wire_llc PUBLIC usmc_wire_common)
usmc_test(wire_llc_test SOURCES llc_test.cc llc_reject_test.cc llc_property_test.cc
          LIBS usmc_wire_llc)
usmc_fuzzer(llc_fuzz ${CMAKE_SOURCE_DIR}/fuzz/llc_fuzz.cc usmc_wire_llc)
