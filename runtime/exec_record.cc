#include "runtime/exec_record.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "base/endian.h"

namespace usmc::runtime {
namespace {

using engine::CloseMachineState;
using engine::ConnectionCounters;
using engine::DataPathState;
using engine::SmcdDevice;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Put<2>(v, StoreBe16); }
  void U32(uint32_t v) { Put<4>(v, StoreBe32); }
  void U64(uint64_t v) { Put<8>(v, StoreBe64); }
  void Bytes(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
  }

 private:
  template <size_t N, typename T, typename F>
  void Put(T v, F store) {
    std::byte b[N];
    store(b, v);
    Bytes(b, N);
  }
  std::string& out_;
};

// Reads fixed-width fields from a body of known length; the first
// failure sticks and names its field.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint8_t U8(const char* f) { return Take(1, f) ? Load8(p_) : 0; }
  uint16_t U16(const char* f) { return Take(2, f) ? LoadBe16(p_) : 0; }
  uint32_t U32(const char* f) { return Take(4, f) ? LoadBe32(p_) : 0; }
  uint64_t U64(const char* f) { return Take(8, f) ? LoadBe64(p_) : 0; }
  void Bytes(void* out, size_t n, const char* f) {
    if (Take(n, f)) std::memcpy(out, p_, n);
  }
  bool Bool(const char* f) {
    const uint8_t v = U8(f);
    if (v > 1) Fail(f);
    return v == 1;
  }
  // A bit set; bits above `count` must be zero.
  uint32_t Bits(size_t width, unsigned count, const char* f) {
    const uint32_t v = width == 1 ? U8(f) : U16(f);
    if (v >> count) Fail(f);
    return v;
  }
  void Fail(const char* f) {
    if (bad_ == nullptr) bad_ = f;
  }
  const char* bad() const { return bad_; }
  size_t left() const { return in_.size() - off_; }

 private:
  bool Take(size_t n, const char* f) {
    if (bad_ != nullptr || n > in_.size() - off_) {
      Fail(f);
      return false;
    }
    p_ = reinterpret_cast<const std::byte*>(in_.data() + off_);
    off_ += n;
    return true;
  }
  std::string_view in_;
  size_t off_ = 0;
  const std::byte* p_ = nullptr;
  const char* bad_ = nullptr;
};

void PutDevice(Writer& w, const SmcdDevice& d) {
  w.U64(d.gid);
  w.U64(d.gid_ext);
  w.U16(d.chid);
}
SmcdDevice GetDevice(Reader& r) {
  SmcdDevice d;
  d.gid = r.U64("device gid");
  d.gid_ext = r.U64("device gid_ext");
  d.chid = r.U16("device chid");
  return d;
}

void PutCursor(Writer& w, wire::Cursor c) {
  w.U16(c.wrap);
  w.U32(c.count);
}
wire::Cursor GetCursor(Reader& r, const char* f) {
  wire::Cursor c;
  c.wrap = r.U16(f);
  c.count = r.U32(f);
  return c;
}

uint32_t Bit(bool b, unsigned i) { return b ? 1u << i : 0u; }
bool Has(uint32_t bits, unsigned i) { return (bits >> i) & 1u; }

uint8_t ConnFlags(const wire::CdcConnStateFlags& f) {
  return static_cast<uint8_t>(Bit(f.peer_done_writing, 0) |
                              Bit(f.peer_conn_closed, 1) |
                              Bit(f.peer_conn_abort, 2));
}
wire::CdcConnStateFlags GetConnFlags(uint32_t bits, unsigned at) {
  return {.peer_done_writing = Has(bits, at),
          .peer_conn_closed = Has(bits, at + 1),
          .peer_conn_abort = Has(bits, at + 2)};
}

