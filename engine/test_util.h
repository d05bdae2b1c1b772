// engine/test_util.h: helpers for engine tests (fizz's ProtocolTest.h):
// check the exact sequence of action types, fetch one action, build peer
// messages with defaults plus overrides.
//
//   ExpectActions<SendTcp, ArmTimer>(out);
//   const SendTcp& s = Nth<SendTcp>(out, 0);
#ifndef USMC_ENGINE_TEST_UTIL_H_
#define USMC_ENGINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <array>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/actions.h"
#include "engine/params.h"
#include "wire/clc.h"

namespace usmc::engine::testing {

template <typename T>
constexpr size_t ActionIndex() {
  return Action(std::in_place_type<T>).index();
}

inline std::string Describe(const Actions& a) {
  std::ostringstream os;
  os << a;
  return os.str();
}

// The actions are exactly Ts..., in this order.
template <typename... Ts>
void ExpectActions(const Actions& a) {
  const std::vector<size_t> want = {ActionIndex<Ts>()...};
  std::vector<size_t> got;
  for (const Action& x : a) got.push_back(x.index());
  EXPECT_EQ(got, want) << "actions: " << Describe(a);
  EXPECT_EQ(a.dropped(), 0u);
}

// The i-th action, which must be a T.
template <typename T>
const T& Nth(const Actions& a, size_t i) {
  static const T kEmpty{};
  if (i >= a.size() || !std::holds_alternative<T>(a[i])) {
    ADD_FAILURE() << "action " << i << " is not the expected type in "
                  << Describe(a);
    return kEmpty;
  }
  return std::get<T>(a[i]);
}

// The first T in the list, or nullptr.
template <typename T>
const T* FindAction(const Actions& a) {
  for (const Action& x : a) {
    if (const T* t = std::get_if<T>(&x)) return t;
  }
  return nullptr;
}

inline EngineParams TestParams(Role role) {
  EngineParams p;
  p.role = role;
  p.device = SmcdDevice{0xA1A2A3A4A5A6A7A8ULL, 0xB1B2B3B4B5B6B7B8ULL, 0xFFFF};
  p.eid = wire::MakeClcEid("USMC-TEST");
  p.hostname = wire::MakeClcHostname("test");
  p.dmb_size = 64 * 1024;
  return p;
}

inline std::vector<std::byte> EncodeClcBytes(const wire::ClcMessage& m) {
  std::array<std::byte, wire::kClcMaxMessageLen> buf;
  wire::WireResult<size_t> n = wire::EncodeClc(m, buf);
  EXPECT_TRUE(n.ok());
  return std::vector<std::byte>(buf.begin(), buf.begin() + (n.ok() ? *n : 0));
}

// Decodes the bytes of a SendTcp action.
inline wire::ClcMessage DecodeSent(const SendTcp& s) {
  wire::WireResult<wire::ClcMessage> m = wire::DecodeClc(s.bytes);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().ToString());
  return m.ok() ? *m : wire::ClcMessage{};
}

}  // namespace usmc::engine::testing

#endif  // USMC_ENGINE_TEST_UTIL_H_
