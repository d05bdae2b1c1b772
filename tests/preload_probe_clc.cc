// tests/preload_probe_clc.cc: a scripted CLC peer (run without the
// preload: it opts in and speaks CLC by hand) against a usmc side, to force
// the interleavings of a handshake that falls back (issue 16): both sides
// declining at once, and a CLC header whose body never comes. The usmc side
// must hand its app exactly the peer's app bytes, nothing of the CLC.
//
//   preload_probe clc-server SCRIPT          # prints "PORT n", one peer
//   preload_probe clc-client SCRIPT PORT
//
// Scripts (the usmc side runs scenario "clc-hello", or "clc-partial"):
//   cross    the peer's message makes the usmc side decline at once (a
//            header that is CLC, a body that is not); the peer reads that
//            Decline and only then sends its own (the Decline it would have
//            sent had its timer run out at that moment), then its app bytes.
//   partial  (client only) a valid Proposal header, never its body; after
//            the server's Decline (CLC timeout), app bytes.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "negotiate/negotiate.h"
#include "tests/preload_probe.h"

namespace usmc::probe {
namespace {

const std::string kHelloC = "client-app-bytes-after-fallback!";
const std::string kHelloS = "server-app-bytes-after-fallback!";

// A CLC header (eyecatcher "SMCR"/"SMCD" in EBCDIC, type, length, version
// 2) and trailer around a zeroed body: CLC to the decoder's first look, a
// message no usmc peer would take.
std::string BogusClc(uint8_t type, uint16_t len) {
  const bool smcd = type != 1;
  std::string m(len, '\0');
  const char eye[4] = {'\xE2', '\xD4', '\xC3', smcd ? '\xC4' : '\xD9'};
  std::memcpy(m.data(), eye, 4);
  m[4] = static_cast<char>(type);
  m[5] = static_cast<char>(len >> 8);
  m[6] = static_cast<char>(len & 0xFF);
  m[7] = static_cast<char>(0x20 | (smcd ? 1 : 0));  // version 2, SMC-D
  std::memcpy(m.data() + len - 4, eye, 4);
  return m;
}

// The header alone of a 200-byte Proposal (scenario "clc-partial").
std::string PartialHeader() { return BogusClc(1, 200).substr(0, 8); }

// One whole CLC message from the stream (header, then the length it says).
int ReadClc(int fd, std::string* m) {
  m->assign(8, '\0');
  RUN(ReadExact(fd, m->data(), 8));
  CHECK(static_cast<uint8_t>((*m)[0]) == 0xE2, "not a CLC header");
  const size_t len =
      (static_cast<uint8_t>((*m)[5]) << 8) | static_cast<uint8_t>((*m)[6]);
  CHECK(len >= 8 && len <= 1024, "CLC length %zu", len);
  m->resize(len);
  return ReadExact(fd, m->data() + 8, len - 8);
}

int ExpectDecline(int fd, std::string* decline) {
  RUN(ReadClc(fd, decline));
  CHECK((*decline)[4] == 4, "CLC type %d, want a Decline", (*decline)[4]);
  return 0;
}

// The peer's side of "cross" once it has the usmc side's Decline: its own
// Decline (ours echoed: a valid one), its app bytes, the usmc app's answer.
int CrossThenTalk(int fd, const std::string& decline, const std::string& mine,
                  const std::string& theirs) {
  RUN(WriteAll(fd, (decline + mine).data(), decline.size() + mine.size()));
  std::string got(theirs.size(), '\0');
  RUN(ReadExact(fd, got.data(), got.size()));
  CHECK(got == theirs, "the usmc side's app sent '%s'", got.c_str());
  return 0;
}

int PeerServer(const std::string& script) {
  SetName("probe-peer");
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(negotiate::OptIn(lfd), "OptIn (eBPF program not attached?)");
  sockaddr_in a = Loopback(0);
  CHECK(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  CHECK(listen(lfd, 4) == 0, "listen");
  socklen_t alen = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen);
  std::printf("PORT %u\n", ntohs(a.sin_port));
  std::fflush(stdout);
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  CHECK(negotiate::QueryOutcome(fd).both_offered(), "no SMC offered");
  CHECK(script == "cross", "script %s", script.c_str());
  std::string proposal, decline;
  RUN(ReadClc(fd, &proposal));
  CHECK(proposal[4] == 1, "CLC type %d, want a Proposal", proposal[4]);
  const std::string accept = BogusClc(2, 48);
  RUN(WriteAll(fd, accept.data(), accept.size()));
  RUN(ExpectDecline(fd, &decline));
  // The usmc client's app bytes follow its Decline.
  std::string got(kHelloC.size(), '\0');
  RUN(WriteAll(fd, (decline + kHelloS).data(),
               decline.size() + kHelloS.size()));
  RUN(ReadExact(fd, got.data(), got.size()));
  CHECK(got == kHelloC, "the usmc client's app sent '%s'", got.c_str());
  RUN(ExpectEof(fd));
  close(fd);
  close(lfd);
  return 0;
}

int PeerClient(const std::string& script, uint16_t port) {
  SetName("probe-peer");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(negotiate::OptIn(fd), "OptIn (eBPF program not attached?)");
  sockaddr_in a = Loopback(port);
  CHECK(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "connect");
  CHECK(negotiate::QueryOutcome(fd).both_offered(), "no SMC offered");
  std::string decline;
  if (script == "cross") {
    const std::string proposal = BogusClc(1, 48);
    RUN(WriteAll(fd, proposal.data(), proposal.size()));
    RUN(ExpectDecline(fd, &decline));
    RUN(CrossThenTalk(fd, decline, kHelloC, kHelloS));
  } else if (script == "partial") {
    const std::string head = PartialHeader();
    RUN(WriteAll(fd, head.data(), head.size()));
    RUN(ExpectDecline(fd, &decline));  // after the server's CLC timeout
    RUN(WriteAll(fd, kHelloC.data(), kHelloC.size()));
    std::string got(kHelloS.size(), '\0');
    RUN(ReadExact(fd, got.data(), got.size()));
    CHECK(got == kHelloS, "the usmc server's app sent '%s'", got.c_str());
  } else {
    CHECK(false, "script %s", script.c_str());
  }
  close(fd);
  return 0;
}

// ---- the usmc side ---------------------------------------------------------

// Reads exactly `want` (the peer's app bytes), answers `reply`, then EOF.
int Hello(int fd, const std::string& want, const std::string& reply) {
  std::string got(want.size(), '\0');
  RUN(ReadExact(fd, got.data(), got.size()));
  CHECK(got == want, "the app read '%s' (%zu bytes), want '%s'", got.c_str(),
        got.size(), want.c_str());
  return WriteAll(fd, reply.data(), reply.size());
}

int HelloServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  RUN(Hello(fd, kHelloC, kHelloS));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// The same, the app reading through splice(2) into a pipe (as a proxy
// does): the late CLC message must not reach the pipe either.
int HelloSpliceServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  // poll() first, as an event loop: the fallback is decided before the
  // app's splice, with the peer's Decline still to come.
  pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, -1) == 1 && (p.revents & POLLIN), "poll %#x", p.revents);
  int pipefd[2];
  CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe");
  std::string got;
  while (got.size() < kHelloC.size()) {
    const ssize_t n =
        splice(fd, nullptr, pipefd[1], nullptr, kHelloC.size() - got.size(), 0);
    CHECK(n > 0, "splice: %zd (%s)", n, n < 0 ? strerror(errno) : "EOF");
    std::string part(static_cast<size_t>(n), '\0');
    RUN(ReadExact(pipefd[0], part.data(), part.size()));
    got += part;
  }
  CHECK(got == kHelloC, "the app spliced '%s' (%zu bytes), want '%s'",
        got.c_str(), got.size(), kHelloC.c_str());
  RUN(WriteAll(fd, kHelloS.data(), kHelloS.size()));
  RUN(ExpectEof(fd));
  close(pipefd[0]);
  close(pipefd[1]);
  close(fd);
  return 0;
}

