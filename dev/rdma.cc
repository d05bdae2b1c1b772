#include "dev/rdma.h"

#include <cstdio>

#include "dev/gid_choice.h"

namespace usmc::dev::rdma {

Gid GidFromIpv4(uint32_t ipv4_host_order) {
  Gid g{};
  g[10] = 0xff;
  g[11] = 0xff;
  g[12] = static_cast<uint8_t>(ipv4_host_order >> 24);
  g[13] = static_cast<uint8_t>(ipv4_host_order >> 16);
  g[14] = static_cast<uint8_t>(ipv4_host_order >> 8);
  g[15] = static_cast<uint8_t>(ipv4_host_order);
  return g;
}

std::string ToString(const Gid& gid) {
  char buf[48];
  if (IsIpv4Mapped(gid)) {
    std::snprintf(buf, sizeof buf, "::ffff:%u.%u.%u.%u", gid[12], gid[13],
                  gid[14], gid[15]);
    return buf;
  }
  std::string s;
  for (int i = 0; i < 16; i += 2) {
    std::snprintf(buf, sizeof buf, "%s%02x%02x", i ? ":" : "", gid[i],
                  gid[i + 1]);
    s += buf;
  }
  return s;
}

uint32_t MtuBytes(Mtu m) {
  switch (m) {
    case Mtu::k256:
      return 256;
    case Mtu::k512:
      return 512;
    case Mtu::k1024:
      return 1024;
    case Mtu::k2048:
      return 2048;
    case Mtu::k4096:
      return 4096;
  }
  return 0;
}

std::string_view ToString(QpState s) {
  switch (s) {
    case QpState::kReset:
      return "RESET";
    case QpState::kInit:
      return "INIT";
    case QpState::kRtr:
      return "RTR";
    case QpState::kRts:
      return "RTS";
    case QpState::kError:
      return "ERR";
  }
  return "?";
}

std::string_view ToString(WcStatus s) {
  switch (s) {
    case WcStatus::kSuccess:
      return "SUCCESS";
    case WcStatus::kLocLenErr:
      return "LOC_LEN_ERR";
    case WcStatus::kLocQpOpErr:
      return "LOC_QP_OP_ERR";
    case WcStatus::kLocProtErr:
      return "LOC_PROT_ERR";
    case WcStatus::kWrFlushErr:
      return "WR_FLUSH_ERR";
    case WcStatus::kRemInvReqErr:
      return "REM_INV_REQ_ERR";
    case WcStatus::kRemAccessErr:
      return "REM_ACCESS_ERR";
    case WcStatus::kRemOpErr:
      return "REM_OP_ERR";
    case WcStatus::kRetryExcErr:
      return "RETRY_EXC_ERR";
    case WcStatus::kRnrRetryExcErr:
      return "RNR_RETRY_EXC_ERR";
    case WcStatus::kGeneralErr:
      return "GENERAL_ERR";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, WcStatus s) {
  return os << ToString(s);
}

int32_t PsnDiff(uint32_t a, uint32_t b) {
  // Shift the 24-bit difference into the top of a 32-bit word and back:
  // the sign then says which PSN is ahead, modulo 2^24.
  return static_cast<int32_t>((a - b) << 8) >> 8;
}

uint64_t AckTimeoutNs(uint8_t timeout) {
  if (timeout == 0 || timeout > 31) return 0;
  return 4096ull << timeout;  // 4.096 us = 4096 ns
}

uint64_t RnrTimerNs(uint8_t encoded) {
  // IBA table "Encoding of RNR NAK timer field", in units of 0.01 ms.
  static constexpr uint32_t kCentiUs[32] = {
      65536, 1,    2,    3,    4,    6,     8,     12,    16,    24,   32,
      48,    64,   96,   128,  192,  256,   384,   512,   768,   1024, 1536,
      2048,  3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152};
  return static_cast<uint64_t>(kCentiUs[encoded & 31]) * 10000;
}

}  // namespace usmc::dev::rdma
