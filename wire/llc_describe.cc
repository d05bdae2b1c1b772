// LLC names and human-readable descriptions.
#include <cstdio>

#include "wire/llc.h"

namespace usmc::wire {
namespace {

std::string Hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%0*llx", width,
                static_cast<unsigned long long>(v));
  return buf;
}

template <size_t N>
std::string HexBytes(const std::array<uint8_t, N>& a, char sep) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < N; ++i) {
    if (i != 0 && sep != 0) s += sep;
    std::snprintf(buf, sizeof(buf), "%02x", a[i]);
    s += buf;
  }
  return s;
}

// GIDs print as IPv6 text groups; IPv4-mapped RoCEv2 GIDs read
// "::ffff:10.0.0.1"-like enough as "0000:...:ffff:0a00:0001".
std::string GidText(const Gid& g) {
  std::string s;
  char buf[8];
  for (size_t i = 0; i < g.size(); i += 2) {
    if (i != 0) s += ':';
    std::snprintf(buf, sizeof(buf), "%02x%02x", g[i], g[i + 1]);
    s += buf;
  }
  return s;
}

class Lines {
 public:
  void Add(const char* field, const std::string& value) {
    s_ += field;
    s_ += ": ";
    s_ += value;
    s_ += '\n';
  }
  void Add(const char* field, uint64_t value) {
    Add(field, std::to_string(value));
  }
  void Flag(const char* field, bool value) { Add(field, value ? "1" : "0"); }
  std::string Take() { return std::move(s_); }

 private:
  std::string s_;
};

void Header(Lines& l, LlcType type, const LlcHeader& h) {
  std::string t(ToString(type));
  if (h.v2) t += " v2";
  l.Add("type", t);
  l.Add("length", h.length);
  l.Flag("response", h.response);
}

struct Describer {
  Lines& l;

  void operator()(const LlcConfirmLink& m) {
    Header(l, LlcType::kConfirmLink, m.hdr);
    l.Flag("no_rmbe_eyecatcher", m.no_rmbe_eyecatcher);
    l.Add("sender_mac", HexBytes(m.sender_mac, ':'));
    l.Add("sender_gid", GidText(m.sender_gid));
    l.Add("sender_qpn", Hex(m.sender_qpn, 6));
    l.Add("link_num", m.link_num);
    l.Add("link_uid", Hex(m.link_uid, 8));
    l.Add("max_links", m.max_links);
    l.Add("max_conns", m.max_conns);
  }
  void operator()(const LlcAddLink& m) {
    Header(l, LlcType::kAddLink, m.hdr);
    l.Flag("rejected", m.rejected);
    l.Add("reject_reason", m.reject_reason);
    l.Add("sender_mac", HexBytes(m.sender_mac, ':'));
    l.Add("sender_gid", GidText(m.sender_gid));
    l.Add("sender_qpn", Hex(m.sender_qpn, 6));
    l.Add("link_num", m.link_num);
    l.Add("qp_mtu", m.qp_mtu);
    l.Add("initial_psn", Hex(m.initial_psn, 6));
    if (!m.has_v2_ext) return;
    l.Flag("v2_direct", m.v2_direct);
    l.Add("client_target_gid", GidText(m.client_target_gid));
    l.Add("num_rkeys", m.num_rkeys);
    for (size_t i = 0; i < m.num_rkeys && i < m.rkeys.size(); ++i) {
      const LlcRkeyPair& r = m.rkeys[i];
      l.Add("rkey", Hex(r.rkey, 8) + " new " + Hex(r.rkey_new, 8) + " vaddr " +
                        Hex(r.vaddr_new, 16));
    }
  }
  void operator()(const LlcAddLinkCont& m) {
    Header(l, LlcType::kAddLinkCont, m.hdr);
    l.Add("link_num", m.link_num);
    l.Add("num_rkeys", m.num_rkeys);
    for (const LlcRkeyPair& r : m.rkeys) {
      l.Add("rkey", Hex(r.rkey, 8) + " new " + Hex(r.rkey_new, 8) + " vaddr " +
                        Hex(r.vaddr_new, 16));
    }
  }
  void operator()(const LlcDeleteLink& m) {
    Header(l, LlcType::kDeleteLink, m.hdr);
    l.Flag("all", m.all);
    l.Flag("orderly", m.orderly);
    l.Add("link_num", m.link_num);
    l.Add("reason", Hex(m.reason, 8) + " " +
                        std::string(LlcDeleteLinkReasonName(m.reason)));
  }
  void operator()(const LlcReqAddLink& m) {
    Header(l, LlcType::kReqAddLink, m.hdr);
    l.Flag("rejected", m.rejected);
    l.Add("reject_reason", m.reject_reason);
    l.Add("gid_cnt", m.gid_cnt);
    for (size_t i = 0; i < m.gid_cnt; ++i) l.Add("gid", GidText(m.gids[i]));
  }
  void operator()(const LlcConfirmRkey& m) {
    Header(l, LlcType::kConfirmRkey, m.hdr);
    l.Flag("negative", m.negative);
    l.Flag("retry", m.retry);
    l.Add("num_other_rtokens", m.num_other_rtokens);
    for (size_t i = 0; i < m.rtokens.size(); ++i) {
      const LlcRtoken& r = m.rtokens[i];
      l.Add("rtoken", "link " + std::to_string(r.link_id) + " rkey " +
                          Hex(r.rkey, 8) + " vaddr " + Hex(r.vaddr, 16));
    }
  }
  void operator()(const LlcConfirmRkeyCont& m) {
    Header(l, LlcType::kConfirmRkeyCont, m.hdr);
    l.Flag("negative", m.negative);
    l.Flag("retry", m.retry);
    l.Add("num_rkeys", m.num_rkeys);
    for (const LlcRtoken& r : m.rtokens) {
      l.Add("rtoken", "link " + std::to_string(r.link_id) + " rkey " +
                          Hex(r.rkey, 8) + " vaddr " + Hex(r.vaddr, 16));
    }
  }
  void operator()(const LlcTestLink& m) {
    Header(l, LlcType::kTestLink, m.hdr);
    l.Add("user_data", HexBytes(m.user_data, 0));
  }
  void operator()(const LlcDeleteRkey& m) {
    Header(l, LlcType::kDeleteRkey, m.hdr);
    l.Flag("negative", m.negative);
    l.Add("num_rkeys", m.num_rkeys);
    if (m.hdr.v2) {
      l.Add("num_inval_rkeys", m.num_inval_rkeys);
    } else {
      l.Add("error_mask", Hex(m.error_mask, 2));
    }
    for (size_t i = 0; i < m.num_rkeys; ++i) l.Add("rkey", Hex(m.rkeys[i], 8));
  }
};

}  // namespace

