// tests/conformance/cases_pass.cc: accepted sockets passed to another
// process with SCM_RIGHTS (pre-fork servers, socket activation, cluster
// modes), in both directions: what the worker and the client observe must
// be what they observe over plain TCP, including the control data the
// receiver gets (fd count, MSG_CTRUNC with a small buffer).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "tests/conformance/conform.h"

namespace usmc::conform {
namespace {

constexpr size_t kReq = 3000;
constexpr size_t kReply = 300 << 10;  // larger than a DMB: the ring wraps

int SendFds(int sock, const std::vector<int>& fds) {
  char byte = 'f';
  iovec iov{&byte, 1};
  std::vector<cmsghdr> store(
      CMSG_SPACE(fds.size() * sizeof(int)) / sizeof(cmsghdr) + 1);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = store.data();
  mh.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  CCHECK(n == 1, "sendmsg of %zu fds", fds.size());
  return 0;
}

// One message; the control buffer is `room` bytes. Logs what the
// application sees of the control data.
int RecvFds(const char* role, int sock, size_t room, std::vector<int>* fds) {
  char byte = 0;
  iovec iov{&byte, 1};
  std::vector<cmsghdr> store(room / sizeof(cmsghdr) + 1);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = store.data();
  mh.msg_controllen = room;
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, 0);
  } while (n < 0 && errno == EINTR);
  CCHECK(n == 1 && byte == 'f', "recvmsg %zd", n);
  fds->clear();
  int cmsgs = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    ++cmsgs;
    CCHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS,
           "cmsg %d/%d", c->cmsg_level, c->cmsg_type);
    const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->push_back(fd);
    }
  }
  Say(role, "recvmsg: %d cmsg, %zu fds, controllen %zu, ctrunc %d", cmsgs,
      fds->size(), static_cast<size_t>(mh.msg_controllen),
      (mh.msg_flags & MSG_CTRUNC) ? 1 : 0);
  return 0;
}

// The client's side of every case: `n` connections, made `batch` at a
// time; each sends a request, then reads the reply and EOF.
int Client(uint16_t port, int n, int batch) {
  for (int b = 0; b < n; b += batch) {
    std::vector<int> fds;
    for (int k = b; k < b + batch; ++k) {
      int fd = Connect(port);
      CCHECK(fd >= 0, "connect %d", k);
      CRUN(SendPat(fd, 0, kReq, 10 + k));
      fds.push_back(fd);
    }
    for (int k = b; k < b + batch; ++k) {
      const int fd = fds[static_cast<size_t>(k - b)];
      CRUN(RecvPat(fd, 0, kReply, 50 + k));
      CRUN(ExpectEof(fd));
      Say("cli", "connection %d: reply and eof", k);
      close(fd);
    }
  }
  return 0;
}

int Serve(const char* role, int fd, int k) {
  CRUN(RecvPat(fd, 0, kReq, 10 + k));
  CRUN(SendPat(fd, 0, kReply, 50 + k));
  Say(role, "connection %d served", k);
  return close(fd);
}

// The listener passes each accepted socket to a worker over a stream
// socketpair and closes its copy at once; the worker serves it.
CONFORM_CASE(pass_accepted_socket_to_worker, 2 * 10) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int sv[2];
  CCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  pid_t wrk = Spawn([&] {
    close(lfd);
    close(sv[0]);
    for (int k = 0; k < 10; ++k) {
      std::vector<int> fds;
      CRUN(RecvFds("wrk", sv[1], CMSG_SPACE(sizeof(int)), &fds));
      CCHECK(fds.size() == 1, "one fd");
      CRUN(Serve("wrk", fds[0], k));
    }
    return 0;
  });
  close(sv[1]);
  pid_t srv = Spawn([&] {
    for (int k = 0; k < 10; ++k) {
      int fd = AcceptOne(lfd);
      CCHECK(fd >= 0, "accept");
      CRUN(SendFds(sv[0], {fd}));
      close(fd);
    }
    Say("srv", "passed 10 connections");
    return 0;
  });
  close(lfd);
  close(sv[0]);
  CRUN(Client(port, 10, 2));
  CCHECK(Reap(srv) == 0, "listener");
  return Reap(wrk);
}

