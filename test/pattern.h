// Byte patterns for live blocks: byte i of a block is a function of (seed, i),
// so a block can be filled in parts (realloc growth keeps the prefix valid)
// and any lost or foreign byte is found. Used by the fault injection, soak
// and fuzz suites.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ebbtest {

// Not instrumented by the fuzzer build: coverage of these compares would cost
// most of its run time and guide nothing.
#if defined(__clang__)
#define EBB_PATTERN_FN __attribute__((no_sanitize("coverage"), noinline))
#else
#define EBB_PATTERN_FN __attribute__((noinline))
#endif

inline uint64_t pattern_word(uint32_t seed, size_t w) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (w * 0xD6E8FEB86659FD93ull);
}
inline unsigned char pattern_byte(uint32_t seed, size_t i) {
  return static_cast<unsigned char>(pattern_word(seed, i / 8) >> (8 * (i % 8)));
}

// Writes the pattern into bytes [from, to) of p.
EBB_PATTERN_FN inline void pattern_fill(void* block, uint32_t seed, size_t from, size_t to) {
  unsigned char* p = static_cast<unsigned char*>(block);
  size_t i = from;
  for (; i < to && i % 8; ++i) p[i] = pattern_byte(seed, i);
  for (; i + 8 <= to; i += 8) {
    const uint64_t w = pattern_word(seed, i / 8);
    __builtin_memcpy(p + i, &w, 8);
  }
  for (; i < to; ++i) p[i] = pattern_byte(seed, i);
}

// True if bytes [0, n) of p hold the pattern.
EBB_PATTERN_FN inline bool pattern_ok(const void* block, uint32_t seed, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(block);
  uint64_t diff = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, p + i, 8);
    diff |= w ^ pattern_word(seed, i / 8);
  }
  for (; i < n; ++i) diff |= p[i] ^ pattern_byte(seed, i);
  return diff == 0;
}

EBB_PATTERN_FN inline bool all_zero(const void* block, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(block);
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

}  // namespace ebbtest
