// Where a slab's objects lie on its pages: which pages an object overlaps,
// which objects overlap a page. Shared by the central bins (reporting wholly
// free pages) and the resident floor (pages holding a live object).
#pragma once
#include <cstdint>

#include "common/config.h"
#include "front/size_classes.h"

namespace ebb {

// Bits a..b (inclusive, b < 64).
constexpr uint64_t span_mask(uint32_t a, uint32_t b) {
  const uint32_t n = b - a + 1;
  return (n >= 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << a;
}

inline uint32_t slab_pages(const SizeClass& sc) { return uint32_t{1} << sc.slab_order; }

// Pages holding (part of) an object; the rest of a slab is slack, never
// touched by an object.
inline uint64_t object_pages(const SizeClass& sc) {
  return span_mask(0, static_cast<uint32_t>((uint64_t{sc.objects} * sc.size - 1) >> kPageShift));
}

// The first and the last slab page object i lies on.
inline uint32_t first_page_of(const SizeClass& sc, uint64_t i) {
  return static_cast<uint32_t>(i * sc.size >> kPageShift);
}
inline uint32_t last_page_of(const SizeClass& sc, uint64_t i) {
  return static_cast<uint32_t>((i * sc.size + sc.size - 1) >> kPageShift);
}
inline uint64_t pages_of_object(const SizeClass& sc, uint64_t i) {
  return span_mask(first_page_of(sc, i), last_page_of(sc, i));
}

// The objects overlapping slab page p are [*a, *b]; false for a slack page.
inline bool objects_of_page(const SizeClass& sc, uint32_t p, uint32_t* a, uint32_t* b) {
  const uint64_t lo = uint64_t{p} << kPageShift;
  *a = static_cast<uint32_t>(lo / sc.size);
  if (*a >= sc.objects) return false;
  const uint64_t last = (lo + kPageSize - 1) / sc.size;
  *b = last >= sc.objects ? sc.objects - 1 : static_cast<uint32_t>(last);
  return true;
}

// Calls f(word, mask) for the bitmap words covering bits [a, b].
template <class F>
void for_bit_range(uint32_t a, uint32_t b, F f) {
  for (uint32_t w = a >> 6; w <= b >> 6; ++w)
    f(w, span_mask(w == a >> 6 ? a & 63 : 0, w == b >> 6 ? b & 63 : 63));
}

}  // namespace ebb
