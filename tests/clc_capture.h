// tests/clc_capture.h: loopback TCP sockets and a live tshark capture for
// the CLC interoperability test (clc_tshark_test.cc).
//
// TsharkCapture runs `tshark -i lo -f "tcp port P" -w FILE -P -l`: packets
// go to FILE and a summary line per packet to stdout, which tells the test
// when tshark really captures (a probe connection's SYN shows up) and when
// everything sent has been captured (a final probe shows up).
//
//   TsharkCapture cap;
//   if (!cap.Start(port, "/tmp/x.pcap", &err)) ...
//   cap.WaitForPacket({std::to_string(probe_port), "[SYN]"}, 5000);
//   cap.Stop();
//   std::string json = RunCommand("tshark -r /tmp/x.pcap -T json");
#ifndef USMC_TESTS_CLC_CAPTURE_H_
#define USMC_TESTS_CLC_CAPTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace usmc::testing {

// The output of a shell command (stdout only), or "" if it cannot run.
std::string RunCommand(const std::string& cmd);
bool CommandExists(const std::string& name);

// A socket fd closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Listening socket on 127.0.0.1 with a kernel-chosen free port.
Fd ListenLoopback(uint16_t* port);
// A connected client socket (TCP_NODELAY) and its accepted peer.
bool ConnectPair(int listener, uint16_t port, Fd* client, Fd* server,
                 uint16_t* client_port);
bool WriteAll(int fd, const void* data, size_t n);
bool ReadExact(int fd, void* data, size_t n);

class TsharkCapture {
 public:
  TsharkCapture() = default;
  TsharkCapture(const TsharkCapture&) = delete;
  TsharkCapture& operator=(const TsharkCapture&) = delete;
  ~TsharkCapture() { Stop(); }

  // Starts tshark and waits (up to timeout_ms) for "Capturing on".
  bool Start(uint16_t port, const std::string& pcap, int timeout_ms,
             std::string* err);
  // Waits until one printed packet line contains every needle.
  bool WaitForPacket(const std::vector<std::string>& needles, int timeout_ms);
  // SIGINT, then waits for tshark to write the file and exit.
  void Stop();
  const std::string& stderr_text() const { return err_buf_; }

 private:
  // Reads what is available on stdout/stderr within timeout_ms.
  bool Pump(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_buf_;
  std::string err_buf_;
};

}  // namespace usmc::testing

#endif  // USMC_TESTS_CLC_CAPTURE_H_
