#include "dev/gid_choice.h"

#include <algorithm>

namespace usmc::dev::rdma {

bool IsIpv4Mapped(const Gid& g) {
  return std::all_of(g.begin(), g.begin() + 10,
                     [](uint8_t b) { return b == 0; }) &&
         g[10] == 0xff && g[11] == 0xff;
}

bool IsLinkLocal(const Gid& g) { return g[0] == 0xfe && (g[1] & 0xc0) == 0x80; }

bool SamePrefix(const Gid& a, const Gid& b, int bits) {
  bits = std::clamp(bits, 0, 128);
  const int whole = bits / 8;
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

namespace {

// How well entry `e` fits `want`: 2 exact, 1 same subnet on its netdev
// (or any IPv4-mapped GID when want is zero), 0 not at all.
int Fit(const GidEntry& e, const Gid& want, std::span<const IfAddr> addrs) {
  if (!e.roce_v2 || !e.port_active) return 0;
  const bool want_v4 = IsIpv4Mapped(want);
  if (want == Gid{}) return IsIpv4Mapped(e.gid) ? 1 : 0;
  // An IPv4 connection never gets an IPv6 GID, nor the reverse: the peer
  // reaches the GID over the same family as the TCP connection.
  if (IsIpv4Mapped(e.gid) != want_v4) return 0;
  if (e.gid == want) return 2;
  if (!want_v4 && IsLinkLocal(e.gid) != IsLinkLocal(want)) return 0;
  for (const IfAddr& a : addrs) {
    // The GID is an address of its own netdev, whose prefix holds `want`.
    if (a.ifindex == e.ifindex && a.addr == e.gid &&
        SamePrefix(e.gid, want, a.prefix_len)) {
      return 1;
    }
  }
  return 0;
}

}  // namespace

std::optional<size_t> ChooseGid(std::span<const GidEntry> table,
                                const Gid& want,
                                std::span<const IfAddr> addrs) {
  std::optional<size_t> best;
  int best_fit = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    const int fit = Fit(table[i], want, addrs);
    if (fit > best_fit) {
      best_fit = fit;
      best = i;
    }
  }
  return best;
}

}  // namespace usmc::dev::rdma
