// Sparse object patterns for the workloads whose point is the allocator's
// own cost (xmalloc, rptest, alloctest): as common.h's obj_alloc/obj_free,
// but only the first word of every 64-byte line of an object and its last
// word carry the pattern. Every cache line of the object is still written
// when it is allocated and read back before it is freed (so the allocator's
// cache behaviour counts), overlapping or swapped objects are still caught,
// and the checksum is still a sum of per-object digests; what is left out is
// the byte-by-byte fill, which would otherwise take ~90% of the run and hide
// the allocator's share.
#pragma once

#include "common.h"

namespace wl {

// Offsets of the pattern words: 0, 64, ... (each at least 8 bytes before
// the last word, at size - 8; size >= 16).
template <class F>
inline void for_each_line_word(size_t size, F&& f) {
  for (size_t o = 0; o + 16 <= size; o += 64) f(o);
  f(size - 8);
}

inline uint64_t line_word(uint64_t base, size_t off) { return base + uint64_t(off / 8) * kStep; }

inline void* obj_alloc_lines(uint64_t id, size_t size) {
  void* p = obj_allocate(id, size);
  if (api_for(id) == Api::Calloc)
    for_each_line_word(size, [&](size_t o) {
      uint64_t w;
      memcpy(&w, static_cast<char*>(p) + o, 8);
      if (w != 0) fail("calloc'd block %p of %zu bytes has a non-zero word at %zu", p, size, o);
    });
  const uint64_t base = pattern_base(id, size);
  for_each_line_word(size, [&](size_t o) {
    const uint64_t v = line_word(base, o);
    memcpy(static_cast<char*>(p) + o, &v, 8);
  });
  return p;
}

inline uint64_t obj_free_lines(void* p, uint64_t id, size_t size) {
  const uint64_t base = pattern_base(id, size);
  uint64_t sum = 0;
  for_each_line_word(size, [&](size_t o) {
    uint64_t w;
    memcpy(&w, static_cast<char*>(p) + o, 8);
    if (w != line_word(base, o))
      fail("check before free: object id=%#llx size=%zu at %p: word at %zu is %#llx, expected %#llx",
           (unsigned long long)id, size, p, o, (unsigned long long)w, (unsigned long long)line_word(base, o));
    sum += w;
  });
  obj_release(p, id, size);
  return object_digest(id, size, sum);
}

}  // namespace wl
