// tools/status_json.h: how `usmc ss` and `usmc stats` turn the published
// status (runtime/publish.h) into text fields and JSON. The JSON shapes are
// documented in docs/status-schema.json; keep the two in step.
//
//   nlohmann::json c = ConnToJson(proc, rec);   // one `usmc ss` entry
//   std::string a = FormatAddr(rec.local);       // "[::1]:8080"
#ifndef USMC_TOOLS_STATUS_JSON_H_
#define USMC_TOOLS_STATUS_JSON_H_

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/common.h"
#include "runtime/publish.h"
#include "wire/reason.h"

namespace usmc::tools {

// "ip:port", IPv6 as "[addr]:port"; "*" when unknown.
inline std::string FormatAddr(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    return fmt::format("{}:{}", ip, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    return fmt::format("[{}]:{}", ip, ntohs(a->sin6_port));
  }
  return "*";
}

// The live processes of `dir`, or of every directory StatusDirsToRead()
// names when `dir` is empty. A file another usmc version wrote is named on
// stderr (stdout stays one JSON document), not shown as if it were empty.
inline std::vector<runtime::ProcessStatus> ReadProcesses(
    const std::string& dir) {
  std::vector<runtime::ProcessStatus> all;
  const std::vector<std::string> dirs =
      dir.empty() ? runtime::StatusDirsToRead() : std::vector<std::string>{dir};
  std::vector<std::string> problems;
  runtime::ReadOptions opts;
  opts.problems = &problems;
  for (const std::string& d : dirs)
    for (runtime::ProcessStatus& p : runtime::ReadAllStatus(d, opts))
      all.push_back(std::move(p));
  for (const std::string& p : problems) std::cerr << "usmc: " << p << "\n";
  return all;
}

// A GID as IPv6 text (RoCEv2 GIDs are IPv6 addresses, as `rdma link` and
// the kernel's smcr tools show them).
inline std::string GidText(const uint8_t (&gid)[16]) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, gid, text, sizeof(text));
  return text;
}

inline std::string SystemIdText(const uint8_t (&id)[8]) {
  std::string s;
  for (uint8_t b : id) s += fmt::format("{:02x}", b);
  return s;
}

// The SMC-R part of a connection of mode SMCR.
inline nlohmann::json SmcrConnJson(const runtime::ConnRecord& r) {
  return {{"lgr_id", r.smcr.lgr_id},
          {"qpn", r.smcr.qpn},
          {"peer_qpn", r.smcr.peer_qpn},
          {"peer_gid", GidText(r.smcr.peer_gid)},
          {"token", r.smcr.token}};
}

// One link group (a record of kind kLinkGroup).
inline nlohmann::json LgrToJson(const runtime::ProcessStatus& p,
                                const runtime::ConnRecord& r) {
  const runtime::SmcrRecord& m = r.smcr;
  return {{"pid", r.pid},
          {"comm", p.comm},
          {"role", std::string(engine::ToString(r.role))},
          {"state", std::string(r.state, strnlen(r.state, sizeof(r.state)))},
          {"lgr_id", m.lgr_id},
          {"qpn", m.qpn},
          {"peer_qpn", m.peer_qpn},
          {"peer_gid", GidText(m.peer_gid)},
          {"system_id", SystemIdText(m.system_id)},
          {"peer_system_id", SystemIdText(m.peer_system_id)},
          {"connections", m.conns},
          {"llc",
           {{"sent", m.llc_sent},
            {"received", m.llc_received},
            {"confirm_rkey_sent", m.confirm_rkey_sent},
            {"confirm_rkey_received", m.confirm_rkey_received},
            {"delete_rkey_sent", m.delete_rkey_sent},
            {"delete_rkey_received", m.delete_rkey_received},
            {"test_link_sent", m.test_link_sent},
            {"test_link_received", m.test_link_received}}}};
}

inline std::string Hex32(uint32_t v) { return fmt::format("0x{:08x}", v); }

// Words for a reason code: "" for 0, else "NAME: meaning".
inline std::string ReasonText(uint32_t code) {
  if (code == 0) return "";
  return fmt::format("{}: {}", wire::ReasonName(code),
                     wire::ReasonMeaning(code));
}

inline std::string StateOf(const runtime::ConnRecord& r) {
  return std::string(r.state, strnlen(r.state, sizeof(r.state)));
}

inline nlohmann::json CursorJson(const runtime::CursorValue& c) {
  return {{"wrap", c.wrap}, {"count", c.count}};
}

