// The writer side of the status file (runtime/publish.h): directory, file
// creation, slots, seqlock writes, counters; and RecordFrom().
#include "runtime/publish.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <new>
#include <sstream>

#include "base/owned_fd.h"
#include "base/sandbox.h"
#include "runtime/config.h"
#include "runtime/publish_layout.h"
#include "runtime/smc_socket.h"

namespace usmc::runtime {

using publish_internal::A32;
using publish_internal::A64;
using publish_internal::FileLayout;
using publish_internal::kRecordWords;
using publish_internal::Slot;

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

int HistBucket(uint64_t size) {
  if (size <= 8192) return 0;
  return std::min<int>(kHistBuckets - 1, std::bit_width((size - 1) >> 13));
}

std::string_view HistLabel(int bucket) {
  static constexpr std::string_view kLabels[kHistBuckets] = {
      "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1024K", ">1024K"};
  return bucket >= 0 && bucket < kHistBuckets ? kLabels[bucket] : "?";
}

std::string_view ToString(ConnMode m) {
  switch (m) {
    case ConnMode::kHandshake:
      return "HANDSHAKE";
    case ConnMode::kSmcd:
      return "SMCD";
    case ConnMode::kSmcr:
      return "SMCR";
    case ConnMode::kTcp:
      return "TCP";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, ConnMode m) {
  return os << ToString(m);
}

ConnMode ToConnMode(engine::Mode m, engine::Technology t) {
  switch (m) {
    case engine::Mode::kSmc:
      return t == engine::Technology::kSmcr ? ConnMode::kSmcr : ConnMode::kSmcd;
    case engine::Mode::kTcp:
      return ConnMode::kTcp;
    case engine::Mode::kHandshake:
    case engine::Mode::kFailed:
      break;
  }
  return ConnMode::kHandshake;
}

void SetState(ConnRecord& r, std::string_view state) {
  const size_t n = std::min(state.size(), sizeof(r.state) - 1);
  std::memcpy(r.state, state.data(), n);
  std::memset(r.state + n, 0, sizeof(r.state) - n);
}

void FillFromFd(ConnRecord& r, int fd) {
  r.pid = static_cast<int32_t>(getpid());
  FillFromFdKnown(r, fd, nullptr, 0);
}

void FillFromFdKnown(ConnRecord& r, int fd, const sockaddr* peer,
                     socklen_t peer_len) {
  r.fd = fd;
  socklen_t len = sizeof(r.local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&r.local), &len) != 0)
    r.local.ss_family = AF_UNSPEC;
  if (peer != nullptr && peer_len <= sizeof(r.peer)) {
    r.peer = sockaddr_storage{};
    std::memcpy(&r.peer, peer, peer_len);
  } else {
    len = sizeof(r.peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&r.peer), &len) != 0)
      r.peer.ss_family = AF_UNSPEC;
  }
  struct stat st;
  if (fstat(fd, &st) == 0) {
    r.inode = st.st_ino;
    r.uid = st.st_uid;  // the socket inode belongs to its creator
  } else {
    r.uid = geteuid();
  }
}

ConnRecord ListenRecord(int fd) {
  ConnRecord r;
  SetState(r, "LISTEN");
  // What it offers: every connection it accepts from a usmc peer is SMC-D.
  r.mode = ConnMode::kSmcd;
  r.role = engine::Role::kServer;
  FillFromFd(r, fd);
  return r;
}

namespace {
CursorValue ToCursor(wire::Cursor c) { return {c.wrap, c.count}; }
}  // namespace

