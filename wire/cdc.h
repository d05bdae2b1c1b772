// wire/cdc.h: CDC (Connection Data Control) messages and RMBE cursor math.
//
// A CDC tells the peer how far we have produced into its RMBE/DMB (producer
// cursor), how far we have consumed our own (consumer cursor), and carries
// the urgent-data and close flags (PROTOCOL.md §4, §5.2). CdcMessage is the
// host form; two encodings exist:
//   * SMC-R: a 44-byte IB SEND, type 0xFE, all fields big-endian.
//   * SMC-D: a 32-byte area at offset 0 of the peer's DMB, in HOST byte
//     order (little-endian on x86-64, our only target; this file always
//     uses LoadLe/StoreLe so the bytes do not depend on the build host).
//     It has no sequence number and no alert token: the DMB names the
//     connection.
// Cursor arithmetic follows the kernel's wrap rules (smc_cdc.h), as small
// constexpr functions so the engine and tests share one definition.
//
//   CdcMessage m;
//   m.seqno = 7;
//   m.producer = CursorAdd(m.producer, 1000, rmbe_size);
//   std::array<std::byte, kCdcMsgLen> buf;
//   WireResult<size_t> n = EncodeCdc(m, buf);         // 44
//   WireResult<CdcMessage> back = DecodeCdc(buf);     // back->seqno == 7
#ifndef USMC_WIRE_CDC_H_
#define USMC_WIRE_CDC_H_

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>

#include "wire/error.h"

namespace usmc::wire {

// ---------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------

// A position in a ring buffer (RMBE or DMB data area) of `size` bytes:
// `count` is the byte offset (< size), `wrap` counts completed laps modulo
// 2^16. Full and empty rings are told apart by wrap.
struct Cursor {
  uint16_t wrap = 0;
  uint32_t count = 0;

