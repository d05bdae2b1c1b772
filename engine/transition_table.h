// engine/transition_table.h: a declared (state, event) -> targets table.
//
// Each machine lists its legal (state, event) pairs and the states each may
// lead to (fizz's FIZZ_DECLARE_EVENT_HANDLER, as a constexpr array). A
// handler asks Declared() first (unlisted pairs go to the machine's one
// InvalidEvent path) and Allowed() before it moves.
//
//   constexpr Transition<S, E> kTable[] = {{S::kA, E::kGo, {S::kB}, 1}};
//   if (!Declared(kTable, state, event)) return InvalidEvent(...);
#ifndef USMC_ENGINE_TRANSITION_TABLE_H_
#define USMC_ENGINE_TRANSITION_TABLE_H_

#include <cstdint>
#include <span>

namespace usmc::engine {

template <typename State, typename EventT>
struct Transition {
  State from;
  EventT event;
  State to[4];  // the allowed next states, to_count of them
  uint8_t to_count;
};

template <typename State, typename EventT>
const Transition<State, EventT>* FindTransition(
    std::span<const Transition<State, EventT>> table, State from,
    EventT event) {
  for (const auto& t : table) {
    if (t.from == from && t.event == event) return &t;
  }
  return nullptr;
}

template <typename State, typename EventT>
bool Declared(std::span<const Transition<State, EventT>> table, State from,
              EventT event) {
  return FindTransition(table, from, event) != nullptr;
}

template <typename State, typename EventT>
bool Allowed(std::span<const Transition<State, EventT>> table, State from,
             EventT event, State to) {
  const auto* t = FindTransition(table, from, event);
  if (t == nullptr) return false;
  for (uint8_t i = 0; i < t->to_count; ++i) {
    if (t->to[i] == to) return true;
  }
  return false;
}

}  // namespace usmc::engine

#endif  // USMC_ENGINE_TRANSITION_TABLE_H_
