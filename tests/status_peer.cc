// tests/status_peer.cc: the programs tests/status_e2e_test.cc runs under
// `usmc run` (or plain, as the non-usmc side), so that the status tools can
// be checked against connections whose every byte the test knows.
//
//   status_peer serve
//       Listens on [::]:0 (IPv4 too), prints "PORT <n>", echoes every
//       connection; on EOF it shuts its side down and keeps the socket open
//       (so `usmc ss` still shows it). stdin: "close-listener" closes the
//       listening socket and answers "CLOSED"; "fork" forks a child that
//       holds everything until killed: the child answers "CHILD <pid>"
//       once its fork() has returned (see Serve); EOF ends the process.
//   status_peer hold
//       As serve, but makes no call on the connections it accepts: only
//       usmc's progress thread can answer their handshakes.
//   status_peer idle HOST PORT
//       A non-blocking connect; once it is connected (poll), prints
//       "CONNECTED" and makes no further call on the socket until stdin
//       reaches EOF (a pool connecting ahead of use).
//   status_peer client BYTES HOST PORT COUNT [HOST PORT COUNT ...]
//       COUNT connections to each HOST PORT. Each moves BYTES each way: 1200
//       echoed 256-byte messages one at a time, then the rest in a single
//       send() while a second thread reads the echo; the echo is checked
//       byte for byte. Then shutdown(SHUT_WR) and read to EOF. Prints
//       "DONE" and keeps the sockets open until stdin reaches EOF.
// Exit 0 when every byte came back as sent; else a message on stderr.
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMessages = 1200;
constexpr size_t kMessageSize = 256;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "status_peer: %s: %s\n", what.c_str(),
               std::strerror(errno));
  std::exit(1);
}

unsigned char Pattern(size_t i, int conn) {
  return static_cast<unsigned char>(i * 7 + static_cast<size_t>(conn) * 13);
}

void SendAll(int fd, const unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) Die("send");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void RecvAll(int fd, unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t r = recv(fd, p, n, 0);
    if (r == 0) errno = EPIPE;
    if (r <= 0) Die("recv");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void Echo(int fd) {
  std::vector<char> buf(64 << 10);
  for (;;) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      const ssize_t w = send(fd, buf.data() + off, n - off, MSG_NOSIGNAL);
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
  }
  shutdown(fd, SHUT_WR);  // kept open: the test looks at it in `usmc ss`
}

int Serve(bool hold) {
  int lst = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int on = 1, off = 0;
  setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  setsockopt(lst, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  if (bind(lst, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(lst, 64) != 0)
    Die("listen");
  socklen_t len = sizeof(a);
  getsockname(lst, reinterpret_cast<sockaddr*>(&a), &len);
  std::printf("PORT %u\n", ntohs(a.sin6_port));
  std::fflush(stdout);
  std::string line;
  for (;;) {
    pollfd p[2] = {{STDIN_FILENO, POLLIN, 0}, {lst, POLLIN, 0}};
    if (poll(p, lst >= 0 ? 2 : 1, -1) < 0) continue;
    if (p[0].revents) {
      char c;
      if (read(STDIN_FILENO, &c, 1) != 1) std::exit(0);  // EOF: done
      if (c != '\n') {
        line += c;
      } else {
        if (line == "close-listener") {
          close(lst);
          lst = -1;
          std::printf("CLOSED\n");
        } else if (line == "fork") {
          // The child answers, not the parent: under usmc a child publishes
          // the listeners it inherits in its own status file before its
          // fork() returns (preload/listeners.h), while the parent's fork()
          // may return before that. After the child's line `usmc ss` must
          // show both.
          const pid_t child = fork();
          if (child < 0) Die("fork");
          if (child == 0) {
            std::printf("CHILD %d\n", static_cast<int>(getpid()));
            std::fflush(stdout);
            for (;;) pause();  // holds the listener until killed
          }
        }
        std::fflush(stdout);
        line.clear();
      }
    }
    if (lst >= 0 && (p[1].revents & POLLIN)) {
      const int c = accept4(lst, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0 && !hold) std::thread(Echo, c).detach();
    }
  }
}

int Connect(const char* host, const char* port, int flags = 0) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host, port, &hints, &res) != 0) Die("getaddrinfo");
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 &&
                 !((flags & SOCK_NONBLOCK) && errno == EINPROGRESS)))
    Die(std::string("connect ") + host + " " + port);
  freeaddrinfo(res);
  return fd;
}

int Idle(const char* host, const char* port) {
  const int fd = Connect(host, port, SOCK_NONBLOCK);
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, 10000) != 1 || !(p.revents & POLLOUT)) Die("connect poll");
  std::printf("CONNECTED\n");
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  close(fd);
  return 0;
}

void Exchange(int fd, size_t bytes, int conn) {
  std::vector<unsigned char> out(bytes), in(bytes);
  for (size_t i = 0; i < bytes; ++i) out[i] = Pattern(i, conn);
  size_t done = 0;
  for (size_t m = 0; m < kMessages; ++m, done += kMessageSize) {
    SendAll(fd, &out[done], kMessageSize);
    RecvAll(fd, &in[done], kMessageSize);
  }
  // The rest in one call: larger than the peer's buffer, so the send finds
  // it full (the test expects buffer_full events) while the echo is read.
  std::thread reader([&] { RecvAll(fd, &in[done], bytes - done); });
  const ssize_t w = send(fd, &out[done], bytes - done, MSG_NOSIGNAL);
  if (w != static_cast<ssize_t>(bytes - done)) Die("big send");
  reader.join();
  if (in != out) {
    errno = EPROTO;
    Die("echo differs from what was sent");
  }
  shutdown(fd, SHUT_WR);
  char c;
  if (recv(fd, &c, 1, 0) != 0) Die("no EOF after the echo");
}

int Client(int argc, char** argv) {
  const size_t bytes = std::strtoull(argv[2], nullptr, 10);
  if (bytes < kMessages * kMessageSize) {
    errno = EINVAL;
    Die("BYTES below " + std::to_string(kMessages * kMessageSize));
  }
  std::vector<int> fds;
  for (int i = 3; i + 2 < argc; i += 3) {
    for (int k = 0; k < std::atoi(argv[i + 2]); ++k) {
      const int fd = Connect(argv[i], argv[i + 1]);
      Exchange(fd, bytes, static_cast<int>(fds.size()));
      fds.push_back(fd);
    }
  }
  std::printf("DONE\n");
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  for (int fd : fds) close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "serve") == 0) return Serve(false);
  if (argc >= 2 && std::strcmp(argv[1], "hold") == 0) return Serve(true);
  if (argc >= 4 && std::strcmp(argv[1], "idle") == 0)
    return Idle(argv[2], argv[3]);
  if (argc >= 6 && std::strcmp(argv[1], "client") == 0)
    return Client(argc, argv);
  std::fprintf(stderr,
               "usage: status_peer serve | status_peer hold | status_peer "
               "idle HOST PORT | status_peer client BYTES HOST PORT COUNT "
               "[HOST PORT COUNT ...]\n");
  return 2;
}
