// Size classes for small objects (<= 32 KiB): multiples of 16 up to 128,
// then four classes per power of two (at most 25% internal waste, 12.5% on
// average). Each class has a slab order (slabs are buddy blocks) chosen so a
// slab holds at least 8 objects and wastes at most 1/16 of itself (and, up
// to 128 B, is 64 KiB or holds 1024 objects; from 4 KiB, holds 32 objects
// or is 256 KiB: make_class), and a
// thread-cache capacity that keeps about 128 KiB of each class per thread
// once the thread uses the class (it starts at about 4 KiB).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/config.h"

namespace ebb {

constexpr unsigned kNumClasses = 40;  // class ids 1..40; 0 means "not a small object"
constexpr unsigned kMaxSlabObjects = 1024;
// The size of a thread cache's per-class bin (front/thread_cache.h).
constexpr unsigned kBinBytes = 32;

struct SizeClass {
  uint32_t size;
  uint32_t slab_order;
  uint32_t objects;    // per slab
  uint32_t cache_max;  // thread cache capacity
  uint32_t cache_init; // a new (or drained) cache's capacity, doubled up to cache_max by use
  uint32_t magic;      // ceil(2^32 / size): offset -> index without dividing
};

namespace detail {
constexpr uint32_t class_size(unsigned c) {
  if (c <= 8) return 16 * c;
  const unsigned k = c - 9;                   // 0.. : 4 classes per doubling from 128
  const uint32_t base = 128u << (k / 4);       // 128, 256, ...
  return base + (base / 4) * (k % 4 + 1);
}
constexpr SizeClass make_class(unsigned c) {
  SizeClass sc{};
  if (c == 0) return sc;
  sc.size = class_size(c);
  // Classes of a page and more want 32 objects a slab (at most 256 KiB: the
  // page masks' 64 pages). Their objects span a page or more, so the pages
  // of free ones are wholly free and reported as a free slab's would be, and
  // only pages an object was handed from are ever touched: a larger slab
  // costs next to no resident memory. With 8 objects a slab, a thread
  // cycling through more of them than its cache holds emptied and re-made a
  // slab every 8 (bench/fastpath/batch.c 8192 in LIFO order: 507 -> 388
  // instructions a malloc/free pair, 1000 objects a round).
  const uint64_t least = sc.size >= 4096 ? 32 : 8;
  unsigned o = 2;
  for (;; ++o) {
    const uint64_t slab = uint64_t{4096} << o;
    const uint64_t n = slab / sc.size;
    if (n > kMaxSlabObjects) {
      --o;  // never more objects than the bitmap holds (only for tiny classes)
      break;
    }
    if (n >= least && (slab - n * sc.size) * 16 <= slab) break;
    if (o == 6) break;  // the largest slab (32 KiB objects: 8 of them)
  }
  // The classes of 128 B and less, of which a heap may hold millions: slabs
  // of 64 KiB, or of the bitmap's most objects (1024), so that the header
  // (96-216 B with its bitmap) is 0.2-0.7% of a slab, not 0.6-1.3% (a python
  // heap of 64 B strings: 0.73% of it in slab headers with 16 KiB slabs).
  // Only pages a slab hands objects from are ever touched.
  if (sc.size <= 128)
    while ((uint64_t{4096} << (o + 1)) <= 64 * 1024 && (uint64_t{4096} << (o + 1)) / sc.size <= kMaxSlabObjects) ++o;
  sc.slab_order = o;
  uint64_t objs = (uint64_t{4096} << o) / sc.size;
  sc.objects = static_cast<uint32_t>(objs > kMaxSlabObjects ? kMaxSlabObjects : objs);
  uint32_t cap = (128 * 1024) / sc.size;
  sc.cache_max = cap < 4 ? 4 : (cap > 4096 ? 4096 : cap);
  // Slow start: about 4 KiB of a class at first, so that a small program's
  // caches stay small; each slow-path call on the class doubles it.
  const uint32_t init = 4096 / sc.size;
  sc.cache_init = init < 2 ? 2 : (init > sc.cache_max ? sc.cache_max : init);
  sc.magic = static_cast<uint32_t>(((uint64_t{1} << 32) + sc.size - 1) / sc.size);
  return sc;
}
// One byte per 16-byte step up to kSmallMax (32 KiB): a lookup with no
// branch on the size (the fast path's; only the entries of sizes in use are
// ever in the CPU's caches).
struct ClassTable {
  SizeClass c[kNumClasses + 1];
  uint8_t by16[kSmallMax / 16 + 1];  // index (size+15)/16
};
constexpr ClassTable make_table() {
  ClassTable t{};
  for (unsigned c = 0; c <= kNumClasses; ++c) t.c[c] = make_class(c);
  unsigned c = 1;
  for (unsigned i = 0; i <= kSmallMax / 16; ++i) {
    const uint32_t sz = i * 16;
    while (t.c[c].size < sz) ++c;
    t.by16[i] = static_cast<uint8_t>(i == 0 ? 1 : c);
  }
  return t;
}
}  // namespace detail

inline constexpr detail::ClassTable kClasses = detail::make_table();
static_assert(detail::class_size(kNumClasses) == kSmallMax, "largest class is kSmallMax");

// Precondition: size <= kSmallMax.
EBB_INLINE unsigned size_class(size_t size) { return kClasses.by16[(size + 15) >> 4]; }

// kClasses.by16 times kBinBytes: the offset of the class's bin in a thread
// cache's bin array (malloc's fast path then needs no shift), for the copy in
// the fast path's globals (front/globals.h).
struct BinOffsets {
  constexpr BinOffsets() {
    for (unsigned i = 0; i <= kSmallMax / 16; ++i) off[i] = static_cast<uint16_t>(kClasses.by16[i] * kBinBytes);
  }
  uint16_t off[kSmallMax / 16 + 1] = {};
};
EBB_INLINE const SizeClass& class_info(unsigned c) { return kClasses.c[c]; }

}  // namespace ebb
