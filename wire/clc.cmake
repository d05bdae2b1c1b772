# CLC (Connection Layer Control) codec: Proposal/Accept/Confirm/Decline,
# the TCP frame decoder, its tests and fuzzers. Included by wire/CMakeLists.txt.
add_library(usmc_wire_clc STATIC
  ${CMAKE_CURRENT_LIST_DIR}/clc.cc
  ${CMAKE_CURRENT_LIST_DIR}/clc_proposal.cc
  ${CMAKE_CURRENT_LIST_DIR}/clc_accept.cc
  ${CMAKE_CURRENT_LIST_DIR}/clc_frame.cc
  ${CMAKE_CURRENT_LIST_DIR}/clc_describe.cc)
target_link_libraries(usmc_wire_clc PUBLIC usmc_wire_common)

usmc_test(wire_clc_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/clc_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_reject_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_property_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_frame_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_frame_peek_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_kernel_test.cc
  LIBS usmc_wire_clc)

# Seeds: fuzz/corpus/clc_decode_fuzz/, fuzz/corpus/clc_frame_fuzz/.
usmc_fuzzer(clc_decode_fuzz ${CMAKE_SOURCE_DIR}/fuzz/clc_decode_fuzz.cc
            usmc_wire_clc)
usmc_fuzzer(clc_frame_fuzz ${CMAKE_SOURCE_DIR}/fuzz/clc_frame_fuzz.cc
            usmc_wire_clc)
