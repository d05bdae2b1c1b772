// The program a test execs into (runtime/smc_socket_exec_test.cc): adopts
// the SMC-D socket described by the memfd in USMC_EXEC_STATE, as the
// interposer's constructor will, then carries on with the connection:
// receives the rest of the peer's stream up to EOF, sends its own, closes.
//
//   USMC_EXEC_STATE=5 smc_socket_exec_helper client <local token>
//       <peer token> <sent before> <read before> <to read> <to send> <hops>
//
// hops > 0: after adopting, read kHopRead bytes, export again and exec
// itself with hops - 1 (a chain of execs, as a shell running a shell).
//
// Exit 0 when every byte matched; otherwise a code naming the step.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/smc_socket.h"
#include "runtime/smc_socket_exec_test_util.h"

namespace {

using usmc::runtime::SmcSocket;
namespace t = usmc::runtime::testing;

constexpr uint64_t kHopRead = 10000;

int Fail(int code, const std::string& what) {
  std::fprintf(stderr, "exec helper: %s\n", what.c_str());
  return code;
}

int Run(int argc, char** argv) {
  if (argc != 9) return Fail(2, "usage");
  ::alarm(60);  // a hang fails the test instead of stalling it
  const bool client = std::string_view(argv[1]) == "client";
  const uint64_t local_token = std::strtoull(argv[2], nullptr, 16);
  const uint64_t peer_token = std::strtoull(argv[3], nullptr, 16);
  const uint64_t sent_before = std::strtoull(argv[4], nullptr, 10);
  const uint64_t read_before = std::strtoull(argv[5], nullptr, 10);
  const uint64_t to_read = std::strtoull(argv[6], nullptr, 10);
  const uint64_t to_send = std::strtoull(argv[7], nullptr, 10);
  const int hops = std::atoi(argv[8]);

  const char* env = std::getenv("USMC_EXEC_STATE");
  if (env == nullptr) return Fail(3, "USMC_EXEC_STATE not set");
  const int state_fd = std::atoi(env);
  std::string blob;
  char buf[4096];
  ssize_t n;
  while ((n = ::pread(state_fd, buf, sizeof buf,
                      static_cast<off_t>(blob.size()))) > 0) {
    blob.append(buf, static_cast<size_t>(n));
  }
  ::close(state_fd);

  std::string_view in = blob;
  auto adopted = SmcSocket::AdoptAfterExec(in);
  if (!adopted.ok()) return Fail(4, adopted.status().ToString());
  if (!in.empty()) return Fail(5, "bytes left after the record");
  SmcSocket& s = **adopted;
  if (!s.is_smc()) return Fail(6, "adopted socket is not SMC-D");
  const usmc::runtime::SocketStatus st = s.status();
  if (st.local_dmb_token != local_token || st.peer_dmb_token != peer_token) {
    return Fail(7, "DMB tokens differ from the old image's");
  }
  if (st.engine.counters.bytes_sent != sent_before ||
      st.engine.counters.bytes_received != read_before) {
    return Fail(8, "engine counters did not move with the socket");
  }

  const uint64_t own = client ? t::kClientSeed : t::kServerSeed;
  const uint64_t peer = client ? t::kServerSeed : t::kClientSeed;
  if (hops > 0) {
    if (int r = t::RecvStream(s, peer, read_before, kHopRead); r != 0) {
      return Fail(13, "receiving before the next exec: " + std::to_string(r));
    }
    std::string again;
    if (usmc::Status e = s.ExportForExec(again); !e.ok()) {
      return Fail(14, "export again: " + e.ToString());
    }
    const int mfd = ::memfd_create("usmc-exec-state", 0);
    if (mfd < 0 || ::write(mfd, again.data(), again.size()) !=
                       static_cast<ssize_t>(again.size())) {
      return Fail(15, "state memfd");
    }
    ::setenv("USMC_EXEC_STATE", std::to_string(mfd).c_str(), 1);
    const std::string read = std::to_string(read_before + kHopRead);
    const std::string left = std::to_string(to_read - kHopRead);
    const std::string next = std::to_string(hops - 1);
    ::execl("/proc/self/exe", argv[0], argv[1], argv[2], argv[3], argv[4],
            read.c_str(), left.c_str(), argv[7], next.c_str(),
            static_cast<char*>(nullptr));
    return Fail(16, "exec again");
  }
  if (int r = t::RecvStream(s, peer, read_before, to_read); r != 0) {
    return Fail(9, "receiving the peer's stream: " + std::to_string(r));
  }
  char c;
  if (s.Recv(&c, 1, 0) != 0) return Fail(10, "no EOF after the stream");
  if (int r = t::SendStream(s, own, sent_before, to_send); r != 0) {
    return Fail(11, "sending: " + std::to_string(r));
  }
  if (s.Close() != 0) return Fail(12, "close");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
