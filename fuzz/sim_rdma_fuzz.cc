// fuzz/sim_rdma_fuzz.cc: SimRdma (dev/sim_rdma.h) driven by a hostile
// peer. The input is a program for the attacker's side of one RC
// connection: WRITEs with guessed keys, addresses and lengths, SENDs inline
// and not, its own QP reset and reconnected with made-up PSNs and QPNs,
// held or dropped paths, time, a killed QP or device. The victim behaves as
// usmc would: a receive ring it reposts, an RMB (LOCAL_WRITE|REMOTE_WRITE),
// a local-only send buffer, a second RMB it deregisters at some point.
// Checks after every operation: no crash or out-of-bounds access (ASan),
// the victim's memory outside what it exposes never changes (canaries, the
// local-only buffer, the deregistered RMB), completions carry known
// statuses, the fabric records no API misuse.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "dev/sim_rdma.h"
#include "fuzz/fuzz_input.h"

namespace {

using namespace usmc::dev::rdma;  // NOLINT: fuzz harness
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

using usmc::fuzz::Input;

uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

constexpr size_t kPage = 4096;
constexpr size_t kSlot = 48;
constexpr size_t kSlots = 8;
constexpr std::byte kCanary{0xc5};
constexpr std::byte kLocalOnly{0x3c};

// The victim's memory, one allocation, so a write that escapes an MR lands
// in a canary instead of someone else's heap:
//   [canary][rmb][canary][local-only][canary][rmb2][canary][rx ring][canary]
struct Layout {
  static constexpr size_t kRmb = 1 * kPage;
  static constexpr size_t kLocal = 3 * kPage;
  static constexpr size_t kRmb2 = 5 * kPage;
  static constexpr size_t kRx = 7 * kPage;
  static constexpr size_t kTotal = 9 * kPage;
};

struct Side {
  Context* ctx = nullptr;
  std::unique_ptr<Pd> pd;
  std::unique_ptr<Cq> cq;
  std::unique_ptr<Mr> mr;   // victim: the RMB; attacker: its buffer
  std::unique_ptr<Mr> mr2;  // victim: the second RMB
  std::unique_ptr<Mr> local;
  std::unique_ptr<Mr> rx;
  std::unique_ptr<Qp> qp;
};

bool KnownStatus(WcStatus s) {
  switch (s) {
    case WcStatus::kSuccess:
    case WcStatus::kLocLenErr:
    case WcStatus::kLocQpOpErr:
    case WcStatus::kLocProtErr:
    case WcStatus::kWrFlushErr:
    case WcStatus::kRemInvReqErr:
    case WcStatus::kRemAccessErr:
    case WcStatus::kRemOpErr:
    case WcStatus::kRetryExcErr:
    case WcStatus::kRnrRetryExcErr:
    case WcStatus::kGeneralErr:
      return true;
  }
  return false;
}

class Harness {
 public:
  explicit Harness(Input& in) : in_(in), fabric_(clock_, in.U8()) {
    mem_.assign(Layout::kTotal, kCanary);
    std::fill_n(mem_.begin() + Layout::kLocal, kPage, kLocalOnly);
    std::fill_n(mem_.begin() + Layout::kRmb, kPage, std::byte{0});
    std::fill_n(mem_.begin() + Layout::kRmb2, kPage, std::byte{0});
    std::fill_n(mem_.begin() + Layout::kRx, kSlot * kSlots, std::byte{0});
    golden_ = mem_;
    att_mem_.resize(2 * kPage);
    for (size_t i = 0; i < att_mem_.size(); ++i)
      att_mem_[i] = static_cast<std::byte>(i * 13);

    v_.ctx = &fabric_.AddDevice({.name = "victim", .ipv4 = 0x0a000001});
    a_.ctx = &fabric_.AddDevice({.name = "attacker", .ipv4 = 0x0a000002});
    for (Side* s : {&v_, &a_}) {
      s->pd = std::move(s->ctx->AllocPd()).value();
      s->cq = std::move(s->ctx->CreateCq(4096, nullptr)).value();
      s->qp = std::move(s->pd->CreateRcQp(*s->cq, *s->cq, QpCaps{})).value();
    }
    // A random page-aligned IOVA per RMB, as usmc registers them.
    // The header is short so that short inputs reach the operations.
    const uint64_t iova = 0x5a00'0000'0000ull | uint64_t{in_.U16()} << 12;
    v_.mr = Reg(v_, Layout::kRmb, kLocalWrite | kRemoteWrite, iova);
    v_.mr2 = Reg(v_, Layout::kRmb2, kLocalWrite | kRemoteWrite, iova + kPage);
    v_.local = Reg(v_, Layout::kLocal, 0, Addr(mem_.data() + Layout::kLocal));
    v_.rx = std::move(v_.pd->RegisterMr(mem_.data() + Layout::kRx,
                                        kSlot * kSlots, kLocalWrite,
                                        Addr(mem_.data() + Layout::kRx)))
                .value();
    a_.mr = std::move(a_.pd->RegisterMr(att_mem_.data(), att_mem_.size(),
                                        kLocalWrite | kRemoteWrite,
                                        Addr(att_mem_.data())))
                .value();
    // Near 2^24 so that the PSNs wrap early.
    v_psn_ = (0xffff00u + in_.U8()) & kPsnMask;
    a_psn_ = (0xffff00u + in_.U8()) & kPsnMask;
    Connect(v_, a_, v_psn_, a_psn_);
    Connect(a_, v_, a_psn_, v_psn_);
    for (uint32_t i = 0; i < kSlots; ++i) PostSlot(i);
  }