ConnRecord RecordFrom(const SocketStatus& s, int fd) {
  ConnRecord r;
  const engine::ConnectionStats& e = s.engine;
  r.mode = ToConnMode(e.mode, e.technology);
  r.role = e.role;
  if (e.mode == engine::Mode::kFailed)
    SetState(r, "FAILED");
  else if (e.mode == engine::Mode::kHandshake)
    SetState(r, e.handshake_state);
  else
    SetState(r, engine::ToString(e.close_state));
  r.local_reason = e.local_reason;
  r.peer_reason = e.peer_reason;
  r.error = e.error;
  r.dmb_size = e.local_dmb_size;
  r.peer_dmb_size = e.peer_dmb_size;
  r.dmb_token = s.local_dmb_token;
  r.peer_dmb_token = s.peer_dmb_token;
  r.tx_producer = ToCursor(e.tx_producer);
  r.peer_consumer = ToCursor(e.peer_consumer);
  r.rx_consumer = ToCursor(e.rx_consumer);
  r.peer_producer = ToCursor(e.peer_producer);
  r.wakeups_sent = s.peer_doorbell.wakeups_sent;
  r.wakeups_received = s.doorbell.wakeups_received;
  r.buffer_full = e.counters.buffer_full;
  r.cdc_sent = e.counters.cdc_published;
  r.cdc_received = e.counters.cdc_received;
  if (r.mode == ConnMode::kSmcr) r.smcr = s.smcr;
  // fd -1: the caller fills identity and addresses from its own cache (the
  // interposer republishes now and then on the data path: four system calls
  // that fail on -1 cost Redis at -P 16 a fifth of its throughput).
  if (fd >= 0) {
    FillFromFd(r, fd);
  } else {
    r.fd = -1;
  }
  return r;
}

// ---- directory and process identity ----

std::string StatusDir() {
  if (const char* d = std::getenv("USMC_STATUS_DIR"); d != nullptr && *d)
    return d;
  if (geteuid() == 0) return "/run/usmc";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  std::string base = (xdg != nullptr && *xdg) ? xdg : "/tmp";
  return base + "/usmc-" + std::to_string(geteuid());
}

namespace {
Status CheckStatusDirStat(const std::string& dir, const struct stat& st,
                          bool as_owner) {
  if (!S_ISDIR(st.st_mode))
    return Status(StatusCode::kFailedPrecondition,
                  "status directory " + dir + " is not a directory");
  if (as_owner && st.st_uid != geteuid())
    return Status(StatusCode::kPermissionDenied,
                  "status directory " + dir + " belongs to uid " +
                      std::to_string(st.st_uid) + ", not to uid " +
                      std::to_string(geteuid()) +
                      "; set USMC_STATUS_DIR to a directory of your own");
  if ((st.st_mode & 022) != 0)
    return Status(StatusCode::kPermissionDenied,
                  "status directory " + dir +
                      " is writable by group or others; chmod 700 it");
  return OkStatus();
}
}  // namespace

Status EnsureStatusDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "mkdir " + dir);
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0)
    return Status::FromErrno(errno, "lstat " + dir);
  return CheckStatusDirStat(dir, st, /*as_owner=*/true);
}

Status StatusDirProblem(const std::string& dir, bool as_owner) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return OkStatus();  // made when needed
  return CheckStatusDirStat(dir, st, as_owner);
}

uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // comm (field 2) may hold spaces and ')': fields restart after the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return 0;
  return std::strtoull(field.c_str(), nullptr, 10);
}

