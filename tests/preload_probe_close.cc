// tests/preload_probe_close.cc: probe scenarios of how a connection ends for
// the other side (see tests/preload_probe.cc), written against TCP's
// behaviour so that they pass the same with and without usmc:
//   close-unread   the server closes with bytes of ours unread (TCP: RST):
//                  POLLERR|POLLHUP, ECONNRESET once, the reply that came
//                  before still readable, then EOF, then EPIPE + SIGPIPE
//   send-after-close  the server closed with nothing unread (TCP: FIN): one
//                  more send is taken, the peer's reset makes the next one
//                  fail with EPIPE; recv sees EOF, not an error
//   close-blocked  the server closes while we are blocked in send because
//                  it stopped reading: the send wakes up and fails
// No step waits for a time: each waits (sleeping in 1 ms slices) for the
// state it needs and checks the outcome.
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

constexpr std::string_view kReply = "-ERR Protocol error\r\n";
constexpr size_t kRequest = 100;  // the client sends this much
constexpr size_t kRead = 10;      // the server reads only this much

std::atomic<int> g_sigpipes{0};
void OnSigpipe(int) { g_sigpipes.fetch_add(1); }

int CountSigpipes() {
  struct sigaction sa = {};
  sa.sa_handler = OnSigpipe;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGPIPE, &sa, nullptr);
}

constexpr short kAsk = POLLIN | POLLOUT | POLLRDHUP;

// poll() until `bit` shows (the peer's FIN or reset has arrived).
short PollUntil(int fd, short bit) {
  for (;;) {
    struct pollfd p = {fd, kAsk, 0};
    int n = poll(&p, 1, 1000);
    if (n < 0 && errno != EINTR) return -1;
    if (n > 0 && (p.revents & bit)) return p.revents;
    usleep(1000);
  }
}

short PollNow(int fd) {
  struct pollfd p = {fd, kAsk, 0};
  return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

uint32_t EpollNow(int fd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 0;
  epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.u64 = 7;
  uint32_t got = 0;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0) {
    epoll_event out = {};
    if (epoll_wait(ep, &out, 1, 0) == 1 && out.data.u64 == 7) got = out.events;
  }
  close(ep);
  return got;
}

// Until FIONREAD shows at least `n` unread bytes.
int WaitUnread(int fd, int n) {
  for (;;) {
    int have = 0;
    CHECK(ioctl(fd, FIONREAD, &have) == 0, "FIONREAD");
    if (have >= n) return 0;
    usleep(1000);
  }
}

// Server: reads part of the request, replies, closes with the rest unread.
int CloseUnreadServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kRead, 1));
  RUN(WriteAll(fd, kReply.data(), kReply.size()));
  RUN(WaitUnread(fd, static_cast<int>(kRequest - kRead)));
  CHECK(close(fd) == 0, "close");
  return 0;
}

int CloseUnreadClient(uint16_t port, const char*) {
  CHECK(CountSigpipes() == 0, "sigaction");
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kRequest, 1));
  // The reset: TCP's poll shows the error and both directions over, and the
  // reply is still there to read.
  short r = PollUntil(fd, POLLHUP);
  CHECK(r == (kAsk | POLLERR | POLLHUP), "poll after the reset: %#x", r);
  uint32_t e = EpollNow(fd);
  CHECK(e == (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLERR | EPOLLHUP),
        "epoll after the reset: %#x", e);
  // The first send gets the error (ECONNRESET: no SIGPIPE), once.
  CHECK(send(fd, "x", 1, 0) == -1 && errno == ECONNRESET, "first send");
  CHECK(g_sigpipes.load() == 0, "SIGPIPE with ECONNRESET");
  r = PollNow(fd);
  CHECK(r == (kAsk | POLLHUP), "poll after the error was reported: %#x", r);
  std::string got(kReply.size() + 8, '\0');
  ssize_t n = recv(fd, got.data(), got.size(), 0);
  CHECK(n == static_cast<ssize_t>(kReply.size()), "reply: %zd", n);
  got.resize(static_cast<size_t>(n));
  CHECK(got == kReply, "reply '%s'", got.c_str());
  CHECK(recv(fd, got.data(), got.size(), 0) == 0, "EOF after the reply");
  // Later sends: EPIPE, with SIGPIPE unless MSG_NOSIGNAL.
  CHECK(send(fd, "x", 1, 0) == -1 && errno == EPIPE, "send after the error");
  CHECK(g_sigpipes.load() == 1, "SIGPIPE: %d", g_sigpipes.load());
  CHECK(write(fd, "x", 1) == -1 && errno == EPIPE, "write after the error");
  CHECK(g_sigpipes.load() == 2, "SIGPIPE: %d", g_sigpipes.load());
  CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "NOSIGNAL");
  CHECK(g_sigpipes.load() == 2, "SIGPIPE despite MSG_NOSIGNAL");
  CHECK(recv(fd, got.data(), got.size(), 0) == 0, "still EOF");
  close(fd);
  return 0;
}

// Server: reads the whole request, replies, closes (nothing unread: FIN).
int SendAfterCloseServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(RecvPat(fd, 0, kRequest, 1));
  RUN(WriteAll(fd, kReply.data(), kReply.size()));
  CHECK(close(fd) == 0, "close");
  return 0;
}