  ~Harness() {
    // verbs' order: QPs, MRs, CQs, PDs.
    for (Side* s : {&v_, &a_}) s->qp.reset();
    for (Side* s : {&v_, &a_}) {
      s->mr.reset();
      s->mr2.reset();
      s->local.reset();
      s->rx.reset();
      s->cq.reset();
      s->pd.reset();
    }
  }

  void Run() {
    for (int ops = 0; ops < 256 && !in_.empty(); ++ops) {
      Op(in_.U8());
      Drain();
      CheckVictimMemory();
      FUZZ_CHECK(fabric_.misuse().empty());
    }
    fabric_.RunFor(milliseconds(200));
    Drain();
    CheckVictimMemory();
    FUZZ_CHECK(fabric_.misuse().empty());
  }

 private:
  std::unique_ptr<Mr> Reg(Side& s, size_t off, uint32_t access, uint64_t iova) {
    return std::move(s.pd->RegisterMr(mem_.data() + off, kPage, access, iova))
        .value();
  }

  void Connect(Side& s, const Side& peer, uint32_t own_psn, uint32_t peer_psn) {
    FUZZ_CHECK(s.qp->ModifyToInit({.access = kRemoteWrite}).ok());
    FUZZ_CHECK(s.qp->ModifyToRtr({.path_mtu = Mtu::k1024,
                                  .dest_qpn = peer.qp->qpn(),
                                  .rq_psn = peer_psn,
                                  .dgid = peer.ctx->attr().gid,
                                  .sgid_index = 1})
                   .ok());
    // timeout 12 (16.8 ms a try) instead of the kernel's 15, so that
    // retry exhaustion (8 tries) fits in the short runs of one input.
    FUZZ_CHECK(s.qp->ModifyToRts({.sq_psn = own_psn, .timeout = 12}).ok());
  }

  void PostSlot(uint32_t i) {
    RecvWr r;
    r.wr_id = i;
    r.sg[0] = {Addr(mem_.data() + Layout::kRx + i * kSlot), kSlot,
               v_.rx->lkey()};
    r.num_sge = 1;
    (void)v_.qp->PostRecv({&r, 1});
  }

