// preload/pass_thru.cc: fds of connections that are plain TCP for good
// (FdKind::kPassThru, preload/conn.h). Their calls go to the C library as
// the app made them after one load of the fd's kind: no table lock, no
// shared_ptr copy, no locked instruction (docs/preload.md, "Pass-through").
//
// What keeps an fd number from being taken for another connection: the kind
// is set here only under the table's lock and only while the number still
// names the Conn that was found TCP for good, and every change of the
// number's Conn (Install: accept, connect, dup; Remove: close, dup2 over it,
// close_range) resets it under the same lock before the kernel may reuse
// the number (close() removes before it closes).
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "preload/conn.h"

namespace usmc::preload {
using conn_detail::g_kind;
using conn_detail::g_pass;
using conn_detail::Pass;

namespace {

// Where pass-through counts go for a Conn without a status slot (publishing
// off, or all slots taken): written, never read.
std::atomic<uint64_t> g_no_slot_in{0}, g_no_slot_out{0};

}  // namespace

void ConnTable::MarkPassThru(int fd, const std::shared_ptr<Conn>& c) {
  if (fd < 0 || static_cast<size_t>(fd) >= size_ || !c) return;
  const auto [in, out] = c->PassCounters();
  // Shared: Install and Remove (which take it exclusively) cannot run now;
  // two threads marking the same fd store the same values.
  std::shared_lock lock(mu_);
  if (slots_[fd] != c || Kind(fd) != FdKind::kConn) return;
  Pass& p = g_pass[fd];
  p.pub_in.store(in != nullptr ? in : &g_no_slot_in, std::memory_order_relaxed);
  p.pub_out.store(out != nullptr ? out : &g_no_slot_out,
                  std::memory_order_relaxed);
  g_kind[fd].store(static_cast<uint8_t>(FdKind::kPassThru),
                   std::memory_order_release);
}

std::pair<uint64_t, uint64_t> ConnTable::PassBytes(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= size_) return {};
  return {g_pass[fd].in.load(std::memory_order_relaxed),
          g_pass[fd].out.load(std::memory_order_relaxed)};
}

void ConnTable::TakePassBytes(int fd, Conn* c) {
  Pass& p = g_pass[fd];
  const uint64_t in = p.in.exchange(0, std::memory_order_relaxed);
  const uint64_t out = p.out.exchange(0, std::memory_order_relaxed);
  if (c != nullptr) {
    // Already in the status slot (CountPassIn/Out wrote it there).
    c->bytes_in.fetch_add(in, std::memory_order_relaxed);
    c->bytes_out.fetch_add(out, std::memory_order_relaxed);
  }
}

void ConnTable::ResetPassThruInChild() {
  // Counts are non-zero only on kPassThru fds (every way out takes them).
  for (size_t fd = 0; fd < size_; ++fd) {
    if (g_kind[fd].load(std::memory_order_relaxed) !=
        static_cast<uint8_t>(FdKind::kPassThru)) {
      continue;
    }
    g_kind[fd].store(static_cast<uint8_t>(FdKind::kConn),
                     std::memory_order_relaxed);
    g_pass[fd].in.store(0, std::memory_order_relaxed);
    g_pass[fd].out.store(0, std::memory_order_relaxed);
  }
}

}  // namespace usmc::preload