void PutData(Writer& w, const DataPathState& d) {
  PutCursor(w, d.tx_producer);
  PutCursor(w, d.peer_consumer);
  PutCursor(w, d.rx_consumer);
  PutCursor(w, d.rx_consumer_confirmed);
  PutCursor(w, d.peer_producer);
  PutCursor(w, d.urgent_mark);
  w.U16(static_cast<uint16_t>(
      Bit(d.write_blocked, 0) | Bit(d.urg_tx_present, 1) |
      Bit(d.urg_tx_wait, 2) | Bit(d.peer_write_blocked, 3) |
      Bit(d.peer_cons_upd_req, 4) | Bit(d.force_update, 5) |
      Bit(d.urgent_byte_skipped, 6) | Bit(d.have_urgent_mark, 7) |
      (uint32_t{ConnFlags(d.peer_state)} << 8)));
  w.U8(static_cast<uint8_t>(d.urgent_state));
  w.U8(static_cast<uint8_t>(d.urgent_byte));
}
DataPathState GetData(Reader& r) {
  DataPathState d;
  d.tx_producer = GetCursor(r, "tx producer");
  d.peer_consumer = GetCursor(r, "peer consumer");
  d.rx_consumer = GetCursor(r, "rx consumer");
  d.rx_consumer_confirmed = GetCursor(r, "rx consumer confirmed");
  d.peer_producer = GetCursor(r, "peer producer");
  d.urgent_mark = GetCursor(r, "urgent mark");
  const uint32_t b = r.Bits(2, 11, "data path flags");
  d.write_blocked = Has(b, 0);
  d.urg_tx_present = Has(b, 1);
  d.urg_tx_wait = Has(b, 2);
  d.peer_write_blocked = Has(b, 3);
  d.peer_cons_upd_req = Has(b, 4);
  d.force_update = Has(b, 5);
  d.urgent_byte_skipped = Has(b, 6);
  d.have_urgent_mark = Has(b, 7);
  d.peer_state = GetConnFlags(b, 8);
  const uint8_t us = r.U8("urgent state");
  if (us > static_cast<uint8_t>(engine::UrgentState::kRead)) {
    r.Fail("urgent state");
  }
  d.urgent_state = static_cast<engine::UrgentState>(us);
  d.urgent_byte = std::byte{r.U8("urgent byte")};
  return d;
}

void PutClose(Writer& w, const CloseMachineState& c) {
  w.U8(static_cast<uint8_t>(c.state));
  w.U8(static_cast<uint8_t>(Bit(c.released, 0) | Bit(c.peer_closed, 1) |
                            Bit(c.write_shut, 2) | Bit(c.peer_write_shut, 3) |
                            Bit(c.aborted, 4) | Bit(c.abort_sent, 5)));
}
CloseMachineState GetClose(Reader& r) {
  CloseMachineState c;
  const uint8_t s = r.U8("close state");
  if (s > static_cast<uint8_t>(engine::CloseState::kClosed)) {
    r.Fail("close state");
  }
  c.state = static_cast<engine::CloseState>(s);
  const uint32_t b = r.Bits(1, 6, "close flags");
  c.released = Has(b, 0);
  c.peer_closed = Has(b, 1);
  c.write_shut = Has(b, 2);
  c.peer_write_shut = Has(b, 3);
  c.aborted = Has(b, 4);
  c.abort_sent = Has(b, 5);
  return c;
}

// The counters in declaration order.
template <typename C, typename F>
void ForEachCounter(C& c, F f) {
  for (auto* p :
       {&c.bytes_sent, &c.bytes_received, &c.cdc_published, &c.cdc_received,
        &c.consumer_updates, &c.buffer_full, &c.wakeups_requested,
        &c.urgent_sent, &c.urgent_received, &c.violations}) {
    f(*p);
  }
}

void PutEngine(Writer& w, const engine::ConnectionSnapshot& s) {
  w.U8(static_cast<uint8_t>(s.role));
  PutDevice(w, s.link.local_device);
  PutDevice(w, s.link.peer_device);
  w.U64(s.link.local_dmb_token);
  w.U32(s.link.local_dmb_size);
  w.U64(s.link.peer_dmb_token);
  w.U32(s.link.peer_dmb_size);
  w.U32(s.link.link_id);
  w.Bytes(s.link.eid.data(), s.link.eid.size());
  PutData(w, s.data);
  PutClose(w, s.close);
  w.U8(ConnFlags(s.local_flags));
  w.U8(static_cast<uint8_t>(Bit(s.published_write_blocked, 0) |
                            Bit(s.read_shut, 1) | Bit(s.finished, 2) |
                            Bit(s.error_seen, 3)));
  w.U32(static_cast<uint32_t>(s.error));
  ForEachCounter(s.counters, [&](const uint64_t& v) { w.U64(v); });
}