  // A key the attacker might try: the victim's real ones, its lkeys, one
  // of its own, or anything.
  uint32_t GuessKey() {
    switch (in_.U8() % 10) {
      case 0:
      case 1:
      case 2:
      case 3:
        return v_.mr->rkey();
      case 4:
        return v_.mr2 ? v_.mr2->rkey() : v_mr2_rkey_;
      case 5:
        return v_.local->rkey();
      case 6:
        return v_.rx->rkey();
      case 7:
        return v_.mr->lkey();
      case 8:
        return a_.mr->rkey();
      default:
        return in_.U32();
    }
  }
  uint64_t GuessAddr() {
    const uint64_t base = v_.mr->iova();
    switch (in_.U8() % 5) {
      case 0:  // inside or just around the RMB
      case 1:
        return base - 64 + in_.U16() % (kPage + 128);
      case 2:  // anywhere near it
        return base + static_cast<int16_t>(in_.U16());
      case 3:  // a process address of the victim's memory
        return Addr(mem_.data()) + in_.U16() % Layout::kTotal;
      default:
        return in_.U64();
    }
  }
  // The attacker's own gather list: inside its buffer or not.
  Sge AttackerSge(bool inline_send) {
    const uint8_t mode = in_.U8();
    const uint32_t off = in_.U16() % att_mem_.size();
    const uint32_t room = static_cast<uint32_t>(att_mem_.size() - off);
    if (inline_send) {
      // Inline data is read from process memory at post: keep it in the
      // attacker's own buffer (it cannot point the victim's NIC elsewhere).
      return {Addr(att_mem_.data() + off), in_.U8() % (room + 1u), 0};
    }
    if (mode % 4 != 0)  // a valid source, of any length
      return {Addr(att_mem_.data()) + off, in_.U16() % (room + 1u),
              a_.mr->lkey()};
    return {in_.U8() & 1 ? in_.U64() : Addr(att_mem_.data()) + off,
            static_cast<uint32_t>(in_.U16() % (2 * kPage + 64)),
            in_.U8() & 1 ? a_.mr->lkey() : in_.U32()};
  }

  void Op(uint8_t op) {
    switch (op % 13) {
      case 0:
      case 1: {  // RDMA WRITE at a guess
        SendWr w;
        w.wr_id = in_.U8();
        w.opcode = WrOpcode::kRdmaWrite;
        w.flags = in_.U8() & (kSendSignaled | kSendInline | kSendSolicited);
        w.num_sge = 1 + (in_.U8() & 1);
        for (int i = 0; i < w.num_sge; ++i)
          w.sg[i] = AttackerSge(w.flags & kSendInline);
        w.rkey = GuessKey();
        w.remote_addr = GuessAddr();
        (void)a_.qp->PostSend({&w, 1});
        break;
      }
      case 2: {  // SEND, inline or not
        SendWr s;
        s.wr_id = in_.U8();
        s.opcode = WrOpcode::kSend;
        s.flags = in_.U8() & (kSendSignaled | kSendInline | kSendSolicited);
        s.num_sge = in_.U8() % 3;
        for (int i = 0; i < s.num_sge; ++i)
          s.sg[i] = AttackerSge(s.flags & kSendInline);
        (void)a_.qp->PostSend({&s, 1});
        break;
      }
      case 3:
        for (int n = in_.U8() % 32; n > 0; --n) fabric_.Step();
        break;
      case 4:
        fabric_.RunUntilIdle();
        break;
      case 5:
        fabric_.RunFor(milliseconds(in_.U16() % 300));
        break;
      case 6: {
        const auto mode = static_cast<LinkMode>(in_.U8() % 3);
        if (in_.U8() & 1)
          fabric_.SetLink(*a_.ctx, *v_.ctx, mode);
        else
          fabric_.SetLink(*v_.ctx, *a_.ctx, mode);
        break;
      }
      case 7: {  // the attacker reconnects its QP with made-up values
        (void)a_.qp->ModifyToReset();
        (void)a_.qp->ModifyToInit({.access = in_.U8() & 1 ? kRemoteWrite : 0});
        const uint32_t qpn = in_.U8() & 1 ? v_.qp->qpn() : in_.U32();
        (void)a_.qp->ModifyToRtr(
            {.path_mtu = static_cast<Mtu>(in_.U8() % 7),
             .dest_qpn = qpn,
             .rq_psn = in_.U32() & kPsnMask,
             .dgid = v_.ctx->attr().gid,
             .sgid_index = 1,
             .min_rnr_timer = static_cast<uint8_t>(in_.U8() % 32)});
        (void)a_.qp->ModifyToRts(
            {.sq_psn = in_.U8() & 1 ? a_psn_ : in_.U32() & kPsnMask,
             .timeout = static_cast<uint8_t>(in_.U8() % 32),
             .retry_cnt = static_cast<uint8_t>(in_.U8() % 8),
             .rnr_retry = static_cast<uint8_t>(in_.U8() % 8)});
        break;
      }
      case 8:  // the victim ends the second connection: no writes after
        if (v_.mr2) {
          v_mr2_rkey_ = v_.mr2->rkey();
          v_.mr2.reset();
          std::memcpy(golden_.data() + Layout::kRmb2,
                      mem_.data() + Layout::kRmb2, kPage);
        }
        break;
      case 9:
        if (in_.U8() & 1)
          fabric_.Kill(*a_.qp);
        else
          (void)a_.qp->ModifyToError();
        break;
      case 10:  // the victim sends a CDC-sized message (the peer may RNR)
      {
        std::byte msg[44] = {};
        SendWr s;
        s.wr_id = 7;
        s.opcode = WrOpcode::kSend;
        s.flags = kSendSignaled | kSendInline | kSendSolicited;
        s.sg[0] = {Addr(msg), sizeof msg, 0};
        s.num_sge = 1;
        (void)v_.qp->PostSend({&s, 1});
        break;
      }
      case 11: {  // the attacker posts receives into its buffer
        RecvWr r;
        r.sg[0] = AttackerSge(false);
        r.num_sge = 1;
        (void)a_.qp->PostRecv({&r, 1});
        break;
      }
      case 12:
        clock_.Advance(nanoseconds(in_.U32()));
        break;
    }
  }

