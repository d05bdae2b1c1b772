// base/overloaded.h: the usual visitor helper for std::visit over a set of
// lambdas.
//
//   std::visit(Overloaded{[](const A&) {...}, [](const B&) {...}}, v);
#ifndef USMC_BASE_OVERLOADED_H_
#define USMC_BASE_OVERLOADED_H_

namespace usmc::base {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace usmc::base

#endif  // USMC_BASE_OVERLOADED_H_
