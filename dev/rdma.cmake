# SMC-R's device seam (dev/rdma.h) and its two implementations: SimRdma, the
# in-process RDMA fabric for tests (dev/sim_rdma.h), and dev/verbs on
# libibverbs (real devices: Soft-RoCE in the lab, tests/lab/). See
# ../docs/dev-rdma.md.
add_library(usmc_dev_rdma STATIC rdma.cc gid_choice.cc)
target_link_libraries(usmc_dev_rdma PUBLIC usmc_base)

add_library(usmc_dev_sim_rdma STATIC sim_rdma.cc)
target_link_libraries(usmc_dev_sim_rdma PUBLIC usmc_dev_rdma)

# RdmaContract: the rules every implementation keeps, one suite that each
# implementation's test instantiates (dev/rdma_contract_test.h).
add_library(usmc_dev_rdma_contract STATIC rdma_contract_test.cc)
target_link_libraries(usmc_dev_rdma_contract PUBLIC usmc_dev_sim_rdma
                      GTest::gtest)

# The GID choice over fake GID tables (dev/gid_choice.h).
usmc_test(dev_gid_choice_test SOURCES gid_choice_test.cc LIBS usmc_dev_rdma)

usmc_test(dev_sim_rdma_test SOURCES sim_rdma_test.cc
          LIBS usmc_dev_sim_rdma usmc_dev_rdma_contract)

usmc_fuzzer(sim_rdma_fuzz ${CMAKE_SOURCE_DIR}/fuzz/sim_rdma_fuzz.cc
            usmc_dev_sim_rdma)

# dev/verbs: the only code that includes <infiniband/verbs.h>.
option(USMC_VERBS "Build dev/verbs on libibverbs (SMC-R on RDMA devices)" ON)
if(USMC_VERBS)
  find_path(USMC_IBVERBS_INCLUDE infiniband/verbs.h REQUIRED)
  find_library(USMC_IBVERBS_LIB ibverbs REQUIRED)
  add_library(usmc_dev_verbs STATIC verbs.cc)
  target_include_directories(usmc_dev_verbs PRIVATE ${USMC_IBVERBS_INCLUDE})
  target_link_libraries(usmc_dev_verbs PUBLIC usmc_dev_rdma
                        PRIVATE ${USMC_IBVERBS_LIB})
  # Runs wherever an RDMA device exists (the lab: scripts/lab.sh verbs);
  # elsewhere every test skips, saying why.
  # libusmc-verbs.so: dev/verbs as a module that runtime/smcr_process.cc
  # dlopens only on a host with an RDMA device (so libusmc-preload.so adds
  # no library to a program). Built next to libusmc-preload.so.
  add_library(usmc_verbs_module MODULE verbs_module.cc)
  set_target_properties(usmc_verbs_module PROPERTIES OUTPUT_NAME usmc-verbs
                        PREFIX lib CXX_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/preload)
  target_link_libraries(usmc_verbs_module PRIVATE usmc_dev_verbs)
  usmc_test(dev_verbs_test SOURCES verbs_test.cc
            LIBS usmc_dev_verbs usmc_dev_rdma_contract)
endif()
