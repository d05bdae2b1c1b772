// The reader side of the status files (runtime/publish.h): validates a
// file, checks that its process is alive, copies records and counters
// without ever waiting for the writer.
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/publish.h"
#include "runtime/publish_layout.h"

namespace usmc::runtime {

using publish_internal::A64;
using publish_internal::FileLayout;
using publish_internal::Slot;

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;

uint64_t Load(const A64& v) { return v.load(kRelaxed); }

void SumInto(uint64_t (&dst)[kHistBuckets], const A64 (&src)[kHistBuckets]) {
  for (int b = 0; b < kHistBuckets; ++b) dst[b] += Load(src[b]);
}

uint64_t Sum(const uint64_t (&h)[kHistBuckets]) {
  uint64_t n = 0;
  for (uint64_t v : h) n += v;
  return n;
}
}  // namespace

ProcessCounters publish_internal::Collect(const FileLayout& f,
                                          std::vector<ConnRecord>* conns,
                                          std::vector<ConnRecord>* lgrs) {
  const SharedCounters& c = f.h.c;
  ProcessCounters p;
  for (int role = 0; role < 2; ++role) {
    for (int v = 0; v < 2; ++v) p.smc_ok[role][v] = Load(c.smc_ok[role][v]);
    p.fallbacks[role] = Load(c.fallbacks[role]);
    p.handshake_errors[role] = Load(c.handshake_errors[role]);
    for (const FallbackEntry& e : c.fallback[role]) {
      const uint32_t reason = e.reason.load(std::memory_order_acquire);
      const uint64_t n = Load(e.count);
      if (reason != 0 && n != 0)
        p.fallback_reasons[role].push_back(
            {reason == 0xffffffffu ? 0 : reason, n});
    }
    std::stable_sort(p.fallback_reasons[role].begin(),
                     p.fallback_reasons[role].end(),
                     [](const FallbackCount& a, const FallbackCount& b) {
                       return a.count > b.count;
                     });
  }
  p.fallback_overflow = Load(c.fallback_overflow);
  p.slot_overflow = Load(c.slot_overflow);
  p.bytes_smc_in = Load(c.bytes_smc_in);
  p.bytes_smc_out = Load(c.bytes_smc_out);
  p.bytes_tcp_in = Load(c.bytes_tcp_in);
  p.bytes_tcp_out = Load(c.bytes_tcp_out);
  p.tx_buffer_full = Load(c.tx_buffer_full);
  SumInto(p.rx_buf_hist, c.rx_buf_hist);
  SumInto(p.tx_buf_hist, c.tx_buf_hist);
  SumInto(p.rx_payload_hist, c.rx_payload_hist);
  SumInto(p.tx_payload_hist, c.tx_payload_hist);

  const uint32_t hw =
      std::min(f.h.high_water.load(std::memory_order_acquire), kStatusSlots);
  for (uint32_t i = 0; i < hw; ++i) {
    const Slot& s = f.slots[i];
    if (s.in_use.load(std::memory_order_acquire) == 0) continue;
    ConnRecord r;
    if (!publish_internal::ReadRecord(s, r) || r.pid == 0) continue;
    if (r.kind == RecordKind::kLinkGroup) {
      if (lgrs != nullptr) lgrs->push_back(r);
      continue;
    }
    r.bytes_smc_in = Load(s.bytes_smc_in);
    r.bytes_smc_out = Load(s.bytes_smc_out);
    r.bytes_in = r.bytes_smc_in + Load(s.bytes_tcp_in);
    r.bytes_out = r.bytes_smc_out + Load(s.bytes_tcp_out);
    p.bytes_smc_in += r.bytes_smc_in;
    p.bytes_smc_out += r.bytes_smc_out;
    p.bytes_tcp_in += r.bytes_in - r.bytes_smc_in;
    p.bytes_tcp_out += r.bytes_out - r.bytes_smc_out;
    p.tx_buffer_full += r.buffer_full;
    SumInto(p.rx_payload_hist, s.rx_payload_hist);
    SumInto(p.tx_payload_hist, s.tx_payload_hist);
    if (conns != nullptr) conns->push_back(r);
  }
  p.rx_calls = Sum(p.rx_payload_hist);
  p.tx_calls = Sum(p.tx_payload_hist);
  return p;
}

ProcessCounters StatusPublisher::counters() const {
  return publish_internal::Collect(*f_, nullptr, nullptr);
}

