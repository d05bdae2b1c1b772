#include "dev/shm_test_util.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "dev/shm_handover.h"

namespace usmc::dev::testing {

Result<UniqueFd> TcpListenLoopback(uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd.get(), 8) != 0) {
    return Status::FromErrno(errno, "bind/listen");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

Result<UniqueFd> TcpConnectLoopback(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return Status::FromErrno(errno, "connect");
  }
  return fd;
}

Result<UniqueFd> TcpAccept(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) return Status::FromErrno(errno, "accept");
  }
}

Status WriteAll(int fd, const void* data, size_t len) {
  auto* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "write");
    p += n;
    len -= static_cast<size_t>(n);
  }
  return OkStatus();
}

Status ReadAll(int fd, void* data, size_t len) {
  auto* p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status(StatusCode::kUnavailable, "EOF");
    if (n < 0) return Status::FromErrno(errno, "read");
    p += n;
    len -= static_cast<size_t>(n);
  }
  return OkStatus();
}

Status WriteU64(int fd, uint64_t v) { return WriteAll(fd, &v, sizeof v); }

Result<uint64_t> ReadU64(int fd) {
  uint64_t v = 0;
  USMC_RETURN_IF_ERROR(ReadAll(fd, &v, sizeof v));
  return v;
}

Result<ShmPair> SetupShmPair(bool server, UniqueFd tcp, uint64_t dmb_size,
                             std::chrono::milliseconds timeout) {
  Result<LocalDmb> local = LocalDmb::Register(dmb_size);
  if (!local.ok()) return local.status();
  std::optional<HandoverListener> listener;
  if (server) {
    // Listen before announcing the token, as after sending CLC Accept.
    Result<HandoverListener> l = HandoverListener::Listen(*local);
    if (!l.ok()) return l.status();
    listener.emplace(std::move(*l));
  }
  USMC_RETURN_IF_ERROR(WriteU64(tcp.get(), local->token()));
  USMC_RETURN_IF_ERROR(WriteU64(tcp.get(), local->size()));
  Result<uint64_t> peer_token = ReadU64(tcp.get());
  if (!peer_token.ok()) return peer_token.status();
  Result<uint64_t> peer_size = ReadU64(tcp.get());
  if (!peer_size.ok()) return peer_size.status();
  HandoverParams p{*peer_token, *peer_size, timeout};
  Result<Handover> h =
      server ? listener->Accept(*local, p) : ConnectHandover(*local, p);
  if (!h.ok()) return h.status();
  return ShmPair{std::move(tcp), std::move(*local), std::move(h->peer)};
}

int CountOpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the directory stream itself
}

int CountMappings(std::string_view what) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) {
    if (line.find(what) != std::string::npos) ++n;
  }
  return n;
}

int WaitChild(pid_t pid) {
  int st = 0;
  for (;;) {
    if (::waitpid(pid, &st, 0) == pid) return st;
    if (errno != EINTR) return -1;
  }
}

void CloseFdsExcept(int keep) {
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

uint64_t Fnv1a(uint64_t h, const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(p[i]);
    h *= 0x100000001b3ULL;
  }
  return h;
}

void ByteStream::Fill(std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (left_ == 0) {
      s_ ^= s_ >> 12;
      s_ ^= s_ << 25;
      s_ ^= s_ >> 27;
      word_ = s_ * 0x2545f4914f6cdd1dULL;
      left_ = 8;
    }
    p[i] = static_cast<std::byte>(word_);
    word_ >>= 8;
    --left_;
  }
}

}  // namespace usmc::dev::testing