  friend constexpr bool operator==(Cursor a, Cursor b) = default;
};

// "wrap:count" in hex like smcss -d prints it, e.g. "0001:00003e80".
std::string ToString(Cursor c);
std::ostream& operator<<(std::ostream& os, Cursor c);

// True if the cursor lies inside a ring of `size` bytes (count < size).
// A cursor from the peer must pass this before any arithmetic uses it.
constexpr bool CursorValid(Cursor c, uint32_t size) { return c.count < size; }

// Advances c by n bytes in a ring of `size` (> 0) bytes. Every completed lap
// increments wrap (mod 2^16). The kernel (smc_curs_add) handles only
// n <= size; this version accepts any n, which gives the same result there.
constexpr Cursor CursorAdd(Cursor c, uint32_t n, uint32_t size) {
  const uint64_t pos = uint64_t{c.count} + n;
  return Cursor{static_cast<uint16_t>(c.wrap + pos / size),
                static_cast<uint32_t>(pos % size)};
}

// Bytes from old to new when new is at most one lap ahead (smc_curs_diff):
// same wrap: new.count - old.count; different wrap: (size - old.count) +
// new.count. Clamped at 0 (a "backwards" cursor in the same wrap gives 0).
constexpr uint32_t CursorDiff(uint32_t size, Cursor old_c, Cursor new_c) {
  int64_t d = old_c.wrap == new_c.wrap
                  ? int64_t{new_c.count} - int64_t{old_c.count}
                  : (int64_t{size} - int64_t{old_c.count}) + new_c.count;
  return d < 0 ? 0 : static_cast<uint32_t>(d);
}

// Like CursorDiff but for cursors that may be several laps apart
// (smc_curs_diff_large): the wrap distance is taken modulo 2^16 (so 0xffff
// -> 0x0000 is one lap), and the result is capped at `size`. The kernel
// computes in int; this uses 64 bits, so it never overflows.
constexpr uint32_t CursorDiffLarge(uint32_t size, Cursor old_c, Cursor new_c) {
  const uint16_t laps = static_cast<uint16_t>(new_c.wrap - old_c.wrap);
  if (laps == 0) return CursorDiff(size, old_c, new_c);
  const int64_t d = (int64_t{size} - int64_t{old_c.count}) + new_c.count +
                    int64_t{laps - 1} * size;
  if (d < 0) return 0;
  return d > size ? size : static_cast<uint32_t>(d);
}

// Orders two cursors with serial-number arithmetic on wrap, so the 16-bit
// rollover 0xffff -> 0x0000 counts as forward: -1 if b is behind a, 0 if
// equal, +1 if b is ahead of a. Valid while the cursors are less than 2^15
// laps apart, which any real ring pair is (the producer is at most one lap
// ahead of the consumer).
constexpr int CursorOrder(Cursor a, Cursor b) {
  const int16_t laps = static_cast<int16_t>(b.wrap - a.wrap);
  if (laps != 0) return laps > 0 ? 1 : -1;
  if (a.count == b.count) return 0;
  return b.count > a.count ? 1 : -1;
}

// True if new_c is strictly ahead of old_c (honouring wrap rollover).
constexpr bool CursorIsAhead(Cursor old_c, Cursor new_c) {
  return CursorOrder(old_c, new_c) > 0;
}

// Signed distance old -> new (smc_curs_comp, but rollover-aware through
// CursorOrder): CursorDiff(old, new) if new is not behind old, else
// -CursorDiff(new, old).
constexpr int64_t CursorComp(uint32_t size, Cursor old_c, Cursor new_c) {
  if (CursorOrder(old_c, new_c) < 0) {
    return -int64_t{CursorDiff(size, new_c, old_c)};
  }
  return CursorDiff(size, old_c, new_c);
}

// The kernel's rule for taking a cursor from a received CDC
// (smcr_cdc_cursor_to_host): the update is ignored when the new wrap is
// smaller (unless it is 0, the 16-bit rollover) or when the wrap is equal
// and the count smaller. Equal cursors are accepted. Use this to accept
// cursor updates exactly as Linux does.
constexpr bool CursorUpdateAccepted(Cursor old_c, Cursor new_c) {
  if (old_c.wrap > new_c.wrap && new_c.wrap != 0) return false;
  if (old_c.wrap == new_c.wrap && old_c.count > new_c.count) return false;
  return true;
}

// ---------------------------------------------------------------------------
// CDC sequence numbers (16 bits, +1 per CDC sent on a connection)
// ---------------------------------------------------------------------------

// Signed distance a -> b modulo 2^16: (s16)(b - a).
constexpr int16_t SeqnoDistance(uint16_t a, uint16_t b) {
  return static_cast<int16_t>(static_cast<uint16_t>(b - a));
}

// True if seqno a is older than b (the kernel's smc_cdc_before: (s16)(a-b) <
// 0). The receiver drops a CDC whose seqno is before the last one seen.
constexpr bool SeqnoBefore(uint16_t a, uint16_t b) {
  return static_cast<int16_t>(static_cast<uint16_t>(a - b)) < 0;
}

// ---------------------------------------------------------------------------
// CDC message (host form)
// ---------------------------------------------------------------------------

inline constexpr uint8_t kCdcType = 0xFE;        // byte 0 of every CDC
inline constexpr size_t kCdcMsgLen = 44;         // SMC-R SEND payload
inline constexpr size_t kSmcdCdcLen = 32;        // SMC-D area at DMB offset 0
inline constexpr size_t kCdcMinReceiveLen = 26;  // kernel drops shorter SENDs

// Producer flags byte (SMC-R offset 24, SMC-D offset 22). Bits 0x07 are
// reserved: decode ignores them, encode writes 0.
inline constexpr uint8_t kCdcWriteBlocked = 0x80;
inline constexpr uint8_t kCdcUrgDataPending = 0x40;
inline constexpr uint8_t kCdcUrgDataPresent = 0x20;
inline constexpr uint8_t kCdcConsCursUpdReq = 0x10;
inline constexpr uint8_t kCdcFailoverValidation = 0x08;
// Connection state flags byte (SMC-R offset 25, SMC-D offset 23). Bits 0x1F
// are reserved.
inline constexpr uint8_t kCdcPeerDoneWriting = 0x80;
inline constexpr uint8_t kCdcPeerConnClosed = 0x40;
inline constexpr uint8_t kCdcPeerConnAbort = 0x20;

struct CdcProducerFlags {
  bool write_blocked = false;        // sender has data but no room in our RMBE
  bool urg_data_pending = false;     // an urgent (MSG_OOB) byte is on its way
  bool urg_data_present = false;     // the byte before producer is urgent
  bool cons_curs_upd_req = false;    // please send your consumer cursor
  bool failover_validation = false;  // first CDC on a new link after failover