ProcessCounters& ProcessCounters::operator+=(const ProcessCounters& o) {
  for (int role = 0; role < 2; ++role) {
    for (int v = 0; v < 2; ++v) smc_ok[role][v] += o.smc_ok[role][v];
    fallbacks[role] += o.fallbacks[role];
    handshake_errors[role] += o.handshake_errors[role];
    for (const FallbackCount& f : o.fallback_reasons[role]) {
      auto it = std::find_if(
          fallback_reasons[role].begin(), fallback_reasons[role].end(),
          [&](const FallbackCount& e) { return e.reason == f.reason; });
      if (it == fallback_reasons[role].end())
        fallback_reasons[role].push_back(f);
      else
        it->count += f.count;
    }
    std::stable_sort(fallback_reasons[role].begin(),
                     fallback_reasons[role].end(),
                     [](const FallbackCount& a, const FallbackCount& b) {
                       return a.count > b.count;
                     });
  }
  fallback_overflow += o.fallback_overflow;
  bytes_smc_in += o.bytes_smc_in;
  bytes_smc_out += o.bytes_smc_out;
  bytes_tcp_in += o.bytes_tcp_in;
  bytes_tcp_out += o.bytes_tcp_out;
  rx_calls += o.rx_calls;
  tx_calls += o.tx_calls;
  rx_buffer_full += o.rx_buffer_full;
  tx_buffer_full += o.tx_buffer_full;
  for (int b = 0; b < kHistBuckets; ++b) {
    rx_buf_hist[b] += o.rx_buf_hist[b];
    tx_buf_hist[b] += o.tx_buf_hist[b];
    rx_payload_hist[b] += o.rx_payload_hist[b];
    tx_payload_hist[b] += o.tx_payload_hist[b];
  }
  slot_overflow += o.slot_overflow;
  return *this;
}

ProcessCounters ProcessCounters::Minus(const ProcessCounters& base) const {
  auto sub = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  ProcessCounters d = *this;
  for (int role = 0; role < 2; ++role) {
    for (int v = 0; v < 2; ++v)
      d.smc_ok[role][v] = sub(smc_ok[role][v], base.smc_ok[role][v]);
    d.fallbacks[role] = sub(fallbacks[role], base.fallbacks[role]);
    d.handshake_errors[role] =
        sub(handshake_errors[role], base.handshake_errors[role]);
    std::vector<FallbackCount> kept;
    for (FallbackCount f : fallback_reasons[role]) {
      for (const FallbackCount& b : base.fallback_reasons[role])
        if (b.reason == f.reason) f.count = sub(f.count, b.count);
      if (f.count != 0) kept.push_back(f);
    }
    d.fallback_reasons[role] = std::move(kept);
  }
  d.fallback_overflow = sub(fallback_overflow, base.fallback_overflow);
  d.bytes_smc_in = sub(bytes_smc_in, base.bytes_smc_in);
  d.bytes_smc_out = sub(bytes_smc_out, base.bytes_smc_out);
  d.bytes_tcp_in = sub(bytes_tcp_in, base.bytes_tcp_in);
  d.bytes_tcp_out = sub(bytes_tcp_out, base.bytes_tcp_out);
  d.rx_calls = sub(rx_calls, base.rx_calls);
  d.tx_calls = sub(tx_calls, base.tx_calls);
  d.rx_buffer_full = sub(rx_buffer_full, base.rx_buffer_full);
  d.tx_buffer_full = sub(tx_buffer_full, base.tx_buffer_full);
  for (int b = 0; b < kHistBuckets; ++b) {
    d.rx_buf_hist[b] = sub(rx_buf_hist[b], base.rx_buf_hist[b]);
    d.tx_buf_hist[b] = sub(tx_buf_hist[b], base.tx_buf_hist[b]);
    d.rx_payload_hist[b] = sub(rx_payload_hist[b], base.rx_payload_hist[b]);
    d.tx_payload_hist[b] = sub(tx_payload_hist[b], base.tx_payload_hist[b]);
  }
  d.slot_overflow = sub(slot_overflow, base.slot_overflow);
  return d;
}

// ---- liveness ----

namespace {
// True unless we can see that `pid` does not map the file (dev, ino): the
// process exec'd a program that does not run usmc. Unreadable maps (another
// user's process, hidepid) count as "maps it".
bool MapsFile(pid_t pid, dev_t dev, ino_t ino) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  if (!in) return true;
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    any = true;
    // start-end perms offset MAJ:MIN inode path
    std::istringstream f(line);
    std::string range, perms, offset, devs;
    unsigned long long inode = 0;
    if (!(f >> range >> perms >> offset >> devs >> inode)) continue;
    if (inode != ino) continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(devs.c_str(), "%x:%x", &maj, &min) == 2 &&
        makedev(maj, min) == dev)
      return true;
  }
  return !any;  // an empty read (permission) proves nothing
}

