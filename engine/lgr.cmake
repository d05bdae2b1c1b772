# The SMC-R link group machine (engine/lgr.h): its own library, test and
# fuzzer, so it builds alone while the rest of engine/ changes.
add_library(usmc_engine_lgr STATIC lgr.cc)
target_link_libraries(usmc_engine_lgr PUBLIC usmc_wire)
usmc_test(lgr_test SOURCES lgr_test.cc LIBS usmc_engine_lgr)
target_compile_definitions(lgr_test PRIVATE
  USMC_SOURCE_DIR_FALLBACK="${CMAKE_SOURCE_DIR}")
usmc_fuzzer(lgr_fuzz ${CMAKE_SOURCE_DIR}/fuzz/lgr_fuzz.cc usmc_engine_lgr)
