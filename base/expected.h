// base/expected.h: Expected<T, E>, a value or an error, for layers whose
// errors are not a Status (wire/ decoders return a WireError that never
// allocates). C++20 has no std::expected.
//
//   Expected<Header, WireError> h = DecodeHeader(bytes);
//   if (!h) return h.error();
#ifndef USMC_BASE_EXPECTED_H_
#define USMC_BASE_EXPECTED_H_

#include <utility>
#include <variant>

namespace usmc {

template <typename E>
struct Unexpected {
  E error;
};
template <typename E>
Unexpected(E) -> Unexpected<E>;

template <typename T, typename E>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Expected(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  Expected(Unexpected<E> u)
      : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const E& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, E> v_;
};

}  // namespace usmc

#endif  // USMC_BASE_EXPECTED_H_
