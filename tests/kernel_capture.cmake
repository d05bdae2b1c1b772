# Golden vectors: LLC and CDC messages captured from Linux SMC-Rv2
# (tests/data/kernel/llc_*.bin, cdc_*.bin), decoded and re-encoded by usmc.
usmc_test(kernel_llc_cdc_test SOURCES kernel_llc_cdc_test.cc
          LIBS usmc_wire_llc usmc_wire_cdc)
target_compile_definitions(kernel_llc_cdc_test PRIVATE
  USMC_SOURCE_DIR_FALLBACK="${CMAKE_SOURCE_DIR}")