// An exited process that its parent has not reaped yet: its fds are
// closed and its mappings gone, so its connections no longer exist.
bool IsZombie(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() &&
         (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

bool MayRemove(const struct stat& st) {
  return geteuid() == 0 || st.st_uid == geteuid();
}

Status Stale(const std::string& path, const struct stat& st,
             const ReadOptions& opts, const std::string& why) {
  if (opts.remove_stale && MayRemove(st)) unlink(path.c_str());
  return Status(StatusCode::kNotFound, path + ": stale (" + why + ")");
}

// The file's name carries its creator's pid and start time
// (PID-START[-N].usmc): whether that process is gone, read without trusting
// the file's own layout.
bool CreatorGone(const std::string& path) {
  const std::string base = path.substr(path.rfind('/') + 1);
  unsigned long long start = 0;
  int pid = 0;
  return std::sscanf(base.c_str(), "%d-%llu", &pid, &start) == 2 &&
         ProcessStartTime(pid) != start;
}

struct Mapping {
  void* p = MAP_FAILED;
  ~Mapping() {
    if (p != MAP_FAILED) munmap(p, sizeof(FileLayout));
  }
};
}  // namespace

Result<ProcessStatus> ReadStatusFile(const std::string& path,
                                     const ReadOptions& opts) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  struct stat st;
  const bool stat_ok = fstat(fd, &st) == 0;
  // The magic and version lead every version's header: read them first so
  // that a file of another usmc version is named as such (its size and
  // layout differ; nothing else of it is read).
  uint32_t lead[2] = {};
  if (stat_ok && S_ISREG(st.st_mode) &&
      pread(fd, lead, sizeof(lead), 0) == static_cast<ssize_t>(sizeof(lead)) &&
      lead[0] == kStatusMagic && lead[1] != kStatusVersion) {
    close(fd);
    // A dead process's file is stale whatever its version: after an
    // upgrade, the old usmc's leftovers are not a problem to report.
    if (CreatorGone(path)) return Stale(path, st, opts, "creator gone");
    return Status(StatusCode::kFailedPrecondition,
                  path + ": written by a usmc with status format version " +
                      std::to_string(lead[1]) + ", this usmc reads version " +
                      std::to_string(kStatusVersion) +
                      "; use the usmc that runs the process");
  }
  Mapping m;
  if (stat_ok && S_ISREG(st.st_mode) &&
      static_cast<size_t>(st.st_size) == sizeof(FileLayout))
    m.p = mmap(nullptr, sizeof(FileLayout), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (m.p == MAP_FAILED)
    return Status(StatusCode::kInvalidArgument,
                  path + ": not a usmc status file of this version");
  const FileLayout& f = *static_cast<const FileLayout*>(m.p);
  if (f.h.ready.load(std::memory_order_acquire) != 1) {
    // Still being created, or its creator died right away.
    if (CreatorGone(path)) return Stale(path, st, opts, "creator gone");
    return Status(StatusCode::kUnavailable, path + ": not ready");
  }
  if (f.h.magic != kStatusMagic || f.h.version != kStatusVersion ||
      f.h.header_size != sizeof(publish_internal::Header) ||
      f.h.slot_size != sizeof(Slot) || f.h.slot_count != kStatusSlots)
    return Status(StatusCode::kInvalidArgument,
                  path + ": not a usmc status file of this version");
  const uint64_t start = ProcessStartTime(f.h.pid);
  if (start == 0) return Stale(path, st, opts, "process gone");
  if (start != f.h.start_time)
    return Stale(path, st, opts, "pid reused by another process");
  if (IsZombie(f.h.pid))
    return Stale(path, st, opts, "process exited, not yet reaped");
  if (!MapsFile(f.h.pid, st.st_dev, st.st_ino))
    return Stale(path, st, opts, "process no longer maps it (exec)");
  ProcessStatus ps;
  ps.pid = f.h.pid;
  ps.start_time = f.h.start_time;
  ps.uid = f.h.uid;
  ps.comm.assign(f.h.comm, strnlen(f.h.comm, sizeof(f.h.comm)));
  ps.path = path;
  ps.counters = publish_internal::Collect(f, &ps.connections, &ps.link_groups);
  return ps;
}

std::vector<ProcessStatus> ReadAllStatus(const std::string& dir,
                                         const ReadOptions& opts) {
  std::vector<ProcessStatus> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 6 || name.compare(name.size() - 5, 5, ".usmc") != 0)
      continue;
    Result<ProcessStatus> r = ReadStatusFile(dir + "/" + name, opts);
    if (r.ok())
      out.push_back(std::move(r).value());
    else if (opts.problems != nullptr &&
             r.status().code() == StatusCode::kFailedPrecondition)
      opts.problems->push_back(std::string(r.status().message()));
  }
  closedir(d);
  std::sort(out.begin(), out.end(),
            [](const ProcessStatus& a, const ProcessStatus& b) {
              return a.pid != b.pid ? a.pid < b.pid : a.path < b.path;
            });
  return out;
}

std::vector<std::string> StatusDirsToRead() {
  std::vector<std::string> dirs{StatusDir()};
  const char* env = std::getenv("USMC_STATUS_DIR");
  if ((env != nullptr && *env) || geteuid() != 0) return dirs;
  for (const char* pattern : {"/run/user/*/usmc-*", "/tmp/usmc-*"}) {
    glob_t g{};
    if (glob(pattern, GLOB_ONLYDIR, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) dirs.push_back(g.gl_pathv[i]);
    globfree(&g);
  }
  return dirs;
}

}  // namespace usmc::runtime
