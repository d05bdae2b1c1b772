// tests/kernel_fixtures.h: the kernel's own frames (tests/data/kernel, cut
// from the SMC-Rv2 capture of Linux 6.12 over rdma_rxe), for tests that
// compare usmc's bytes with the kernel's. The source root comes from
// USMC_SOURCE_DIR, else the build's USMC_SOURCE_DIR_FALLBACK definition.
//
//   std::vector<std::byte> f112 = usmc::testing::KernelFixture("f112_....bin");
#ifndef USMC_TESTS_KERNEL_FIXTURES_H_
#define USMC_TESTS_KERNEL_FIXTURES_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace usmc::testing {

inline std::filesystem::path KernelDataDir() {
  const char* env = std::getenv("USMC_SOURCE_DIR");
  std::filesystem::path root =
      env != nullptr ? std::filesystem::path(env)
                     : std::filesystem::path(USMC_SOURCE_DIR_FALLBACK);
  return root / "tests" / "data" / "kernel";
}

// A whole file's bytes; a missing file is a test failure (and no bytes).
inline std::vector<std::byte> ReadFileBytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << p;
  std::vector<char> raw((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
  std::vector<std::byte> out(raw.size());
  std::transform(raw.begin(), raw.end(), out.begin(),
                 [](char c) { return std::byte(static_cast<uint8_t>(c)); });
  return out;
}

inline std::vector<std::byte> KernelFixture(const std::string& name) {
  return ReadFileBytes(KernelDataDir() / name);
}

}  // namespace usmc::testing

#endif  // USMC_TESTS_KERNEL_FIXTURES_H_
