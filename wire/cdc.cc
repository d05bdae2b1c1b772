#include "wire/cdc.h"

#include <array>
#include <cstdio>

#include "base/endian.h"

namespace usmc::wire {
namespace {

// SMC-R CDC offsets (PROTOCOL.md §4.1). Each cursor is 8 bytes: 2 reserved,
// wrap, count.
constexpr size_t kOffType = 0;
constexpr size_t kOffLength = 1;
constexpr size_t kOffSeqno = 2;
constexpr size_t kOffToken = 4;
constexpr size_t kOffProd = 8;
constexpr size_t kOffCons = 16;
constexpr size_t kCursorWrap = 2;
constexpr size_t kCursorCount = 4;
constexpr size_t kOffProdFlags = 24;
constexpr size_t kOffConnState = 25;
static_assert(kOffConnState + 1 + 18 == kCdcMsgLen, "18 reserved bytes at 26");

// SMC-D CDC area offsets (PROTOCOL.md §5.2): cursors are {wrap u16, count
// u32, 2 flag bytes} packed, host order.
constexpr size_t kSmcdOffType = 0;
constexpr size_t kSmcdOffProd = 8;
constexpr size_t kSmcdOffCons = 16;
constexpr size_t kSmcdCursorCount = 2;
constexpr size_t kSmcdOffProdFlags = 22;
constexpr size_t kSmcdOffConnState = 23;
static_assert(kSmcdOffConnState + 1 + 8 == kSmcdCdcLen, "8 reserved at 24");

constexpr uint8_t kProdFlagsReserved = 0x07;
constexpr uint8_t kConnStateReserved = 0x1F;

}  // namespace

std::string ToString(Cursor c) {
  std::array<char, 24> buf{};
  std::snprintf(buf.data(), buf.size(), "%04x:%08x", unsigned{c.wrap},
                static_cast<unsigned>(c.count));
  return buf.data();
}

std::ostream& operator<<(std::ostream& os, Cursor c) {
  return os << ToString(c);
}

uint8_t EncodeCdcProducerFlags(const CdcProducerFlags& f) {
  uint8_t b = 0;
  if (f.write_blocked) b |= kCdcWriteBlocked;
  if (f.urg_data_pending) b |= kCdcUrgDataPending;
  if (f.urg_data_present) b |= kCdcUrgDataPresent;
  if (f.cons_curs_upd_req) b |= kCdcConsCursUpdReq;
  if (f.failover_validation) b |= kCdcFailoverValidation;
  return b;
}

CdcProducerFlags DecodeCdcProducerFlags(uint8_t b) {
  static_assert((kCdcWriteBlocked | kCdcUrgDataPending | kCdcUrgDataPresent |
                 kCdcConsCursUpdReq | kCdcFailoverValidation) ==
                static_cast<uint8_t>(~kProdFlagsReserved));
  CdcProducerFlags f;
  f.write_blocked = (b & kCdcWriteBlocked) != 0;
  f.urg_data_pending = (b & kCdcUrgDataPending) != 0;
  f.urg_data_present = (b & kCdcUrgDataPresent) != 0;
  f.cons_curs_upd_req = (b & kCdcConsCursUpdReq) != 0;
  f.failover_validation = (b & kCdcFailoverValidation) != 0;
  return f;
}

uint8_t EncodeCdcConnStateFlags(const CdcConnStateFlags& f) {
  uint8_t b = 0;
  if (f.peer_done_writing) b |= kCdcPeerDoneWriting;
  if (f.peer_conn_closed) b |= kCdcPeerConnClosed;
  if (f.peer_conn_abort) b |= kCdcPeerConnAbort;
  return b;
}

CdcConnStateFlags DecodeCdcConnStateFlags(uint8_t b) {
  static_assert(
      (kCdcPeerDoneWriting | kCdcPeerConnClosed | kCdcPeerConnAbort) ==
      static_cast<uint8_t>(~kConnStateReserved));
  CdcConnStateFlags f;
  f.peer_done_writing = (b & kCdcPeerDoneWriting) != 0;
  f.peer_conn_closed = (b & kCdcPeerConnClosed) != 0;
  f.peer_conn_abort = (b & kCdcPeerConnAbort) != 0;
  return f;
}

WireResult<CdcMessage> DecodeCdc(std::span<const std::byte> bytes) {
  if (bytes.size() < kCdcMsgLen) {
    return WireError{WireErrc::kTruncated, "cdc.message"};
  }
  const std::byte* p = bytes.data();
  if (Load8(p + kOffType) != kCdcType) {
    return WireError{WireErrc::kBadType, "cdc.type"};
  }
  if (Load8(p + kOffLength) != kCdcMsgLen) {
    return WireError{WireErrc::kBadLength, "cdc.length"};
  }
  CdcMessage m;
  m.seqno = LoadBe16(p + kOffSeqno);
  m.alert_token = LoadBe32(p + kOffToken);
  m.producer.wrap = LoadBe16(p + kOffProd + kCursorWrap);
  m.producer.count = LoadBe32(p + kOffProd + kCursorCount);
  m.consumer.wrap = LoadBe16(p + kOffCons + kCursorWrap);
  m.consumer.count = LoadBe32(p + kOffCons + kCursorCount);
  m.prod_flags = DecodeCdcProducerFlags(Load8(p + kOffProdFlags));
  m.conn_state = DecodeCdcConnStateFlags(Load8(p + kOffConnState));
  return m;
}

WireResult<size_t> EncodeCdc(const CdcMessage& m, std::span<std::byte> out) {
  if (out.size() < kCdcMsgLen) {
    return WireError{WireErrc::kBufferTooSmall, "cdc.message"};
  }
  std::byte* p = out.data();
  for (size_t i = 0; i < kCdcMsgLen; ++i) p[i] = std::byte{0};
  Store8(p + kOffType, kCdcType);
  Store8(p + kOffLength, static_cast<uint8_t>(kCdcMsgLen));
  StoreBe16(p + kOffSeqno, m.seqno);
  StoreBe32(p + kOffToken, m.alert_token);
  StoreBe16(p + kOffProd + kCursorWrap, m.producer.wrap);
  StoreBe32(p + kOffProd + kCursorCount, m.producer.count);
  StoreBe16(p + kOffCons + kCursorWrap, m.consumer.wrap);
  StoreBe32(p + kOffCons + kCursorCount, m.consumer.count);
  Store8(p + kOffProdFlags, EncodeCdcProducerFlags(m.prod_flags));
  Store8(p + kOffConnState, EncodeCdcConnStateFlags(m.conn_state));
  return kCdcMsgLen;
}

WireResult<CdcMessage> DecodeSmcdCdc(std::span<const std::byte> bytes) {
  if (bytes.size() < kSmcdCdcLen) {
    return WireError{WireErrc::kTruncated, "smcd_cdc.message"};
  }
  const std::byte* p = bytes.data();
  if (Load8(p + kSmcdOffType) != kCdcType) {
    return WireError{WireErrc::kBadType, "smcd_cdc.type"};
  }
  CdcMessage m;
  m.producer.wrap = LoadLe16(p + kSmcdOffProd);
  m.producer.count = LoadLe32(p + kSmcdOffProd + kSmcdCursorCount);
  m.consumer.wrap = LoadLe16(p + kSmcdOffCons);
  m.consumer.count = LoadLe32(p + kSmcdOffCons + kSmcdCursorCount);
  m.prod_flags = DecodeCdcProducerFlags(Load8(p + kSmcdOffProdFlags));
  m.conn_state = DecodeCdcConnStateFlags(Load8(p + kSmcdOffConnState));
  return m;
}

WireResult<size_t> EncodeSmcdCdc(const CdcMessage& m,
                                 std::span<std::byte> out) {
  if (out.size() < kSmcdCdcLen) {
    return WireError{WireErrc::kBufferTooSmall, "smcd_cdc.message"};
  }
  std::byte* p = out.data();
  for (size_t i = 0; i < kSmcdCdcLen; ++i) p[i] = std::byte{0};
  Store8(p + kSmcdOffType, kCdcType);
  StoreLe16(p + kSmcdOffProd, m.producer.wrap);
  StoreLe32(p + kSmcdOffProd + kSmcdCursorCount, m.producer.count);
  StoreLe16(p + kSmcdOffCons, m.consumer.wrap);
  StoreLe32(p + kSmcdOffCons + kSmcdCursorCount, m.consumer.count);
  Store8(p + kSmcdOffProdFlags, EncodeCdcProducerFlags(m.prod_flags));
  Store8(p + kSmcdOffConnState, EncodeCdcConnStateFlags(m.conn_state));
  return kSmcdCdcLen;
}

std::string DescribeCdc(const CdcMessage& m) {
  std::string s;
  auto line = [&s](const char* field, const std::string& value) {
    s += field;
    s += ": ";
    s += value;
    s += '\n';
  };
  auto flag = [](bool b) { return std::string(b ? "1" : "0"); };
  std::array<char, 16> tok{};
  std::snprintf(tok.data(), tok.size(), "0x%08x",
                static_cast<unsigned>(m.alert_token));
  line("seqno", std::to_string(m.seqno));
  line("alert_token", tok.data());
  line("producer", ToString(m.producer));
  line("consumer", ToString(m.consumer));
  line("write_blocked", flag(m.prod_flags.write_blocked));
  line("urg_data_pending", flag(m.prod_flags.urg_data_pending));
  line("urg_data_present", flag(m.prod_flags.urg_data_present));
  line("cons_curs_upd_req", flag(m.prod_flags.cons_curs_upd_req));
  line("failover_validation", flag(m.prod_flags.failover_validation));
  line("peer_done_writing", flag(m.conn_state.peer_done_writing));
  line("peer_conn_closed", flag(m.conn_state.peer_conn_closed));
  line("peer_conn_abort", flag(m.conn_state.peer_conn_abort));
  return s;
}

}  // namespace usmc::wire