// Both directions: the worker reads the request and hands the socket back
// to the listener, which replies.
CONFORM_CASE(pass_socket_back_to_listener, 2 * 6) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int sv[2];
  CCHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
  pid_t wrk = Spawn([&] {
    close(lfd);
    close(sv[0]);
    for (int k = 0; k < 6; ++k) {
      std::vector<int> fds;
      CRUN(RecvFds("wrk", sv[1], CMSG_SPACE(sizeof(int)), &fds));
      CCHECK(fds.size() == 1, "one fd");
      CRUN(RecvPat(fds[0], 0, kReq, 10 + k));
      Say("wrk", "connection %d: request read, handing it back", k);
      CRUN(SendFds(sv[1], fds));
      close(fds[0]);
    }
    return 0;
  });
  close(sv[1]);
  pid_t srv = Spawn([&] {
    for (int k = 0; k < 6; ++k) {
      int fd = AcceptOne(lfd);
      CCHECK(fd >= 0, "accept");
      CRUN(SendFds(sv[0], {fd}));
      close(fd);
      std::vector<int> back;
      CRUN(RecvFds("srv", sv[0], CMSG_SPACE(sizeof(int)), &back));
      CCHECK(back.size() == 1, "one fd back");
      CRUN(SendPat(back[0], 0, kReply, 50 + k));
      Say("srv", "connection %d: replied", k);
      close(back[0]);
    }
    return 0;
  });
  close(lfd);
  close(sv[0]);
  CRUN(Client(port, 6, 1));
  CCHECK(Reap(srv) == 0, "listener");
  return Reap(wrk);
}

// Several sockets in one datagram; then a receiver whose control buffer
// has room for one fd only: MSG_CTRUNC, and the socket that did not fit is
// closed (its client reads EOF, before any reply).
CONFORM_CASE(pass_several_fds_in_one_datagram, 2 * 6) {
  uint16_t port;
  int lfd = Listen(&port);
  CCHECK(lfd >= 0, "listen");
  int sv[2];
  CCHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair");
  pid_t wrk = Spawn([&] {
    close(lfd);
    close(sv[0]);
    std::vector<int> fds;
    CRUN(RecvFds("wrk", sv[1], CMSG_SPACE(4 * sizeof(int)), &fds));
    for (size_t k = 0; k < fds.size(); ++k) {
      CRUN(Serve("wrk", fds[k], static_cast<int>(k)));
    }
    // Room for one fd (CMSG_LEN, not CMSG_SPACE: the space of one fd on
    // 64-bit machines holds two).
    CRUN(RecvFds("wrk", sv[1], CMSG_LEN(sizeof(int)), &fds));
    CCHECK(fds.size() == 1, "one fd fits");
    CRUN(Serve("wrk", fds[0], 4));
    return 0;
  });
  close(sv[1]);
  pid_t srv = Spawn([&] {
    std::vector<int> fds;
    for (int k = 0; k < 6; ++k) {
      int fd = AcceptOne(lfd);
      CCHECK(fd >= 0, "accept");
      fds.push_back(fd);
    }
    CRUN(SendFds(sv[0], {fds[0], fds[1], fds[2], fds[3]}));
    CRUN(SendFds(sv[0], {fds[4], fds[5]}));
    for (int fd : fds) close(fd);
    Say("srv", "passed 6 connections in 2 messages");
    return 0;
  });
  close(lfd);
  close(sv[0]);
  std::vector<int> fds;
  for (int k = 0; k < 6; ++k) {
    int fd = Connect(port);
    CCHECK(fd >= 0, "connect %d", k);
    if (k < 5) CRUN(SendPat(fd, 0, kReq, 10 + k));
    fds.push_back(fd);
  }
  for (int k = 0; k < 5; ++k) {
    CRUN(RecvPat(fds[k], 0, kReply, 50 + k));
    CRUN(ExpectEof(fds[k]));
    Say("cli", "connection %d: reply and eof", k);
  }
  CRUN(ExpectEof(fds[5]));
  Say("cli", "connection 5: eof (its fd did not fit the worker's buffer)");
  for (int fd : fds) close(fd);
  CCHECK(Reap(srv) == 0, "listener");
  return Reap(wrk);
}

}  // namespace
}  // namespace usmc::conform
