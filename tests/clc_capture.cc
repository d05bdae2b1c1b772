#include "tests/clc_capture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

namespace usmc::testing {

std::string RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool CommandExists(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) close(fd_);
}

Fd ListenLoopback(uint16_t* port) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.ok()) return fd;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(fd.get(), 16) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return Fd();
  }
  *port = ntohs(a.sin_port);
  return fd;
}

bool ConnectPair(int listener, uint16_t port, Fd* client, Fd* server,
                 uint16_t* client_port) {
  Fd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.ok()) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return false;
  }
  Fd s(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!s.ok()) return false;
  int one = 1;
  setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  getsockname(c.get(), reinterpret_cast<sockaddr*>(&local), &len);
  *client_port = ntohs(local.sin_port);
  *client = std::move(c);
  *server = std::move(s);
  return true;
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadExact(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool TsharkCapture::Start(uint16_t port, const std::string& pcap,
                          int timeout_ms, std::string* err) {
  int out[2], errp[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    *err = "pipe failed";
    return false;
  }
  std::string filter = "tcp port " + std::to_string(port);
  pid_ = fork();
  if (pid_ < 0) {
    *err = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(errp[1], STDERR_FILENO);
    execlp("tshark", "tshark", "-i", "lo", "-f", filter.c_str(), "-w",
           pcap.c_str(), "-P", "-l", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  close(errp[1]);
  out_fd_ = out[0];
  err_fd_ = errp[0];
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (err_buf_.find("Capturing on") == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline || !Pump(100)) {
      *err = "tshark did not start capturing: " + err_buf_;
      return false;
    }
  }
  return true;
}

bool TsharkCapture::Pump(int timeout_ms) {
  if (out_fd_ < 0 && err_fd_ < 0) return false;
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (poll(fds, 2, timeout_ms) < 0) return false;
  int* owned[2] = {&out_fd_, &err_fd_};
  std::string* bufs[2] = {&out_buf_, &err_buf_};
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
    char buf[4096];
    ssize_t r = read(fds[i].fd, buf, sizeof(buf));
    if (r > 0) {
      bufs[i]->append(buf, static_cast<size_t>(r));
    } else {
      close(*owned[i]);  // EOF: tshark closed this stream
      *owned[i] = -1;
    }
  }
  return out_fd_ >= 0 || err_fd_ >= 0;
}

bool TsharkCapture::WaitForPacket(const std::vector<std::string>& needles,
                                  int timeout_ms) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t start = 0;
    while (start < out_buf_.size()) {
      size_t end = out_buf_.find('\n', start);
      if (end == std::string::npos) break;
      std::string line = out_buf_.substr(start, end - start);
      bool all = true;
      for (const std::string& n : needles) {
        all = all && line.find(n) != std::string::npos;
      }
      if (all) return true;
      start = end + 1;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (!Pump(100)) return false;
  }
}

void TsharkCapture::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGINT);
    int status = 0;
    // Drain the pipes so tshark never blocks on a full pipe while exiting.
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) break;
      Pump(100);
    }
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
  out_fd_ = err_fd_ = -1;
}

}  // namespace usmc::testing