namespace {
std::string OwnComm() {
  std::ifstream in("/proc/self/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// Record words: relaxed atomic accesses, so that the seqlock's racing copy
// is not a data race in the C++ sense (the seq checks decide validity).
//
// Writers take `seq` from even to odd with a CAS: two threads of the app may
// update one connection at once (a send and a recv thread), and two plain
// stores could leave `seq` odd for good (the slot then unreadable) or let a
// reader accept a mix. A writer that finds it odd waits for the other
// writer's ~250 ns; readers never make a writer wait. It gives up (this
// update is lost, the record stays whole) if the other writer never
// finishes: a signal handler that closes a socket while its own thread was
// interrupted inside an update of it.
void StoreRecord(Slot& s, const ConnRecord& r) {
  constexpr int kSpins = 64, kYields = 1000;
  uint64_t src[kRecordWords];
  std::memcpy(src, &r, sizeof(r));
  uint32_t seq = s.seq.load(kRelaxed);
  for (int spins = 0;; ++spins) {
    if (spins == kSpins + kYields) return;
    if ((seq & 1u) == 0 &&
        s.seq.compare_exchange_weak(seq, seq + 1, std::memory_order_acquire,
                                    kRelaxed))
      break;
    if (spins >= kSpins) sched_yield();  // the other writer may be preempted
    seq = s.seq.load(kRelaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
  for (size_t i = 0; i < kRecordWords; ++i)
    __atomic_store_n(&s.words[i], src[i], __ATOMIC_RELAXED);
  s.seq.store(seq + 2, std::memory_order_release);
}

void ZeroSlotCounters(Slot& s) {
  s.bytes_smc_in.store(0, kRelaxed);
  s.bytes_smc_out.store(0, kRelaxed);
  s.bytes_tcp_in.store(0, kRelaxed);
  s.bytes_tcp_out.store(0, kRelaxed);
  for (int b = 0; b < kHistBuckets; ++b) {
    s.rx_payload_hist[b].store(0, kRelaxed);
    s.tx_payload_hist[b].store(0, kRelaxed);
  }
}

void Add(A64& c, uint64_t n) { c.fetch_add(n, kRelaxed); }

int RoleIndex(engine::Role r) { return r == engine::Role::kServer ? 1 : 0; }

std::mutex g_process_mu;
std::atomic<StatusPublisher*> g_process{nullptr};
bool g_process_failed = false;  // under g_process_mu
// Set with g_process_failed: the data path's check without the mutex.
std::atomic<bool> g_process_none{false};

// USMC_STATUS=off (or 0): publish nothing (to measure what publishing
// costs; `usmc ss` and `usmc stats` then do not see this process).
bool StatusOff() {
  const char* v = std::getenv("USMC_STATUS");
  return v != nullptr &&
         (std::strcmp(v, "off") == 0 || std::strcmp(v, "0") == 0);
}
Status* g_process_error = nullptr;
std::atomic<int> g_file_seq{0};

void UnlinkAtExit() {
  StatusPublisher* p = g_process.load(std::memory_order_acquire);
  // Not deleted: other threads may still publish while the process exits.
  // In a seccomp sandbox unlink may kill the process: the file stays, as
  // after a crash (readers skip a dead pid's file).
  if (p != nullptr && !base::SyscallFilterActive()) unlink(p->path().c_str());
}

void AfterForkInChild() {
  // The parent's file stays the parent's: the child creates its own on its
  // next Process() call. The old mapping is left alone (stale pointers into
  // it stay valid memory); the child must not write to it.
  // Kept reachable (leak checkers), never freed: see above.
  [[maybe_unused]] static StatusPublisher* inherited[8];
  static int n_inherited = 0;
  inherited[n_inherited++ % 8] = g_process.load(std::memory_order_relaxed);
  g_process.store(nullptr, std::memory_order_relaxed);
  g_process_failed = false;
  g_process_none.store(false, std::memory_order_relaxed);
  new (&g_process_mu) std::mutex();  // a thread of the parent may have held it
}
}  // namespace

bool publish_internal::ReadRecord(const Slot& s, ConnRecord& out) {
  uint64_t dst[kRecordWords];
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const uint32_t s1 = s.seq.load(std::memory_order_acquire);
    if (s1 & 1u) continue;
    for (size_t i = 0; i < kRecordWords; ++i)
      dst[i] = __atomic_load_n(&s.words[i], __ATOMIC_RELAXED);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.seq.load(kRelaxed) == s1) {
      std::memcpy(&out, dst, sizeof(out));
      return true;
    }
  }
  return false;
}

// ---- StatusPublisher ----

StatusPublisher::StatusPublisher(std::string path, int fd, FileLayout* f)
    : path_(std::move(path)), fd_(fd), owner_pid_(getpid()), f_(f) {}

StatusPublisher::~StatusPublisher() {
  // In a seccomp sandbox unlink may kill the process: the file stays, as
  // after a crash (readers skip a dead pid's file).
  if (getpid() == owner_pid_ && !base::SyscallFilterActive()) {
    unlink(path_.c_str());
  }
  munmap(f_, sizeof(FileLayout));
  base::CloseOwnedFd(fd_);
}

Result<StatusPublisher*> StatusPublisher::Create(const std::string& dir) {
  USMC_RETURN_IF_ERROR(EnsureStatusDir(dir));
  const pid_t pid = getpid();
  const uint64_t start = ProcessStartTime(pid);
  const int n = g_file_seq.fetch_add(1);
  // Appended piece by piece: gcc 12 -O3 reports a false -Wrestrict in
  // `"-" + std::to_string(n)` (literal + temporary string, GCC bug 105651).
  std::string path =
      dir + "/" + std::to_string(pid) + "-" + std::to_string(start);
  if (n != 0) {
    path += '-';
    path += std::to_string(n);
  }
  path += ".usmc";
  const int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
  int fd = open(path.c_str(), flags, 0600);
  if (fd < 0 && errno == EEXIST) {
    // Same pid and start time: an earlier image of this very process
    // (exec skips atexit). Its content is dead.
    unlink(path.c_str());
    fd = open(path.c_str(), flags, 0600);
  }
  if (fd < 0) return Status::FromErrno(errno, "create " + path);
  auto fail = [&](const char* what) {
    Status s = Status::FromErrno(errno, std::string(what) + " " + path);
    unlink(path.c_str());
    close(fd);
    return s;
  };
  if (fchmod(fd, 0600) != 0) return fail("fchmod");
  if (ftruncate(fd, sizeof(FileLayout)) != 0) return fail("ftruncate");
  void* m = mmap(nullptr, sizeof(FileLayout), PROT_READ | PROT_WRITE,
                 MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return fail("mmap");
  // The new file is all zeroes: every atomic starts at 0 and the layout
  // is implicit-lifetime plain data, so no constructor has to run.
  auto* f = static_cast<FileLayout*>(m);
  f->h.magic = kStatusMagic;
  f->h.version = kStatusVersion;
  f->h.header_size = sizeof(publish_internal::Header);
  f->h.slot_size = sizeof(Slot);
  f->h.slot_count = kStatusSlots;
  f->h.uid = geteuid();
  f->h.pid = static_cast<int32_t>(pid);
  f->h.start_time = start;
  const std::string comm = OwnComm();
  std::memcpy(f->h.comm, comm.data(),
              std::min(comm.size(), sizeof(f->h.comm) - 1));
  f->h.ready.store(1, std::memory_order_release);
  // Marked as ours: an app closing every fd it does not know (before exec)
  // leaves it, and our close never hits an fd of the app's.
  return new StatusPublisher(std::move(path), base::OwnFd(fd), f);
}

StatusPublisher* StatusPublisher::Process() {
  StatusPublisher* p = g_process.load(std::memory_order_acquire);
  if (p != nullptr) return p;
  if (g_process_none.load(std::memory_order_relaxed)) return nullptr;
  std::lock_guard<std::mutex> lock(g_process_mu);
  p = g_process.load(std::memory_order_acquire);
  if (p != nullptr || g_process_failed) return p;
  static const bool off = StatusOff();
  if (off) {
    g_process_failed = true;
    g_process_none.store(true, std::memory_order_relaxed);
    return nullptr;
  }
  static const bool hooks = [] {
    pthread_atfork(nullptr, nullptr, AfterForkInChild);
    std::atexit(UnlinkAtExit);
    return true;
  }();
  (void)hooks;
  Result<StatusPublisher*> r = Create(StatusDir());
  if (!r.ok()) {
    g_process_failed = true;
    g_process_none.store(true, std::memory_order_relaxed);
    delete g_process_error;
    g_process_error = new Status(r.status());
    return nullptr;
  }
  g_process.store(*r, std::memory_order_release);
  return *r;
}

void SayStatusDirProblemOnce() {
  if (StatusOff()) return;
  const Status s = StatusDirProblem(StatusDir(), /*as_owner=*/true);
  if (!s.ok())
    SayOnce(std::string(s.message()) +
            "; `usmc ss` does not show this process's connections");
}

Status StatusPublisher::ProcessError() {
  std::lock_guard<std::mutex> lock(g_process_mu);
  return g_process_error != nullptr ? *g_process_error : OkStatus();
}

SlotId StatusPublisher::Acquire() {
  publish_internal::Header& h = f_->h;
  const uint32_t start = h.next_hint.load(kRelaxed) % kStatusSlots;
  for (uint32_t k = 0; k < kStatusSlots; ++k) {
    const uint32_t i = (start + k) % kStatusSlots;
    Slot& s = f_->slots[i];
    uint32_t expected = 0;
    if (s.in_use.load(kRelaxed) != 0 ||
        !s.in_use.compare_exchange_strong(expected, 1,
                                          std::memory_order_acq_rel))
      continue;
    h.next_hint.store(i + 1, kRelaxed);
    ZeroSlotCounters(s);
    ConnRecord blank;
    blank.pid = h.pid;
    SetState(blank, "INIT");
    StoreRecord(s, blank);
    // Readers scan [0, high_water): raise it before anyone can see the slot.
    uint32_t hw = h.high_water.load(kRelaxed);
    while (hw < i + 1 && !h.high_water.compare_exchange_weak(
                             hw, i + 1, std::memory_order_release)) {
    }
    h.in_use.fetch_add(1, kRelaxed);
    return static_cast<SlotId>(i);
  }
  Add(h.c.slot_overflow, 1);
  return kNoSlot;
}

void StatusPublisher::Update(SlotId id, const ConnRecord& r) {
  if (id < 0 || id >= static_cast<SlotId>(kStatusSlots)) return;
  ConnRecord copy = r;
  copy.bytes_in = copy.bytes_out = 0;  // owned by AddBytes
  copy.bytes_smc_in = copy.bytes_smc_out = 0;
  if (copy.pid == 0) copy.pid = f_->h.pid;
  StoreRecord(f_->slots[id], copy);
}

StatusSink StatusPublisher::AsSink() {
  return {[this] { return Acquire(); },
          [this](SlotId id, const ConnRecord& r) { Update(id, r); },
          [this](SlotId id) { Release(id); }};
}

void StatusPublisher::AddBytes(SlotId id, uint64_t in, uint64_t out, bool smc) {
  if (id < 0 || id >= static_cast<SlotId>(kStatusSlots)) return;
  Slot& s = f_->slots[id];
  // Load + store, not fetch_add: a locked add costs ~25 ns on the machines
  // we measured, a plain relaxed store ~1 ns, and one direction of one
  // connection has one writer at a time (see publish.h).
  auto bump = [](A64& c, uint64_t n) {
    c.store(c.load(kRelaxed) + n, kRelaxed);
  };
  if (in != 0) {
    bump(smc ? s.bytes_smc_in : s.bytes_tcp_in, in);
    if (smc) bump(s.rx_payload_hist[HistBucket(in)], 1);
  }
  if (out != 0) {
    bump(smc ? s.bytes_smc_out : s.bytes_tcp_out, out);
    if (smc) bump(s.tx_payload_hist[HistBucket(out)], 1);
  }
}

std::pair<std::atomic<uint64_t>*, std::atomic<uint64_t>*>
StatusPublisher::TcpByteCounters(SlotId id) {
  if (id < 0 || id >= static_cast<SlotId>(kStatusSlots)) return {};
  Slot& s = f_->slots[id];
  return {&s.bytes_tcp_in, &s.bytes_tcp_out};
}

void StatusPublisher::Release(SlotId id) {
  if (id < 0 || id >= static_cast<SlotId>(kStatusSlots)) return;
  Slot& s = f_->slots[id];
  publish_internal::SharedCounters& c = f_->h.c;
  ConnRecord last;
  if (publish_internal::ReadRecord(s, last))
    Add(c.tx_buffer_full, last.buffer_full);
  StoreRecord(s, ConnRecord{});  // pid 0: readers skip the slot
  Add(c.bytes_smc_in, s.bytes_smc_in.exchange(0, kRelaxed));
  Add(c.bytes_smc_out, s.bytes_smc_out.exchange(0, kRelaxed));
  Add(c.bytes_tcp_in, s.bytes_tcp_in.exchange(0, kRelaxed));
  Add(c.bytes_tcp_out, s.bytes_tcp_out.exchange(0, kRelaxed));
  for (int b = 0; b < kHistBuckets; ++b) {
    Add(c.rx_payload_hist[b], s.rx_payload_hist[b].exchange(0, kRelaxed));
    Add(c.tx_payload_hist[b], s.tx_payload_hist[b].exchange(0, kRelaxed));
  }
  f_->h.in_use.fetch_sub(1, kRelaxed);
  s.in_use.store(0, std::memory_order_release);
  // Reuse low slots first, so readers scan a short prefix. A racy hint is
  // harmless: Acquire wraps around the whole array anyway.
  if (static_cast<uint32_t>(id) < f_->h.next_hint.load(kRelaxed))
    f_->h.next_hint.store(static_cast<uint32_t>(id), kRelaxed);
}

void StatusPublisher::CountFallback(FileLayout* f, int role, uint32_t reason) {
  publish_internal::SharedCounters& c = f->h.c;
  Add(c.fallbacks[role], 1);
  if (reason == 0) reason = 0xffffffffu;  // 0 marks a free entry
  for (publish_internal::FallbackEntry& e : c.fallback[role]) {
    uint32_t r = e.reason.load(std::memory_order_acquire);
    if (r == 0 &&
        e.reason.compare_exchange_strong(r, reason, std::memory_order_acq_rel))
      r = reason;
    if (r == reason) {
      Add(e.count, 1);
      return;
    }
  }
  Add(c.fallback_overflow, 1);
}

void StatusPublisher::CountHandshake(const ConnRecord& r, int smc_version) {
  publish_internal::SharedCounters& c = f_->h.c;
  const int role = RoleIndex(r.role);
  switch (r.mode) {
    case ConnMode::kSmcd:
    case ConnMode::kSmcr:
      Add(c.smc_ok[role][smc_version == 1 ? 0 : 1], 1);
      Add(c.rx_buf_hist[HistBucket(r.dmb_size)], 1);
      Add(c.tx_buf_hist[HistBucket(r.peer_dmb_size)], 1);
      return;
    case ConnMode::kTcp:
      CountFallback(f_, role, r.local_reason);
      return;
    case ConnMode::kHandshake:
      Add(c.handshake_errors[role], 1);
      return;
  }
}

void StatusPublisher::CountHandshakeError(engine::Role role) {
  Add(f_->h.c.handshake_errors[RoleIndex(role)], 1);
}

void StatusPublisher::Reset() {
  publish_internal::SharedCounters& c = f_->h.c;
  // Every SharedCounters member is a 64-bit counter or a fallback entry.
  for (auto& per_role : c.smc_ok)
    for (A64& v : per_role) v.store(0, kRelaxed);
  for (int role = 0; role < 2; ++role) {
    c.fallbacks[role].store(0, kRelaxed);
    c.handshake_errors[role].store(0, kRelaxed);
    for (publish_internal::FallbackEntry& e : c.fallback[role])
      e.count.store(0, kRelaxed);  // reasons stay claimed (count 0 = hidden)
  }
  for (A64* v :
       {&c.fallback_overflow, &c.slot_overflow, &c.bytes_smc_in,
        &c.bytes_smc_out, &c.bytes_tcp_in, &c.bytes_tcp_out, &c.tx_buffer_full})
    v->store(0, kRelaxed);
  for (int b = 0; b < kHistBuckets; ++b)
    for (A64* v : {&c.rx_buf_hist[b], &c.tx_buf_hist[b], &c.rx_payload_hist[b],
                   &c.tx_payload_hist[b]})
      v->store(0, kRelaxed);
  const uint32_t hw =
      std::min(f_->h.high_water.load(std::memory_order_acquire), kStatusSlots);
  for (uint32_t i = 0; i < hw; ++i)
    if (f_->slots[i].in_use.load(std::memory_order_acquire) != 0)
      ZeroSlotCounters(f_->slots[i]);
}

}  // namespace usmc::runtime
