// libFuzzer target: the peer of a shm connection as a hostile writer. The
// input is a program of operations: the "peer" scribbles on everything it
// can reach in shared memory (the armed word, the control page header, the
// DMB bytes), floods the doorbell socket, hands us forged DMB memfds, and
// feeds hostile offsets and lengths (as if taken from cursors it wrote) to
// the device's bounds-checked copies. The device must not crash, block,
// or touch memory outside the DMB.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dev/shm_arena.h"
#include "dev/shm_dmb.h"
#include "dev/shm_doorbell.h"

namespace {

using namespace usmc::dev;  // NOLINT: fuzz harness

constexpr uint64_t kSize = 3000;  // not a page multiple on purpose

struct Input {
  const uint8_t* p;
  size_t n;
  template <typename T>
  T Take() {
    T v{};
    size_t k = n < sizeof v ? n : sizeof v;
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

#define CHECK(c)                                                    \
  do {                                                              \
    if (!(c)) {                                                     \
      __builtin_printf("check failed: %s line %d\n", #c, __LINE__); \
      std::abort();                                                 \
    }                                                               \
  } while (0)

struct World {
  DmbBudget budget{1 << 20};
  DmbBudget arena_budget{8 << 20};
  // One pair's arena: ours (we carve it), and the same file as the hostile
  // peer maps it (it may write every byte of it, header included).
  std::shared_ptr<ShmArena> arena;
  std::shared_ptr<ShmArena> arena_as_peer;
  std::vector<ArenaSlot> slots;
  LocalDmb local;
  PeerDmb peer;
  std::byte* ctrl;  // the control page, as the hostile peer sees it
};

World* MakeWorld() {
  auto* w = new World{};
  usmc::Result<LocalDmb> l = LocalDmb::Register(kSize, w->budget);
  CHECK(l.ok());
  UniqueFd mem(::fcntl(l->memfd(), F_DUPFD_CLOEXEC, 0));
  // One connection's doorbell socket: the owner waits on one end, the
  // (hostile) peer rings and floods through the other.
  int sv[2];
  CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  l->ConnectDoorbell(ShareFd(UniqueFd(sv[0])));
  usmc::Result<PeerDmb> p = PeerDmb::Attach(std::move(mem), l->token(), kSize,
                                            ShareFd(UniqueFd(sv[1])));
  CHECK(p.ok());
  w->local = std::move(*l);
  w->peer = std::move(*p);
  w->local.doorbell().set_spin_us(0);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  w->ctrl = w->peer.bytes().data() + (DmbFileSize(kSize) - page);
  usmc::Result<std::shared_ptr<ShmArena>> a =
      ShmArena::Create(4 << 20, w->arena_budget, /*warm_bytes=*/64 << 10);
  CHECK(a.ok());
  w->arena = *a;
  usmc::Result<std::shared_ptr<ShmArena>> pa = ShmArena::AttachPeer(
      UniqueFd(::fcntl(w->arena->memfd(), F_DUPFD_CLOEXEC, 0)),
      w->arena->file_size(), w->arena->id());
  CHECK(pa.ok());
  w->arena_as_peer = *pa;
  return w;
}

uint32_t Armed(World& w) {
  return std::atomic_ref<uint32_t>(
             *reinterpret_cast<uint32_t*>(w.ctrl + kCtrlArmedOff))
      .load();
}

void ForgedAttach(Input& in) {
  const uint8_t flags = in.Take<uint8_t>();
  const uint64_t want_size = 1 + in.Take<uint16_t>() % 9000;
  const uint64_t want_token = in.Take<uint64_t>();
  uint64_t hdr[3] = {(flags & 1) ? in.Take<uint64_t>() : kDmbMagic,
                     (flags & 2) ? in.Take<uint64_t>() : want_token,
                     (flags & 4) ? in.Take<uint64_t>() : want_size};
  const int64_t size_delta = (flags & 8) ? in.Take<int8_t>() * 4096 : 0;
  UniqueFd fd(::memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  CHECK(fd);
  const int64_t file_size =
      static_cast<int64_t>(DmbFileSize(want_size)) + size_delta;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (file_size < 0 || ::ftruncate(fd.get(), file_size) != 0) return;
  if (static_cast<uint64_t>(file_size) >= DmbFileSize(want_size)) {
    CHECK(::pwrite(fd.get(), hdr, sizeof hdr,
                   static_cast<off_t>(DmbFileSize(want_size) - page)) == 24);
  }
  int seals = 0;
  if (flags & 16) seals |= F_SEAL_SHRINK;
  if (flags & 32) seals |= F_SEAL_GROW;
  if (flags & 64) seals |= F_SEAL_WRITE;
  if (seals) ::fcntl(fd.get(), F_ADD_SEALS, seals);
  usmc::Result<PeerDmb> p =
      PeerDmb::Attach(std::move(fd), want_token, want_size);
  const bool valid = hdr[0] == kDmbMagic && hdr[1] == want_token &&
                     hdr[2] == want_size && size_delta == 0 &&
                     (flags & 48) == 48 && !(flags & 64);
  CHECK(p.ok() == valid);
  if (p.ok()) {
    CHECK(p->bytes().size() == want_size);
    std::byte b{0x77};
    CHECK(p->Write(want_size - 1, std::span(&b, 1)).ok());
    CHECK(!p->Write(want_size, std::span(&b, 1)).ok());
    CHECK(p->doorbell().Ring() != RingResult::kWoken);  // no doorbell fd
  }
}

// The arena of a pair: the peer names slots (offset, size) and may write
// any byte of the file; we must neither form a pointer outside it nor lose
// track of our own slots.
void ArenaOp(World& w, Input& in) {
  ShmArena& a = *w.arena;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  switch (in.Take<uint8_t>() % 5) {
    case 0: {  // a slot the peer names, checked before any pointer
      ArenaSlot s{in.Take<uint64_t>(), in.Take<uint32_t>()};
      if (in.Take<uint8_t>() & 1) s.offset %= a.file_size() + 2 * page;
      if (in.Take<uint8_t>() & 1) s.size = 16384u << (s.size % 8);
      const uint64_t span = DmbFileSize(s.size);
      const bool inside = span != 0 && s.offset >= page &&
                          s.offset % page == 0 && s.offset <= a.file_size() &&
                          span <= a.file_size() - s.offset;
      const bool ok = w.arena_as_peer->CheckSlot(s).ok();
      CHECK(ok == inside);
      if (ok) {  // touch both ends of what it names
        std::byte* first = w.arena_as_peer->Bytes(s).data();
        std::byte* ctrl = w.arena_as_peer->Ctrl(s);
        *first = std::byte{1};
        ctrl[page - 1] = std::byte{2};
      }
      break;
    }
    case 1: {  // the peer scribbles anywhere, header page included
      const uint64_t off = in.Take<uint32_t>() % (a.file_size() - 8) & ~7ULL;
      std::atomic_ref<uint64_t>(
          *reinterpret_cast<uint64_t*>(w.arena_as_peer->Bytes({0, 8}).data() +
                                       off))
          .store(in.Take<uint64_t>());
      break;
    }
    case 2: {  // we open a connection: a slot of a valid size
      const uint64_t size = 16384u << (in.Take<uint8_t>() % 5);
      usmc::Result<ArenaSlot> s = a.Allocate(size, 1 + in.Take<uint16_t>());
      if (!s.ok()) {
        CHECK(s.status().code() == usmc::StatusCode::kResourceExhausted);
        break;
      }
      CHECK(a.CheckSlot(*s).ok());
      for (const ArenaSlot& o : w.slots) {  // never overlapping a live one
        CHECK(s->offset + DmbFileSize(s->size) <= o.offset ||
              o.offset + DmbFileSize(o.size) <= s->offset);
      }
      w.slots.push_back(*s);
      break;
    }
    case 3: {  // a connection of ours ends (or a bogus one: ignored)
      if (in.Take<uint8_t>() & 1 || w.slots.empty()) {
        a.Free({in.Take<uint64_t>(), in.Take<uint32_t>()});
      } else {
        const size_t i = in.Take<uint8_t>() % w.slots.size();
        a.Free(w.slots[i]);
        w.slots.erase(w.slots.begin() + static_cast<std::ptrdiff_t>(i));
      }
      CHECK(a.stats().slots_in_use == w.slots.size());
      break;
    }
    case 4: {  // a forged arena: wrong size, id, header or seals
      const uint8_t flags = in.Take<uint8_t>();
      const uint64_t want = (2 + in.Take<uint8_t>() % 8) * (1 << 20) + page;
      const uint64_t id = in.Take<uint64_t>();
      const int64_t delta = (flags & 1) ? in.Take<int8_t>() * 4096 : 0;
      uint64_t hdr[3] = {(flags & 2) ? in.Take<uint64_t>() : kArenaMagic,
                         (flags & 4) ? in.Take<uint64_t>() : id,
                         (flags & 8) ? in.Take<uint64_t>() : want};
      UniqueFd fd(::memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING));
      CHECK(fd);
      const int64_t size = static_cast<int64_t>(want) + delta;
      if (size <= 0 || ::ftruncate(fd.get(), size) != 0) break;
      CHECK(::pwrite(fd.get(), hdr, sizeof hdr, 0) == 24);
      int seals = 0;
      if (flags & 16) seals |= F_SEAL_SHRINK;
      if (flags & 32) seals |= F_SEAL_GROW;
      if (flags & 64) seals |= F_SEAL_WRITE;
      if (seals) ::fcntl(fd.get(), F_ADD_SEALS, seals);
      usmc::Result<std::shared_ptr<ShmArena>> p =
          ShmArena::AttachPeer(std::move(fd), want, id);
      const bool valid = hdr[0] == kArenaMagic && hdr[1] == id &&
                         hdr[2] == want && delta == 0 && (flags & 48) == 48 &&
                         !(flags & 64);
      CHECK(p.ok() == valid);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = MakeWorld();
  Input in{data, size};
  std::vector<std::byte> buf;
  for (int ops = 0; in.n > 0 && ops < 64; ++ops) {
    switch (in.Take<uint8_t>() % 9) {
      case 0: {  // hostile armed value, then we ring
        const uint32_t v = in.Take<uint32_t>();
        std::atomic_ref<uint32_t>(
            *reinterpret_cast<uint32_t*>(w->ctrl + kCtrlArmedOff))
            .store(v);
        RingResult r = w->peer.doorbell().Ring();
        CHECK((v == 0) == (r == RingResult::kNotArmed));
        CHECK(Armed(*w) == 0);
        break;
      }
      case 1: {  // scribble anywhere on the control page header area
        const uint16_t off = in.Take<uint16_t>() % 128 & ~7;
        const uint64_t v = in.Take<uint64_t>();
        std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(w->ctrl + off))
            .store(v);
        break;
      }
      case 2: {  // move_data with a hostile offset and length
        const uint64_t off = in.Take<uint64_t>() % (2 * kSize + 2);
        const uint64_t len = in.Take<uint16_t>() % (2 * kSize);
        const uint8_t fill = in.Take<uint8_t>();
        const uint64_t huge = in.Take<uint8_t>() & 1 ? ~uint64_t{0} - off : 0;
        buf.assign(len, std::byte{fill});
        usmc::Status s = w->peer.Write(off + huge, buf);
        const bool fits = huge == 0 && off <= kSize && len <= kSize - off;
        CHECK(s.ok() == fits);
        if (fits) {
          CHECK(len == 0 || std::memcmp(w->local.bytes().data() + off,
                                        buf.data(), len) == 0);
        }
        break;
      }
      case 3: {  // copy out with a hostile offset and length
        const uint64_t off = in.Take<uint64_t>();
        const uint64_t len = in.Take<uint16_t>() % (2 * kSize);
        buf.resize(len);
        usmc::Status s = w->local.Read(off, buf);
        CHECK(s.ok() == (off <= kSize && len <= kSize - off));
        break;
      }
      case 4: {  // we wait while the peer has armed/garbled the word
        const uint32_t v = in.Take<uint32_t>();
        std::atomic_ref<uint32_t>(
            *reinterpret_cast<uint32_t*>(w->ctrl + kCtrlArmedOff))
            .store(v);
        WaitResult r = w->local.doorbell().Wait([] { return false; },
                                                std::chrono::nanoseconds(0));
        CHECK(r == WaitResult::kTimedOut);
        CHECK(Armed(*w) == 0);
        break;
      }
      case 5: {  // the peer floods our doorbell socket
        const uint16_t n = in.Take<uint16_t>() % 4096;
        buf.assign(n, std::byte{1});
        if (n > 0) {
          ::send(w->peer.doorbell().fd(), buf.data(), n,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        WaitResult r = w->local.doorbell().Wait([] { return false; },
                                                std::chrono::nanoseconds(1000));
        CHECK(r == WaitResult::kTimedOut);
        CHECK(w->local.doorbell().Drain());
        break;
      }
      case 6:
        ForgedAttach(in);
        break;
      case 7: {  // a predicate reading hostile words must see a stable copy
        const uint64_t v = in.Take<uint64_t>();
        std::memcpy(w->local.bytes().data(), &v, sizeof v);
        WaitResult r = w->local.doorbell().Wait(
            [&] {
              uint64_t x;
              std::memcpy(&x, w->local.bytes().data(), sizeof x);
              return x == v;
            },
            std::chrono::nanoseconds(0));
        CHECK(r == WaitResult::kReady);
        break;
      }
      case 8:
        ArenaOp(*w, in);
        break;
    }
  }
  return 0;
}
