# SMC-R's device seam (dev/rdma.h) and SimRdma, the in-process RDMA fabric
# for tests (dev/sim_rdma.h); dev/verbs will join usmc_dev_rdma. See
# ../docs/dev-rdma.md.
add_library(usmc_dev_rdma STATIC rdma.cc)
target_link_libraries(usmc_dev_rdma PUBLIC usmc_base)

add_library(usmc_dev_sim_rdma STATIC sim_rdma.cc)
target_link_libraries(usmc_dev_sim_rdma PUBLIC usmc_dev_rdma)

usmc_test(dev_sim_rdma_test SOURCES sim_rdma_test.cc LIBS usmc_dev_sim_rdma)

usmc_fuzzer(sim_rdma_fuzz ${CMAKE_SOURCE_DIR}/fuzz/sim_rdma_fuzz.cc
            usmc_dev_sim_rdma)
