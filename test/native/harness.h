// The native tests' minimal harness (no framework): each test is a function
// run by Run(); a test fails when any CHECK in it fails. A test binary prints
// "NAME: N passed, N failed" last and exits nonzero when anything failed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace devmove_test {

inline int g_passed = 0;
inline int g_failed = 0;
inline int g_current_failures = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      ++g_current_failures;                                                          \
      std::printf("    CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                                \
  } while (0)

#define CHECK_EQ(a, b)                                                                          \
  do {                                                                                          \
    const auto _va = (a);                                                                       \
    const auto _vb = (b);                                                                       \
    if (!(_va == _vb)) {                                                                        \
      ++g_current_failures;                                                                     \
      std::printf("    CHECK_EQ failed at %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, \
                  static_cast<long long>(_va), static_cast<long long>(_vb));                    \
    }                                                                                           \
  } while (0)

// Stops the current test when a precondition for the rest of it fails.
#define REQUIRE(cond)                                                                \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      ++g_current_failures;                                                          \
      std::printf("    REQUIRE failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
      return;                                                                        \
    }                                                                                \
  } while (0)

inline void Run(const char* name, const std::function<void()>& test) {
  g_current_failures = 0;
  std::printf("- %s\n", name);
  std::fflush(stdout);
  test();
  if (g_current_failures == 0) {
    ++g_passed;
    std::printf("  ok   %s\n", name);
  } else {
    ++g_failed;
    std::printf("  FAIL %s (%d checks failed)\n", name, g_current_failures);
  }
  std::fflush(stdout);
}

inline void Note(const std::string& s) { std::printf("    note: %s\n", s.c_str()); }

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}


}  // namespace devmove_test
