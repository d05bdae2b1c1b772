// LLC round-trip properties over random valid messages (seeded, so every run
// checks the same messages): encode -> decode gives the same struct, and
// encoding is a fixed point (encode(decode(encode(m))) == encode(m)).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "wire/llc.h"

namespace usmc::wire {
namespace {

class RandomLlc {
 public:
  explicit RandomLlc(uint64_t seed) : rng_(seed) {}

  LlcMessage Next() {
    switch (rng_() % 9) {
      case 0:
        return ConfirmLink();
      case 1:
        return AddLink();
      case 2:
        return AddLinkCont();
      case 3:
        return DeleteLink();
      case 4:
        return ReqAddLink();
      case 5:
        return ConfirmRkey();
      case 6:
        return ConfirmRkeyCont();
      case 7:
        return TestLink();
      default:
        return DeleteRkey();
    }
  }

 private:
  uint64_t U(uint64_t n) { return rng_() % n; }
  bool B() { return rng_() & 1; }
  template <size_t N>
  std::array<uint8_t, N> Bytes() {
    std::array<uint8_t, N> a;
    for (auto& x : a) x = static_cast<uint8_t>(rng_());
    return a;
  }
  LlcHeader Hdr(bool v2) { return LlcHeader{v2, B(), 0}; }
  LlcRkeyPair Pair() {
    return {static_cast<uint32_t>(rng_()), static_cast<uint32_t>(rng_()),
            rng_()};
  }
  LlcRtoken Rtoken() {
    return {static_cast<uint8_t>(rng_()), static_cast<uint32_t>(rng_()),
            rng_()};
  }
  // Small counts most of the time, the maximum now and then.
  size_t Count(size_t max) {
    return U(4) == 0 ? max : U(std::min<size_t>(max, 20) + 1);
  }