engine::Role GetRole(Reader& r, const char* f) {
  const uint8_t v = r.U8(f);
  if (v > static_cast<uint8_t>(engine::Role::kServer)) r.Fail(f);
  return static_cast<engine::Role>(v);
}

engine::ConnectionSnapshot GetEngine(Reader& r) {
  engine::ConnectionSnapshot s;
  s.role = GetRole(r, "engine role");
  s.link.local_device = GetDevice(r);
  s.link.peer_device = GetDevice(r);
  s.link.local_dmb_token = r.U64("local DMB token");
  s.link.local_dmb_size = r.U32("local DMB size");
  s.link.peer_dmb_token = r.U64("peer DMB token");
  s.link.peer_dmb_size = r.U32("peer DMB size");
  s.link.link_id = r.U32("link id");
  r.Bytes(s.link.eid.data(), s.link.eid.size(), "link UEID");
  s.data = GetData(r);
  s.close = GetClose(r);
  s.local_flags = GetConnFlags(r.Bits(1, 3, "local flags"), 0);
  const uint32_t b = r.Bits(1, 4, "connection flags");
  s.published_write_blocked = Has(b, 0);
  s.read_shut = Has(b, 1);
  s.finished = Has(b, 2);
  s.error_seen = Has(b, 3);
  s.error = static_cast<int32_t>(r.U32("engine error"));
  ForEachCounter(s.counters, [&](uint64_t& v) { v = r.U64("counters"); });
  return s;
}

Status Invalid(std::string_view what) {
  return Status(StatusCode::kInvalidArgument,
                "exec record: " + std::string(what));
}

}  // namespace

void AppendExecRecord(const ExecRecord& rec, std::string& out) {
  Writer w(out);
  w.U32(kExecRecordMagic);
  w.U16(kExecRecordVersion);
  w.U16(0);
  w.U32(kExecRecordBodyLen);
  const size_t body_start = out.size();
  for (int32_t fd :
       {rec.tcp_fd, rec.local_memfd, rec.peer_memfd, rec.doorbell_fd}) {
    w.U32(static_cast<uint32_t>(fd));
  }
  w.U8(static_cast<uint8_t>(rec.role));
  w.U8(rec.smcd_enabled ? 1 : 0);
  const size_t eid_len = std::min(rec.eid.size(), kExecRecordMaxEid);
  w.U8(static_cast<uint8_t>(eid_len));
  char eid[kExecRecordMaxEid] = {};
  std::memcpy(eid, rec.eid.data(), eid_len);
  w.Bytes(eid, sizeof eid);
  w.U32(rec.dmb_size);
  w.U64(static_cast<uint64_t>(rec.clc_timeout.count()));
  w.U64(static_cast<uint64_t>(rec.handover_timeout.count()));
  w.U8(static_cast<uint8_t>(Bit(rec.peer_gone, 0) | Bit(rec.fatal, 1) |
                            Bit(rec.tcp_cloexec, 2)));
  w.U32(static_cast<uint32_t>(rec.error));
  w.Bytes(rec.last_area.data(), rec.last_area.size());
  PutEngine(w, rec.engine);
  for (uint64_t v : {rec.local_arena_id, rec.local_arena_size, rec.local_slot,
                     rec.peer_arena_id, rec.peer_arena_size, rec.peer_slot}) {
    w.U64(v);
  }
  // A layout change must change kExecRecordBodyLen (and the version).
  assert(out.size() - body_start == kExecRecordBodyLen);
  (void)body_start;
}