int HelloClient(uint16_t port, const char*) {
  int fd = Connect(port);
  CHECK(fd >= 0, "connect");
  RUN(WriteAll(fd, kHelloC.data(), kHelloC.size()));
  std::string got(kHelloS.size(), '\0');
  RUN(ReadExact(fd, got.data(), got.size()));
  CHECK(got == kHelloS, "the app read '%s', want '%s'", got.c_str(),
        kHelloS.c_str());
  close(fd);
  return 0;
}

// The header the peer started is the peer's app bytes, then its hello.
// poll() first: the fallback is then seen before the app reads (as by an
// event loop, or the progress thread), which is when the bytes were held.
int PartialServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, -1) == 1 && (p.revents & POLLIN), "poll %#x", p.revents);
  RUN(Hello(fd, PartialHeader() + kHelloC, kHelloS));
  RUN(ExpectEof(fd));
  close(fd);
  return 0;
}

// The same, the app reading through a stdio stream on the socket (fdopen):
// glibc's own stream reads with its own calls, which usmc does not see.
int HelloStdioServer(int lfd) {
  int fd = AcceptOne(lfd);
  CHECK(fd >= 0, "accept");
  pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, -1) == 1 && (p.revents & POLLIN), "poll %#x", p.revents);
  const int rfd = dup(fd);
  CHECK(rfd >= 0, "dup");
  FILE* in = fdopen(rfd, "r");
  CHECK(in != nullptr, "fdopen");
  std::string got(kHelloC.size(), '\0');
  CHECK(fread(got.data(), 1, got.size(), in) == got.size(), "fread");
  CHECK(got == kHelloC, "the app read '%s' from its stream, want '%s'",
        got.c_str(), kHelloC.c_str());
  RUN(WriteAll(fd, kHelloS.data(), kHelloS.size()));
  CHECK(fgetc(in) == EOF && !ferror(in), "EOF after the hello");
  fclose(in);
  close(fd);
  return 0;
}

}  // namespace

int ClcPeerMain(const std::string& mode, const std::string& script,
                uint16_t port) {
  return mode == "clc-server" ? PeerServer(script) : PeerClient(script, port);
}

void AddClcScenarios(Scenarios& s) {
  s["clc-hello"] = {HelloServer, HelloClient};
  s["clc-hello-splice"] = {HelloSpliceServer, nullptr};
  s["clc-hello-stdio"] = {HelloStdioServer, nullptr};
  s["clc-partial"] = {PartialServer, nullptr};
}

}  // namespace usmc::probe