  LlcConfirmLink ConfirmLink() {
    LlcConfirmLink m;
    m.hdr = Hdr(B());
    m.no_rmbe_eyecatcher = B();
    m.sender_mac = Bytes<6>();
    m.sender_gid = Bytes<16>();
    m.sender_qpn = static_cast<uint32_t>(U(1u << 24));
    m.link_num = static_cast<uint8_t>(rng_());
    m.link_uid = static_cast<uint32_t>(rng_());
    m.max_links = static_cast<uint8_t>(rng_());
    m.max_conns = static_cast<uint8_t>(rng_());
    return m;
  }
  LlcAddLink AddLink() {
    LlcAddLink m;
    m.hdr = Hdr(B());
    m.rejected = B();
    m.reject_reason = static_cast<uint8_t>(U(16));
    m.sender_mac = Bytes<6>();
    m.sender_gid = Bytes<16>();
    m.sender_qpn = static_cast<uint32_t>(U(1u << 24));
    m.link_num = static_cast<uint8_t>(rng_());
    m.qp_mtu = static_cast<uint8_t>(U(16));
    m.initial_psn = static_cast<uint32_t>(U(1u << 24));
    if (m.hdr.v2 && B()) {
      m.has_v2_ext = true;
      m.v2_direct = B();
      m.client_target_gid = Bytes<16>();
      m.num_rkeys = static_cast<uint16_t>(Count(kLlcMaxRkeysV2));
      for (size_t i = 0; i < m.num_rkeys; ++i) m.rkeys[i] = Pair();
    }
    return m;
  }
  LlcAddLinkCont AddLinkCont() {
    LlcAddLinkCont m;
    m.hdr = Hdr(false);
    m.link_num = static_cast<uint8_t>(rng_());
    m.num_rkeys = static_cast<uint8_t>(rng_());
    m.rkeys = {Pair(), Pair()};
    return m;
  }
  LlcDeleteLink DeleteLink() {
    LlcDeleteLink m;
    m.hdr = Hdr(B());
    m.all = B();
    m.orderly = B();
    m.link_num = static_cast<uint8_t>(rng_());
    m.reason = static_cast<uint32_t>(rng_());
    return m;
  }
  LlcReqAddLink ReqAddLink() {
    LlcReqAddLink m;
    m.hdr = Hdr(true);
    m.rejected = B();
    m.reject_reason = static_cast<uint8_t>(U(16));
    m.gid_cnt = static_cast<uint8_t>(Count(kLlcMaxGids));
    for (size_t i = 0; i < m.gid_cnt; ++i) m.gids[i] = Bytes<16>();
    return m;
  }
  LlcConfirmRkey ConfirmRkey() {
    LlcConfirmRkey m;
    m.hdr = Hdr(B());
    m.negative = B();
    m.retry = B();
    m.num_other_rtokens = static_cast<uint8_t>(U(kLlcMaxOtherLinks + 1));
    m.rtokens = {Rtoken(), Rtoken(), Rtoken()};
    m.rtokens[0].link_id = 0;  // that byte carries the count
    return m;
  }
  LlcConfirmRkeyCont ConfirmRkeyCont() {
    LlcConfirmRkeyCont m;
    m.hdr = Hdr(false);
    m.negative = B();
    m.retry = B();
    m.num_rkeys = static_cast<uint8_t>(U(kLlcMaxOtherLinks + 1));
    m.rtokens = {Rtoken(), Rtoken(), Rtoken()};
    return m;
  }
  LlcTestLink TestLink() {
    LlcTestLink m;
    m.hdr = Hdr(B());
    m.user_data = Bytes<16>();
    return m;
  }
  LlcDeleteRkey DeleteRkey() {
    LlcDeleteRkey m;
    m.hdr = Hdr(B());
    m.negative = B();
    m.num_rkeys = static_cast<uint8_t>(
        Count(m.hdr.v2 ? kLlcMaxRkeysV2 : kLlcDeleteRkeyMaxV1));
    if (m.hdr.v2) {
      m.num_inval_rkeys = static_cast<uint8_t>(U(m.num_rkeys + 1u));
    } else {
      m.error_mask = static_cast<uint8_t>(rng_());
    }
    for (size_t i = 0; i < m.num_rkeys; ++i) {
      m.rkeys[i] = static_cast<uint32_t>(rng_());
    }
    return m;
  }

  std::mt19937_64 rng_;
};

// The decoded header records the wire length; everything else must match.
LlcMessage WithLength(LlcMessage m, size_t len) {
  std::visit([len](auto& msg) { msg.hdr.length = static_cast<uint16_t>(len); },
             m);
  return m;
}

TEST(LlcRoundTrip, RandomMessagesOfEveryType) {
  RandomLlc gen(0x11C);
  std::array<int, 10> seen{};
  std::vector<std::byte> buf(kLlcMaxLenV2);
  for (int i = 0; i < 20000; ++i) {
    const LlcMessage m = gen.Next();
    ++seen[static_cast<size_t>(TypeOf(m))];
    WireResult<size_t> n = EncodeLlc(m, buf);
    ASSERT_TRUE(n.ok()) << n.error() << "\n" << DescribeLlc(m);
    ASSERT_EQ(*n, LlcEncodedLength(m));
    const std::vector<std::byte> wire(buf.begin(), buf.begin() + *n);

    WireResult<LlcMessage> back = DecodeLlc(wire);
    ASSERT_TRUE(back.ok()) << back.error() << "\n" << DescribeLlc(m);
    ASSERT_EQ(*back, WithLength(m, *n)) << DescribeLlc(m) << "---\n"
                                        << DescribeLlc(*back);

    std::vector<std::byte> again(*n);
    ASSERT_TRUE(EncodeLlc(*back, again).ok());
    ASSERT_EQ(again, wire);
  }
  for (size_t t = 1; t <= 9; ++t) EXPECT_GT(seen[t], 1000) << t;
}

}  // namespace
}  // namespace usmc::wire