  friend constexpr bool operator==(const CdcProducerFlags&,
                                   const CdcProducerFlags&) = default;
};

struct CdcConnStateFlags {
  bool peer_done_writing = false;  // sender shut down writing (≈ FIN)
  bool peer_conn_closed = false;   // sender closed the connection
  bool peer_conn_abort = false;    // sender aborted (≈ RST)

  friend constexpr bool operator==(const CdcConnStateFlags&,
                                   const CdcConnStateFlags&) = default;
};

// One CDC, independent of its encoding. For SMC-D, seqno and alert_token do
// not exist on the wire: decode sets them to 0 and encode ignores them.
struct CdcMessage {
  uint16_t seqno = 0;
  uint32_t alert_token = 0;  // the RECEIVER's RMBE alert token
  Cursor producer;           // how far the sender wrote into our RMBE
  Cursor consumer;           // how far the sender consumed its own RMBE
  CdcProducerFlags prod_flags;
  CdcConnStateFlags conn_state;

  friend constexpr bool operator==(const CdcMessage&,
                                   const CdcMessage&) = default;
};

// Flag bytes <-> flag structs (reserved bits dropped).
uint8_t EncodeCdcProducerFlags(const CdcProducerFlags& f);
CdcProducerFlags DecodeCdcProducerFlags(uint8_t byte);
uint8_t EncodeCdcConnStateFlags(const CdcConnStateFlags& f);
CdcConnStateFlags DecodeCdcConnStateFlags(uint8_t byte);

// SMC-R: decodes the SEND payload. Needs at least 44 bytes (kTruncated,
// field "cdc.message"); byte 0 must be 0xFE ("cdc.type"), byte 1 must be 44
// ("cdc.length"). Bytes after 44 are ignored (receive buffers are 48 bytes).
// Reserved bytes and bits are ignored.
WireResult<CdcMessage> DecodeCdc(std::span<const std::byte> bytes);

// SMC-R: writes the 44-byte CDC into out (kBufferTooSmall, "cdc.message" if
// out is shorter) and returns 44. Reserved bytes are written as zero, as
// Linux does.
WireResult<size_t> EncodeCdc(const CdcMessage& msg, std::span<std::byte> out);

// SMC-D: decodes the 32-byte area at DMB offset 0 (kTruncated,
// "smcd_cdc.message" if shorter; byte 0 must be 0xFE, "smcd_cdc.type"; a
// freshly zeroed DMB therefore fails with kBadType). Fields are little-endian
// (host order of x86-64 Linux). The flag copies inside the producer cursor
// (offsets 14, 15) are ignored, as Linux ignores them.
WireResult<CdcMessage> DecodeSmcdCdc(std::span<const std::byte> bytes);

// SMC-D: writes the 32-byte area (reserved bytes zero) and returns 32.
// seqno and alert_token are not encoded.
WireResult<size_t> EncodeSmcdCdc(const CdcMessage& msg,
                                 std::span<std::byte> out);

// "field: value" lines for humans (logs, usmc tools).
std::string DescribeCdc(const CdcMessage& msg);

}  // namespace usmc::wire

#endif  // USMC_WIRE_CDC_H_