std::string_view ToString(LlcType t) {
  switch (t) {
    case LlcType::kConfirmLink:
      return "CONFIRM_LINK";
    case LlcType::kAddLink:
      return "ADD_LINK";
    case LlcType::kAddLinkCont:
      return "ADD_LINK_CONT";
    case LlcType::kDeleteLink:
      return "DELETE_LINK";
    case LlcType::kReqAddLink:
      return "REQ_ADD_LINK";
    case LlcType::kConfirmRkey:
      return "CONFIRM_RKEY";
    case LlcType::kTestLink:
      return "TEST_LINK";
    case LlcType::kConfirmRkeyCont:
      return "CONFIRM_RKEY_CONT";
    case LlcType::kDeleteRkey:
      return "DELETE_RKEY";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, LlcType t) {
  return os << ToString(t);
}

std::string_view ToString(LlcDeleteLinkReason r) {
  switch (r) {
    case LlcDeleteLinkReason::kNone:
      return "NONE";
    case LlcDeleteLinkReason::kLostPath:
      return "LOST_PATH";
    case LlcDeleteLinkReason::kOpInitTerm:
      return "OP_INIT_TERM";
    case LlcDeleteLinkReason::kProgInitTerm:
      return "PROG_INIT_TERM";
    case LlcDeleteLinkReason::kProtViol:
      return "PROT_VIOL";
    case LlcDeleteLinkReason::kNoAsymNeeded:
      return "NO_ASYM_NEEDED";
    case LlcDeleteLinkReason::kNoLnk:
      return "NOLNK";
    case LlcDeleteLinkReason::kNoLgr:
      return "NOLGR";
  }
  return "UNKNOWN";
}

std::ostream& operator<<(std::ostream& os, LlcDeleteLinkReason r) {
  return os << ToString(r);
}

std::string_view LlcDeleteLinkReasonName(uint32_t code) {
  return ToString(static_cast<LlcDeleteLinkReason>(code));
}

std::string DescribeLlc(const LlcMessage& m) {
  Lines l;
  std::visit(Describer{l}, m);
  return l.Take();
}

}  // namespace usmc::wire
