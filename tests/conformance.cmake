# tests/conformance.cmake: the socket conformance suite (tests/conformance/).
# Like the preload tests it needs the eBPF negotiation program and root.
if(NOT USMC_NEGOTIATE_BPF OR NOT TARGET usmc_negotiate_harness)
  message(STATUS "conformance tests: not built (no eBPF negotiation program)")
  return()
endif()
add_subdirectory(conformance)
