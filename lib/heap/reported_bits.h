// One bit per heap page: set when the page is known not to be resident
// (given back with madvise, or fresh from the OS and never touched).
//
// A bitmap rather than a byte in each page descriptor, so that counting the
// reported pages of a block is a few popcounts instead of a walk over its
// descriptors (the buddy counts both halves of a partly reported block each
// time it splits one).
//
// Ownership follows the pages: a free page's bit changes under the heap
// lock, a slab page's under its bin's lock, an isolated block's in the
// reporter. Pages under different locks share words, so every write is an
// atomic read-modify-write of the word (relaxed: the locks order the rest).
#pragma once
#include <cstdint>

namespace ebb {

class ReportedBits {
 public:
  void init(uint64_t* words) { w_ = words; }

  bool test(uint32_t i) const { return (load(i >> 6) >> (i & 63)) & 1; }

  void set(uint32_t i, uint32_t n) {
    for_words(i, n, [this](uint32_t w, uint64_t m) { __atomic_fetch_or(&w_[w], m, __ATOMIC_RELAXED); });
  }
  void clear(uint32_t i, uint32_t n) {
    for_words(i, n, [this](uint32_t w, uint64_t m) { __atomic_fetch_and(&w_[w], ~m, __ATOMIC_RELAXED); });
  }
  uint32_t count(uint32_t i, uint32_t n) const {
    uint32_t c = 0;
    for_words(i, n, [&](uint32_t w, uint64_t m) { c += static_cast<uint32_t>(__builtin_popcountll(load(w) & m)); });
    return c;
  }

  // Bits [i, i+n) with n <= 64 and the range inside one word (a slab: an
  // aligned block of at most 64 pages), as a mask whose bit 0 is page i.
  uint64_t get_mask(uint32_t i, uint32_t n) const { return (load(i >> 6) >> (i & 63)) & low_mask(n); }
  void set_mask(uint32_t i, uint64_t m) { __atomic_fetch_or(&w_[i >> 6], m << (i & 63), __ATOMIC_RELAXED); }
  void clear_mask(uint32_t i, uint64_t m) { __atomic_fetch_and(&w_[i >> 6], ~(m << (i & 63)), __ATOMIC_RELAXED); }

  // The first run of clear bits in [i, end): true and [*a, *b) if any.
  bool next_clear_run(uint32_t i, uint32_t end, uint32_t* a, uint32_t* b) const {
    while (i < end && test(i)) {
      const uint64_t rest = ~(load(i >> 6) >> (i & 63));  // clear bits from i on
      i += rest ? static_cast<uint32_t>(__builtin_ctzll(rest)) : 64 - (i & 63);
    }
    if (i >= end) return false;
    *a = i;
    while (i < end && !test(i)) {
      const uint64_t rest = load(i >> 6) >> (i & 63);  // set bits from i on
      i += rest ? static_cast<uint32_t>(__builtin_ctzll(rest)) : 64 - (i & 63);
    }
    *b = i < end ? i : end;
    return true;
  }

 private:
  static uint64_t low_mask(uint32_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }
  uint64_t load(uint32_t w) const { return __atomic_load_n(&w_[w], __ATOMIC_RELAXED); }
  template <class F>
  static void for_words(uint32_t i, uint32_t n, F f) {
    while (n) {
      const uint32_t off = i & 63;
      const uint32_t take = n < 64 - off ? n : 64 - off;
      f(i >> 6, low_mask(take) << off);
      i += take;
      n -= take;
    }
  }
  uint64_t* w_ = nullptr;
};

}  // namespace ebb
