# tests/lab.cmake: programs the QEMU lab (tests/lab/README.md,
# scripts/lab.sh) carries into its guests. Built with everything else, run
# only in the lab: nothing here is a CTest test.
add_executable(smc_lab lab/smc_lab.cc)
