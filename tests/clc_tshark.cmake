# CLC interoperability with an independent decoder: usmc-encoded CLC messages
# sent over real loopback TCP, captured and decoded by tshark (Wireshark's
# smc dissector). Skips without tshark or without root (capture rights).
usmc_test(clc_tshark_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/clc_tshark_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/clc_capture.cc
  LIBS usmc_wire_clc nlohmann_json::nlohmann_json)