int SendAfterCloseClient(uint16_t port, const char*) {
  CHECK(CountSigpipes() == 0, "sigaction");
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(SendPat(fd, 0, kRequest, 1));
  // The FIN: readable to EOF, still writable, no error, no hang-up.
  short r = PollUntil(fd, POLLRDHUP);
  CHECK(r == kAsk, "poll after the FIN: %#x", r);
  // TCP takes this send; the closed peer answers it with a reset.
  CHECK(send(fd, "late", 4, 0) == 4, "send after the FIN");
  r = PollUntil(fd, POLLHUP);
  CHECK(r == (kAsk | POLLERR | POLLHUP), "poll after the reset: %#x", r);
  // The FIN came first: recv sees the reply, then EOF, not the error.
  std::string got(kReply.size() + 8, '\0');
  ssize_t n = recv(fd, got.data(), got.size(), 0);
  CHECK(n == static_cast<ssize_t>(kReply.size()), "reply: %zd", n);
  CHECK(recv(fd, got.data(), got.size(), 0) == 0, "EOF");
  CHECK(g_sigpipes.load() == 0, "SIGPIPE too early");
  // The reset after the FIN is EPIPE (TCP's CLOSE_WAIT), with SIGPIPE.
  CHECK(send(fd, "x", 1, 0) == -1 && errno == EPIPE, "send after the reset");
  CHECK(g_sigpipes.load() == 1, "SIGPIPE: %d", g_sigpipes.load());
  r = PollNow(fd);
  CHECK(r == (kAsk | POLLHUP), "poll after the error was reported: %#x", r);
  CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "again");
  CHECK(g_sigpipes.load() == 1, "SIGPIPE despite MSG_NOSIGNAL");
  close(fd);
  return 0;
}

// Server: stops reading; once a lot is queued unread, closes (reset).
constexpr int kQueued = 64 * 1024;
int CloseBlockedServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(WaitUnread(fd, kQueued));
  CHECK(close(fd) == 0, "close");
  return 0;
}

// Client: blocking sends until one fails; it must fail, not hang.
int CloseBlockedClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  std::vector<char> buf(kQueued, 'b');
  ssize_t n;
  uint64_t sent = 0;
  while ((n = send(fd, buf.data(), buf.size(), MSG_NOSIGNAL)) > 0) {
    sent += static_cast<uint64_t>(n);
  }
  CHECK(n == -1 && (errno == ECONNRESET || errno == EPIPE),
        "the blocked send ends with an error (after %llu bytes)",
        static_cast<unsigned long long>(sent));
  CHECK(sent >= kQueued, "sent only %llu",
        static_cast<unsigned long long>(sent));
  short r = PollNow(fd);
  CHECK((r & (POLLHUP | POLLOUT | POLLIN)) == (POLLHUP | POLLOUT | POLLIN),
        "poll after the reset: %#x", r);
  CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "then EPIPE");
  close(fd);
  return 0;
}

// epoll-order: the server serves two connections with an edge-triggered
// epoll set; the client sends "A" on the first, then "B" on the second and
// waits for the answer to B. TCP's ready list has the first connection
// first, so the server always reads A before B (Redis's tests rely on this
// order: one client's UNSUBSCRIBE before another's PUBLISH).
constexpr int kOrderRounds = 300;
int EpollOrderServer(int lfd) {
  int a = AcceptOne(lfd);
  CHECK(a >= 0, "accept a");
  RUN(WaitAck(a));
  int b = AcceptOne(lfd);
  CHECK(b >= 0, "accept b");
  RUN(WaitAck(b));
  SetNonblock(a, true);
  SetNonblock(b, true);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0, "epoll_create1");
  for (int fd : {a, b}) {
    epoll_event ev = {};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = fd;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
  }
  int seen_a = 0, seen_b = 0, inversions = 0, acks = 0;
  while (seen_b < kOrderRounds) {
    epoll_event evs[4];
    int n = epoll_wait(ep, evs, 4, -1);
    CHECK(n > 0 || errno == EINTR, "epoll_wait");
    for (int i = 0; i < n; ++i) {
      char buf[64];
      ssize_t got;
      while ((got = recv(evs[i].data.fd, buf, sizeof buf, 0)) > 0) {
        for (ssize_t j = 0; j < got; ++j) {
          if (buf[j] == 'A') ++seen_a;
          if (buf[j] != 'B') continue;
          ++seen_b;
          if (seen_a < seen_b) ++inversions;
          ++acks;
        }
      }
      CHECK(got < 0 && errno == EAGAIN, "recv");
    }
    // Answered after the batch: the next round's bytes then find the
    // server back in (or on its way to) epoll_wait, not in a recv loop.
    for (; acks > 0; --acks) RUN(Ack(b));
  }
  CHECK(inversions == 0, "B read before A in %d of %d rounds", inversions,
        kOrderRounds);
  close(ep);
  close(a);
  close(b);
  return 0;
}

int EpollOrderClient(uint16_t port, const char*) {
  int a = Connect(port);
  CHECK(a >= 0, "connect a");
  RUN(Ack(a));
  int b = Connect(port);
  CHECK(b >= 0, "connect b");
  RUN(Ack(b));
  for (int i = 0; i < kOrderRounds; ++i) {
    RUN(WriteAll(a, "A", 1));
    RUN(WriteAll(b, "B", 1));
    RUN(WaitAck(b));
  }
  close(a);
  close(b);
  return 0;
}

}  // namespace

void AddCloseScenarios(Scenarios& s) {
  s["epoll-order"] = {EpollOrderServer, EpollOrderClient};
  s["close-unread"] = {CloseUnreadServer, CloseUnreadClient};
  s["send-after-close"] = {SendAfterCloseServer, SendAfterCloseClient};
  s["close-blocked"] = {CloseBlockedServer, CloseBlockedClient};
}

}  // namespace usmc::probe
