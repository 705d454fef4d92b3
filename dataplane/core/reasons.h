// Reason lists: one X-macro list yields an enum, its metric names and its help text.
//
// A list is written as
//   #define MY_REASONS(X) X(kFoo, 0, "foo", "help for foo") X(kBar, 1, "bar", "...")
// and declared with FULCRUM_DECLARE_REASONS(MyEnum, MY_REASONS), which defines
//   enum class MyEnum : uint8_t { kFoo = 0, kBar = 1 };
//   inline constexpr size_t kMyEnumCount;             // number of entries
//   constexpr std::string_view ReasonName(MyEnum);    // "foo": metric label, never renamed
//   constexpr std::string_view ReasonHelp(MyEnum);    // one line for HELP text and the CLI
// Values index counters in shared memory and names are metric labels: never renumber, reuse
// or rename an entry; append with the next value. The values must be 0..N-1 in list order
// (a static_assert checks it), so names and help are plain arrays indexed by value.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fulcrum::reasons_internal {

template <size_t N>
constexpr bool ValuesAreDense(const std::array<int, N>& values) {
  for (size_t i = 0; i < N; ++i) {
    if (values[i] != static_cast<int>(i)) return false;
  }
  return true;
}

}  // namespace fulcrum::reasons_internal

#define FULCRUM_REASON_ENUMERATOR_(name, value, metric, help) name = value,
#define FULCRUM_REASON_VALUE_(name, value, metric, help) value,
#define FULCRUM_REASON_METRIC_(name, value, metric, help) metric,
#define FULCRUM_REASON_HELP_(name, value, metric, help) help,
#define FULCRUM_REASON_ONE_(name, value, metric, help) +1

#define FULCRUM_DECLARE_REASONS(Enum, LIST)                                                      \
  enum class Enum : uint8_t { LIST(FULCRUM_REASON_ENUMERATOR_) };                                \
  inline constexpr size_t k##Enum##Count = 0 LIST(FULCRUM_REASON_ONE_);                          \
  static_assert(::fulcrum::reasons_internal::ValuesAreDense(                                     \
                    std::array<int, k##Enum##Count>{LIST(FULCRUM_REASON_VALUE_)}),               \
                #LIST " values must be 0..N-1 in list order");                                   \
  constexpr std::string_view ReasonName(Enum r) {                                                \
    constexpr std::array<std::string_view, k##Enum##Count> kNames = {                            \
        LIST(FULCRUM_REASON_METRIC_)};                                                           \
    const auto i = static_cast<size_t>(r);                                                       \
    return i < k##Enum##Count ? kNames[i] : std::string_view("unknown");                         \
  }                                                                                              \
  constexpr std::string_view ReasonHelp(Enum r) {                                                \
    constexpr std::array<std::string_view, k##Enum##Count> kHelp = {LIST(FULCRUM_REASON_HELP_)}; \
    const auto i = static_cast<size_t>(r);                                                       \
    return i < k##Enum##Count ? kHelp[i] : std::string_view("unknown");                          \
  }
