# dev/sim: the in-process device for engine tests (docs/engine.md). Unlike
# shm, sim_pair drives engines, so it links usmc_engine; nothing but tests
# and fuzzers link it.
add_library(usmc_dev_sim STATIC ${CMAKE_CURRENT_LIST_DIR}/sim.cc
                                ${CMAKE_CURRENT_LIST_DIR}/sim_pair.cc)
target_link_libraries(usmc_dev_sim PUBLIC usmc_engine usmc_base)

usmc_test(dev_sim_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_test.cc
          LIBS usmc_dev_sim)
usmc_test(dev_sim_fallback_test
          SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_fallback_test.cc
          LIBS usmc_dev_sim)
# The hostile-peer fuzzer drives the engine through the sim.
usmc_fuzzer(engine_hostile_cdc_fuzz
            ${CMAKE_SOURCE_DIR}/fuzz/engine_hostile_cdc_fuzz.cc usmc_dev_sim)
usmc_test(dev_sim_alloc_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/sim_alloc_test.cc
          LIBS usmc_dev_sim)
