// tests/lab/verbs_pair.cc: dev/verbs across two guests, in SMC-R's shape
// (tests/lab/scenarios/verbs-pair.sh). The two sides swap QPN, PSN, GID,
// rkey and IOVA over TCP (as a CLC Accept/Confirm would), connect RC QPs
// with the kernel's attributes, then the client moves ROUNDS x 64 KiB into
// the server's RMB: per round one unsignaled RDMA WRITE of the whole RMB
// and a 44-byte inline solicited SEND announcing it; the server sleeps on
// its completion channel (solicited-only), checks every byte of the RMB
// when the SEND arrives, and answers with its own SEND (the credit for the
// next round).
//
//   verbs_pair server PORT ROUNDS      (on 10.0.0.1)
//   verbs_pair client ADDR PORT ROUNDS (on 10.0.0.2)
//
// Prints "VERBS-PAIR ok ROUNDS rounds, N bytes" and exits 0, else 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>

#include "dev/rdma.h"
#include "dev/verbs.h"

namespace {

using namespace usmc::dev::rdma;

constexpr uint32_t kRmb = 65536;
constexpr uint32_t kSlot = 48;

struct Hello {  // what a CLC Accept/Confirm carries for SMC-R, roughly
  uint32_t qpn, psn, rkey, mtu;
  uint64_t iova;
  Gid gid;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "verbs_pair: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Ok(usmc::Result<T> r, const char* what) {
  if (!r.ok()) Die(std::string(what) + ": " + r.status().ToString());
  return std::move(r).value();
}
void Ok(const usmc::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

uint8_t PatternByte(uint32_t round, uint32_t i) {
  return static_cast<uint8_t>(round * 31 + i * 7 + (i >> 8));
}

void* PageAlloc(size_t n) { return ::operator new (n, std::align_val_t{4096}); }

// Waits (bounded) for one completion on `cq`, sleeping on the channel.
WorkCompletion WaitOne(CompChannel& ch, Cq& cq, bool solicited_only) {
  for (int i = 0; i < 200; ++i) {
    WorkCompletion wc;
    if (Ok(cq.Poll({&wc, 1}), "poll") == 1) return wc;
    Ok(cq.RequestNotify(solicited_only), "notify");
    if (Ok(cq.Poll({&wc, 1}), "poll") == 1) return wc;  // the arm race
    pollfd p{ch.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    if (Cq* ev = Ok(ch.GetEvent(), "event")) ev->AckEvents(1);
  }
  Die("no completion within 20 s");
}

}  // namespace

int main(int argc, char** argv) {
  const bool server = argc == 4 && std::strcmp(argv[1], "server") == 0;
  const bool client = argc == 5 && std::strcmp(argv[1], "client") == 0;
  if (!server && !client) {
    std::fprintf(stderr,
                 "usage: verbs_pair server PORT ROUNDS | "
                 "client ADDR PORT ROUNDS\n");
    return 1;
  }
  const int port = std::atoi(argv[server ? 2 : 3]);
  const uint32_t rounds = std::atoi(argv[server ? 3 : 4]);

  // The TCP side channel, and the local address that picks the GID.
  int fd = -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (server) {
    const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(ls, 1) < 0) {
      Die("listen");
    }
    fd = ::accept(ls, nullptr, nullptr);
    ::close(ls);
  } else {
    ::inet_pton(AF_INET, argv[2], &a.sin_addr);
    for (int i = 0; i < 100 && fd < 0; ++i) {
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        ::close(fd);
        fd = -1;
        ::usleep(200000);
      }
    }
  }
  if (fd < 0) Die("no TCP connection");
  sockaddr_in self{};
  socklen_t sl = sizeof self;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl);

  std::unique_ptr<Context> ctx =
      Ok(VerbsContext::Open(ntohl(self.sin_addr.s_addr)), "open");
  std::printf("device %s gid %s index %u mtu %u max_inline %u\n",
              ctx->attr().name.c_str(), ToString(ctx->attr().gid).c_str(),
              ctx->attr().gid_index, MtuBytes(ctx->attr().active_mtu),
              ctx->attr().max_inline);
  auto pd = Ok(ctx->AllocPd(), "pd");
  auto ch = Ok(ctx->CreateCompChannel(), "channel");
  auto scq = Ok(ctx->CreateCq(128, ch.get()), "send cq");
  auto rcq = Ok(ctx->CreateCq(128, ch.get()), "recv cq");
  auto* rmb = static_cast<uint8_t*>(PageAlloc(kRmb));
  auto* src = static_cast<uint8_t*>(PageAlloc(kRmb));
  auto* rx = static_cast<uint8_t*>(PageAlloc(4096));
  std::memset(rmb, 0, kRmb);
  std::mt19937_64 rng(std::random_device{}());
  // A random page-aligned IOVA per RMB (SMCR.md D3; ib_uverbs wants the
  // address's page offset, here 0).
  const uint64_t iova = (rng() & 0x0000'7fff'ffff'f000ull) | 0x1000'0000'0000;
  auto rmb_mr =
      Ok(pd->RegisterMr(rmb, kRmb, kLocalWrite | kRemoteWrite, iova), "rmb");
  auto src_mr =
      Ok(pd->RegisterMr(src, kRmb, 0, reinterpret_cast<uint64_t>(src)), "src");
  auto rx_mr =
      Ok(pd->RegisterMr(rx, 4096, kLocalWrite, reinterpret_cast<uint64_t>(rx)),
         "rx");
  auto qp = Ok(pd->CreateRcQp(*scq, *rcq,
                              {.max_send_wr = 64,
                               .max_recv_wr = 64,
                               .max_send_sge = 2,
                               .max_recv_sge = 2,
                               .max_inline_data = 64}),
               "qp");

  Hello mine{.qpn = qp->qpn(),
             .psn = static_cast<uint32_t>(rng()) & kPsnMask,
             .rkey = rmb_mr->rkey(),
             .mtu = static_cast<uint32_t>(ctx->attr().active_mtu),
             .iova = iova,
             .gid = ctx->attr().gid};
  Hello peer{};
  if (::send(fd, &mine, sizeof mine, 0) != sizeof mine ||
      ::recv(fd, &peer, sizeof peer, MSG_WAITALL) != sizeof peer) {
    Die("hello exchange");
  }
  std::printf("peer qpn %u gid %s\n", peer.qpn, ToString(peer.gid).c_str());

  // Receives first (from INIT, as SMC-R posts its ring before RTR).
  Ok(qp->ModifyToInit({.access = kRemoteWrite}), "INIT");
  for (uint32_t i = 0; i < 32; ++i) {
    RecvWr r{.wr_id = i, .num_sge = 1};
    r.sg[0] = {reinterpret_cast<uint64_t>(rx + (i % 64) * kSlot), kSlot,
               rx_mr->lkey()};
    Ok(qp->PostRecv({&r, 1}), "post recv");
  }
  const Mtu mtu = static_cast<Mtu>(std::min<uint32_t>(
      peer.mtu, static_cast<uint32_t>(ctx->attr().active_mtu)));
  Ok(qp->ModifyToRtr({.path_mtu = mtu,
                      .dest_qpn = peer.qpn,
                      .rq_psn = peer.psn,
                      .dgid = peer.gid,
                      .sgid_index = ctx->attr().gid_index,
                      .hop_limit = 1,
                      .max_dest_rd_atomic = 0,
                      .min_rnr_timer = 5}),
     "RTR");
  Ok(qp->ModifyToRts({.sq_psn = mine.psn}), "RTS");
  // Both in RTS before the first request (a request before the peer's RTR
  // would only cost one 134 ms retry, but the run is shorter this way).
  char go = 'g';
  if (::send(fd, &go, 1, 0) != 1 || ::recv(fd, &go, 1, MSG_WAITALL) != 1) {
    Die("sync");
  }

  uint8_t msg[44] = {};
  uint32_t posted_recvs = 32;
  uint64_t bytes = 0;
  for (uint32_t round = 0; round < rounds; ++round) {
    if (client) {
      for (uint32_t i = 0; i < kRmb; ++i) src[i] = PatternByte(round, i);
      SendWr w{.wr_id = 100 + round,
               .opcode = WrOpcode::kRdmaWrite,
               .flags = 0,  // unsignaled
               .num_sge = 1,
               .remote_addr = peer.iova,
               .rkey = peer.rkey};
      w.sg[0] = {reinterpret_cast<uint64_t>(src), kRmb, src_mr->lkey()};
      std::memcpy(msg, &round, 4);
      SendWr s{.wr_id = 200 + round,
               .opcode = WrOpcode::kSend,
               .flags = kSendSignaled | kSendSolicited | kSendInline,
               .num_sge = 1};
      s.sg[0] = {reinterpret_cast<uint64_t>(msg), sizeof msg, 0};
      SendWr wrs[2] = {w, s};
      Ok(qp->PostSend(wrs), "post write+send");
      const WorkCompletion sent = WaitOne(*ch, *scq, false);
      if (sent.status != WcStatus::kSuccess || sent.wr_id != 200 + round) {
        Die("send completion " + std::string(ToString(sent.status)));
      }
      // The server's credit for the next round.
      const WorkCompletion got = WaitOne(*ch, *rcq, true);
      if (got.status != WcStatus::kSuccess) {
        Die("credit " + std::string(ToString(got.status)));
      }
    } else {
      const WorkCompletion got = WaitOne(*ch, *rcq, true);
      if (got.status != WcStatus::kSuccess || got.byte_len != 44) {
        Die("receive " + std::string(ToString(got.status)));
      }
      uint32_t announced = 0;
      std::memcpy(&announced, rx + (got.wr_id % 64) * kSlot, 4);
      if (announced != round) Die("round out of order");
      for (uint32_t i = 0; i < kRmb; ++i) {
        if (rmb[i] != PatternByte(round, i)) {
          Die("round " + std::to_string(round) + ": RMB byte " +
              std::to_string(i) + " differs when the SEND is seen");
        }
      }
      std::memcpy(msg, &round, 4);
      SendWr s{.wr_id = 300 + round,
               .opcode = WrOpcode::kSend,
               .flags = kSendSignaled | kSendSolicited | kSendInline,
               .num_sge = 1};
      s.sg[0] = {reinterpret_cast<uint64_t>(msg), sizeof msg, 0};
      Ok(qp->PostSend({&s, 1}), "post credit");
      if (WaitOne(*ch, *scq, false).status != WcStatus::kSuccess) {
        Die("credit completion");
      }
    }
    // Keep the receive ring full.
    RecvWr r{.wr_id = posted_recvs, .num_sge = 1};
    r.sg[0] = {reinterpret_cast<uint64_t>(rx + (posted_recvs % 64) * kSlot),
               kSlot, rx_mr->lkey()};
    Ok(qp->PostRecv({&r, 1}), "repost recv");
    ++posted_recvs;
    bytes += kRmb;
  }
  std::printf("VERBS-PAIR ok %u rounds, %llu bytes\n", rounds,
              static_cast<unsigned long long>(bytes));
  // Destruction order verbs requires: QP, MRs, CQs, channel, PD.
  qp.reset();
  rx_mr.reset();
  src_mr.reset();
  rmb_mr.reset();
  ::close(fd);
  return 0;
}
