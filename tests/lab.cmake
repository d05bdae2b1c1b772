# tests/lab.cmake: programs the QEMU lab (tests/lab/README.md,
# scripts/lab.sh) carries into its guests. Built with everything else, run
# only in the lab: nothing here is a CTest test.
add_executable(smc_lab lab/smc_lab.cc)
if(USMC_VERBS)
  add_executable(verbs_pair lab/verbs_pair.cc)
  target_link_libraries(verbs_pair PRIVATE usmc_dev_verbs)
endif()
if(USMC_VERBS)
  # usmc's SMC-R runtime against the kernel's SMC-R (scenarios usmc-kernel-*).
  add_executable(smcr_peer lab/smcr_peer.cc)
  target_link_libraries(smcr_peer PRIVATE usmc_runtime_exec usmc_dev_verbs
                        usmc_negotiate)
endif()