inline nlohmann::json ConnToJson(const runtime::ProcessStatus& p,
                                 const runtime::ConnRecord& r) {
  nlohmann::json j = {
      {"pid", r.pid},
      {"comm", p.comm},
      {"fd", r.fd},
      {"inode", r.inode},
      {"uid", r.uid},
      {"role", std::string(engine::ToString(r.role))},
      {"state", StateOf(r)},
      {"mode", std::string(runtime::ToString(r.mode))},
      {"local", FormatAddr(r.local)},
      {"peer", FormatAddr(r.peer)},
      {"local_reason", r.local_reason},
      {"peer_reason", r.peer_reason},
      {"local_reason_text", ReasonText(r.local_reason)},
      {"peer_reason_text", ReasonText(r.peer_reason)},
      {"error", r.error},
      {"bytes_in", r.bytes_in},
      {"bytes_out", r.bytes_out},
      {"bytes_smc_in", r.bytes_smc_in},
      {"bytes_smc_out", r.bytes_smc_out},
      {"dmb_size", r.dmb_size},
      {"peer_dmb_size", r.peer_dmb_size},
      {"dmb_token", r.dmb_token},
      {"peer_dmb_token", r.peer_dmb_token},
      {"cursors",
       {{"tx_producer", CursorJson(r.tx_producer)},
        {"peer_consumer", CursorJson(r.peer_consumer)},
        {"rx_consumer", CursorJson(r.rx_consumer)},
        {"peer_producer", CursorJson(r.peer_producer)}}},
      {"wakeups_sent", r.wakeups_sent},
      {"wakeups_received", r.wakeups_received},
      {"buffer_full", r.buffer_full},
      {"cdc_sent", r.cdc_sent},
      {"cdc_received", r.cdc_received},
  };
  if (r.mode == runtime::ConnMode::kSmcr) j["smcr"] = SmcrConnJson(r);
  return j;
}

inline nlohmann::json HistJson(const uint64_t (&h)[runtime::kHistBuckets]) {
  nlohmann::json j = nlohmann::json::object();
  for (int b = 0; b < runtime::kHistBuckets; ++b)
    j[std::string(runtime::HistLabel(b))] = h[b];
  return j;
}

inline uint64_t SmcConnections(const runtime::ProcessCounters& c) {
  return c.smc_ok[0][0] + c.smc_ok[0][1] + c.smc_ok[1][0] + c.smc_ok[1][1];
}

inline uint64_t TotalConnections(const runtime::ProcessCounters& c) {
  return SmcConnections(c) + c.fallbacks[0] + c.fallbacks[1] +
         c.handshake_errors[0] + c.handshake_errors[1];
}

inline nlohmann::json CountersToJson(const runtime::ProcessCounters& c) {
  nlohmann::json reasons = nlohmann::json::array();
  for (int role = 0; role < 2; ++role)
    for (const runtime::FallbackCount& f : c.fallback_reasons[role])
      reasons.push_back({{"role", role == 0 ? "client" : "server"},
                         {"code", f.reason},
                         {"hex", Hex32(f.reason)},
                         {"name", std::string(wire::ReasonName(f.reason))},
                         {"text", ReasonText(f.reason)},
                         {"count", f.count}});
  return {
      {"connections",
       {{"total", TotalConnections(c)},
        {"smc",
         {{"client_v1", c.smc_ok[0][0]},
          {"client_v2", c.smc_ok[0][1]},
          {"server_v1", c.smc_ok[1][0]},
          {"server_v2", c.smc_ok[1][1]}}},
        {"tcp_fallback",
         {{"client", c.fallbacks[0]}, {"server", c.fallbacks[1]}}},
        {"handshake_errors",
         {{"client", c.handshake_errors[0]},
          {"server", c.handshake_errors[1]}}},
        {"not_shown", c.slot_overflow}}},
      {"rx",
       {{"bytes_smc", c.bytes_smc_in},
        {"bytes_tcp", c.bytes_tcp_in},
        {"requests", c.rx_calls},
        {"buffer_size_hist", HistJson(c.rx_buf_hist)},
        {"payload_size_hist", HistJson(c.rx_payload_hist)}}},
      {"tx",
       {{"bytes_smc", c.bytes_smc_out},
        {"bytes_tcp", c.bytes_tcp_out},
        {"requests", c.tx_calls},
        {"buffer_full", c.tx_buffer_full},
        {"buffer_size_hist", HistJson(c.tx_buf_hist)},
        {"payload_size_hist", HistJson(c.tx_payload_hist)}}},
      {"fallback_reasons", reasons},
      {"fallback_reasons_not_shown", c.fallback_overflow},
  };
}

// `usmc chk`'s verdict on the probe connection (a ConnToJson object):
// exit code 0 when SMC was used, 1 when not, with the reason in words.
struct ChkVerdict {
  int code;
  std::string text;
};

inline ChkVerdict VerdictOf(const nlohmann::json& c) {
  const std::string mode = c.value("mode", "");
  if (mode == "SMCD" || mode == "SMCR")
    return {0,
            fmt::format("Success, using {} (our DMB {} bytes, peer DMB {} "
                        "bytes)",
                        mode == "SMCD" ? "SMC-D" : "SMC-R",
                        c.value("dmb_size", 0u), c.value("peer_dmb_size", 0u))};
  if (mode == "TCP") {
    const uint32_t local = c.value("local_reason", 0u);
    const uint32_t peer = c.value("peer_reason", 0u);
    std::string t = fmt::format("Failed (TCP fallback), reason {} {}",
                                Hex32(local), ReasonText(local));
    if (peer != 0)
      t += fmt::format("; peer's diagnosis {} {}", Hex32(peer),
                       ReasonText(peer));
    if (local == wire::kReasonPeerNoSmc)
      t += ". The server did not offer SMC: it does not run under `usmc "
           "run`, or `usmc setup` is not done on its host";
    if (local == wire::kReasonNoNegotiation) t += ". Fix: sudo usmc setup";
    return {1, t};
  }
  return {1, fmt::format("Failed: the SMC handshake did not finish (state "
                         "{})",
                         c.value("state", std::string("?")))};
}

}  // namespace usmc::tools

#endif  // USMC_TOOLS_STATUS_JSON_H_