  // Both sides poll; the victim reposts every receive slot it got back.
  void Drain() {
    WorkCompletion wc[16];
    for (Side* s : {&v_, &a_}) {
      for (;;) {
        usmc::Result<size_t> n = s->cq->Poll(wc);
        FUZZ_CHECK(n.ok());
        if (*n == 0) break;
        for (size_t i = 0; i < *n; ++i) {
          FUZZ_CHECK(KnownStatus(wc[i].status));
          if (s == &v_ && wc[i].opcode == WcOpcode::kRecv &&
              wc[i].status == WcStatus::kSuccess) {
            FUZZ_CHECK(wc[i].byte_len <= kSlot);
            PostSlot(static_cast<uint32_t>(wc[i].wr_id));
          }
        }
      }
    }
  }

  // Everything the victim does not expose must equal its golden copy.
  void CheckVictimMemory() {
    const size_t exposed_rx = kSlot * kSlots;
    const std::pair<size_t, size_t> kept[] = {
        {0, Layout::kRmb},
        {Layout::kRmb + kPage, Layout::kRmb2},  // canary, local-only, canary
        {Layout::kRmb2 + kPage, Layout::kRx},
        {Layout::kRx + exposed_rx, Layout::kTotal},
    };
    for (auto [from, to] : kept)
      FUZZ_CHECK(std::memcmp(mem_.data() + from, golden_.data() + from,
                             to - from) == 0);
    if (!v_.mr2)  // deregistered: frozen since
      FUZZ_CHECK(std::memcmp(mem_.data() + Layout::kRmb2,
                             golden_.data() + Layout::kRmb2, kPage) == 0);
  }

  Input& in_;
  SimClock clock_;
  SimRdma fabric_;
  std::vector<std::byte> mem_;
  std::vector<std::byte> att_mem_;
  std::vector<std::byte> golden_;  // mem_ as it must stay outside MRs
  Side v_;
  Side a_;
  uint32_t v_psn_ = 0;
  uint32_t a_psn_ = 0;
  uint32_t v_mr2_rkey_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Harness h(in);
  h.Run();
  return 0;
}