Result<ExecRecord> DecodeExecRecord(std::string_view& in) {
  if (in.size() < kExecRecordHeaderLen) {
    in = {};
    return Invalid("truncated header");
  }
  const auto* h = reinterpret_cast<const std::byte*>(in.data());
  const uint32_t magic = LoadBe32(h);
  const uint16_t version = LoadBe16(h + 4);
  const uint16_t flags = LoadBe16(h + 6);
  const uint32_t body_len = LoadBe32(h + 8);
  if (magic != kExecRecordMagic) {
    in = {};
    return Invalid("magic");
  }
  if (body_len > in.size() - kExecRecordHeaderLen) {
    in = {};
    return Invalid("truncated body");
  }
  const std::string_view body = in.substr(kExecRecordHeaderLen, body_len);
  in.remove_prefix(kExecRecordHeaderLen + body_len);
  // One version: both images run the same library, and a record must
  // re-encode to its own bytes (fuzz/exec_record_fuzz.cc).
  if (version != kExecRecordVersion) return Invalid("unsupported version");
  if (flags != 0) return Invalid("flags");
  if (body_len != kExecRecordBodyLen) return Invalid("body length");

  Reader r(body);
  ExecRecord rec;
  int32_t* fds[] = {&rec.tcp_fd, &rec.local_memfd, &rec.peer_memfd,
                    &rec.doorbell_fd};
  for (int32_t* fd : fds) {
    *fd = static_cast<int32_t>(r.U32("fd"));
    if (*fd < 0) r.Fail("fd");
  }
  for (size_t i = 0; i < std::size(fds); ++i) {
    for (size_t j = i + 1; j < std::size(fds); ++j) {
      if (*fds[i] == *fds[j]) r.Fail("fd (duplicate)");
    }
  }
  rec.role = GetRole(r, "role");
  rec.smcd_enabled = r.Bool("smcd_enabled");
  const uint8_t eid_len = r.U8("UEID length");
  char eid[kExecRecordMaxEid] = {};
  r.Bytes(eid, sizeof eid, "UEID");
  if (eid_len > kExecRecordMaxEid ||
      std::any_of(eid + std::min<size_t>(eid_len, kExecRecordMaxEid),
                  eid + kExecRecordMaxEid, [](char c) { return c != 0; })) {
    r.Fail("UEID length");
  } else if (r.bad() == nullptr) {
    rec.eid.assign(eid, eid_len);
  }
  rec.dmb_size = r.U32("dmb_size");
  const auto ms = [&](const char* f) {
    const uint64_t v = r.U64(f);
    // Options hold milliseconds as int64; a day is more than any timeout.
    if (v > 86400000) r.Fail(f);
    return std::chrono::milliseconds(static_cast<int64_t>(v));
  };
  rec.clc_timeout = ms("clc_timeout");
  rec.handover_timeout = ms("handover_timeout");
  const uint32_t sf = r.Bits(1, 3, "socket flags");
  rec.peer_gone = Has(sf, 0);
  rec.fatal = Has(sf, 1);
  rec.tcp_cloexec = Has(sf, 2);
  rec.error = static_cast<int32_t>(r.U32("socket error"));
  if (rec.error < 0 || rec.error > 4095) r.Fail("socket error");
  r.Bytes(rec.last_area.data(), rec.last_area.size(), "last CDC area");
  rec.engine = GetEngine(r);
  rec.local_arena_id = r.U64("local arena id");
  rec.local_arena_size = r.U64("local arena size");
  rec.local_slot = r.U64("local slot");
  rec.peer_arena_id = r.U64("peer arena id");
  rec.peer_arena_size = r.U64("peer arena size");
  rec.peer_slot = r.U64("peer slot");
  // Both sides in arenas or neither; the arena checks the rest (size
  // range, slot inside) when it is attached.
  if ((rec.local_arena_size == 0) != (rec.peer_arena_size == 0)) {
    r.Fail("arena sizes");
  }
  if (rec.local_arena_size == 0 && (rec.local_arena_id | rec.local_slot |
                                    rec.peer_arena_id | rec.peer_slot) != 0) {
    r.Fail("arena fields without arenas");
  }
  if (r.bad() == nullptr && r.left() != 0) r.Fail("trailing bytes");
  if (r.bad() != nullptr) return Invalid(r.bad());
  if (rec.engine.role != rec.role) return Invalid("engine role");
  if (std::string_view why = engine::CheckSnapshot(rec.engine); !why.empty()) {
    return Invalid("engine snapshot: " + std::string(why));
  }
  return rec;
}

}  // namespace usmc::runtime
