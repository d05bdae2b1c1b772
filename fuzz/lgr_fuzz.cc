// fuzz/lgr_fuzz.cc: the SMC-R link group machine (engine/lgr.h) fed an
// arbitrary sequence of events: raw LLC bytes, well-formed LLC messages
// with fuzzed fields, timer expiries at fuzzed times and owner requests.
// Checks: the declared transition table holds; every message it sends is a
// 44-byte V2 LLC message; nothing is sent after LgrEnded; tokens stay
// nonzero and unique within max_conns; after a Timeout the next deadline lies
// in the future.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <span>
#include <variant>
#include <vector>

#include "engine/lgr.h"
#include "fuzz/fuzz_input.h"

using namespace usmc::engine;
namespace wire = usmc::wire;

namespace {

using usmc::fuzz::Input;

// A well-formed V2 message of a fuzzed type with fuzzed fields.
std::vector<std::byte> MakeLlc(Input& in) {
  const uint8_t kind = in.U8() % 7;
  const uint8_t flags = in.U8();
  wire::LlcMessage m;
  switch (kind) {
    case 0: {
      wire::LlcConfirmLink x;
      x.no_rmbe_eyecatcher = flags & 1;
      x.link_num = in.U8();
      x.link_uid = in.U32();
      m = x;
      break;
    }
    case 1: {
      wire::LlcAddLink x;
      x.has_v2_ext = flags & 1;
      x.num_rkeys = in.U8() % 4;
      x.link_num = in.U8();
      m = x;
      break;
    }
    case 2: {
      wire::LlcDeleteLink x;
      x.all = flags & 1;
      x.orderly = flags & 2;
      x.link_num = in.U8() % 3;
      x.reason = in.U32();
      m = x;
      break;
    }
    case 3: {
      wire::LlcReqAddLink x;
      x.gid_cnt = in.U8() % 3;
      m = x;
      break;
    }
    case 4: {
      wire::LlcConfirmRkey x;
      x.num_other_rtokens = in.U8() % 8;
      x.negative = flags & 1;
      x.rtokens[0].rkey = in.U8();
      x.rtokens[0].vaddr = in.U8();
      m = x;
      break;
    }
    case 5: {
      wire::LlcTestLink x;
      x.user_data[0] = in.U8();
      m = x;
      break;
    }
    default: {
      wire::LlcDeleteRkey x;
      x.num_rkeys = in.U8() % 16;
      for (size_t i = 0; i < x.num_rkeys; ++i) x.rkeys[i] = in.U8();
      x.negative = flags & 1;
      m = x;
      break;
    }
  }
  std::visit(
      [&](auto& x) {
        x.hdr.v2 = (flags & 0x40) == 0;
        x.hdr.response = flags & 0x80;
      },
      m);
  std::vector<std::byte> out(wire::LlcEncodedLength(m));
  if (!wire::EncodeLlc(m, out).ok()) out.clear();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t setup = in.U8();
  LgrParams p;
  p.role = (setup & 1) ? Role::kServer : Role::kClient;
  p.local_qpn = 0x11;
  p.max_conns = uint8_t(16 + (setup >> 4));
  if (setup & 2) p.testlink_time = Duration::zero();
  if (setup & 4) p.idle_time = Duration::zero();
  SeededEntropy entropy(size);
  Lgr lgr(p, &entropy);
  TimePoint now{};
  bool ended = false;

  for (int step = 0; step < 256 && !in.empty(); ++step) {
    now += std::chrono::milliseconds(uint32_t(in.U8()) * 64);
    const uint8_t op = in.U8() % 12;
    LgrEvent ev = LgrTimeout{};
    std::vector<std::byte> buf;
    switch (op) {
      case 0:
        ev = LgrQpReady{};
        break;
      case 1: {
        std::span<const std::byte> raw = in.Take(in.U8());
        buf.assign(raw.begin(), raw.end());
        break;
      }
      case 2:
        buf = MakeLlc(in);
        break;
      case 3:
        ev = LgrRxActivity{};
        break;
      case 4:
        ev = LgrTimeout{};
        break;
      case 5:
        ev = LgrConnOpen{};
        break;
      case 6:
        ev = LgrConnClosed{in.U8()};
        break;
      case 7:
        ev = LgrAddPeerRtoken{in.U8(), in.U8()};
        break;
      case 8:
        ev = LgrConfirmRkey{in.U8(), in.U8()};
        break;
      case 9:
        ev = LgrDeleteRkey{in.U8()};
        break;
      case 10:
        ev = LgrLinkFailed{};
        break;
      default:
        ev = LgrTerminate{bool(in.U8() & 1), in.U32()};
        break;
    }
    if (op == 1 || op == 2) ev = LgrLlcReceived{buf};
    const LgrState from = lgr.state();
    LgrActions acts = lgr.OnEvent(ev, now);
    FUZZ_CHECK(Allowed(LgrTransitions(), from, KindOf(ev), lgr.state()));
    bool ended_now = false;
    for (const LgrAction& a : acts) {
      if (const auto* s = std::get_if<LgrSendLlc>(&a)) {
        FUZZ_CHECK(!ended && !ended_now);
        auto m = wire::DecodeLlc(s->bytes);
        // A DELETE_RKEY answer keeps the peer's count in 44 bytes.
        FUZZ_CHECK(m.ok() ||
                   (s->type == wire::LlcType::kDeleteRkey && s->response));
        if (m.ok())
          FUZZ_CHECK(wire::HeaderOf(*m).v2 && wire::HeaderOf(*m).length == 44);
      } else if (const auto* t = std::get_if<LgrArmTimer>(&a)) {
        // Other events may come late (the owner's timer had not fired
        // yet); after a Timeout nothing due is left.
        if (std::holds_alternative<LgrTimeout>(ev))
          FUZZ_CHECK(t->deadline > now);
      } else if (std::holds_alternative<LgrEnded>(a)) {
        FUZZ_CHECK(!ended && !ended_now);
        ended_now = true;
      } else if (const auto* c = std::get_if<LgrConnAdded>(&a)) {
        FUZZ_CHECK(c->token != 0);
      }
    }
    ended = ended || ended_now;
    FUZZ_CHECK(ended == (lgr.state() == LgrState::kEnded));
    const LgrData& d = lgr.data();
    FUZZ_CHECK(d.num_tokens <= p.max_conns);
    std::set<uint32_t> toks(d.tokens.begin(), d.tokens.begin() + d.num_tokens);
    FUZZ_CHECK(toks.size() == d.num_tokens && !toks.count(0));
    size_t used = 0;
    for (const auto& r : d.rtokens) used += r.used;
    FUZZ_CHECK(used == d.num_rtokens && d.queue_len <= kLgrLocalQueue);
  }
  return 0;
}
