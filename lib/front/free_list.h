// What the front end keeps inside free small objects, and the checks that
// make misuse of them visible (docs/DESIGN.md, "Bad input").
//
// A small object on a thread cache's list or in a transfer batch holds two
// words of allocator data:
//   word 0  the link to the next object, encoded: next ^ slot ^ link_secret
//           (glibc's safe-linking, mimalloc's encoded free lists). A stray
//           write that does not know the per-process secret decodes to a
//           random address; every pop checks that the address is in the heap
//           (slow paths also check its class and that it is an object start).
//   word 1  free_key, a per-process random value (glibc's tcache key). free()
//           of an object whose word 1 is the key is probably a double free;
//           a slow walk of the caches, transfer batches and the slab decides
//           (a live object has word 1 cleared by malloc, so it only matches
//           if the program stored the key itself).
// Every small class is at least 16 bytes, so both words always exist.
//
// An object start is checked without dividing (Lemire, Kaser and Kurz,
// "Faster remainder by direct computation", 2019): slabs are aligned to
// their size, so off = p & slab_mask is the offset in the slab, and with
// mul = ceil(2^64 / size), off * mul (mod 2^64) is q*e for off = q*size
// (e = size*mul - 2^64, below size) and at least mul > 2^48 otherwise. So
// off * mul < objects * e holds exactly for the starts of the slab's objects
// (for a power-of-two size, e = 0 and the slab holds no slack: the limit is 1).
#pragma once
#include <cstdint>

#include "common/config.h"
#include "common/log.h"
#include "front/globals.h"
#include "front/size_classes.h"

namespace ebb {

struct ObjCheck {
  uint64_t mul;
  uint64_t lim;
  uint32_t mask;
};

constexpr ObjCheck obj_check(unsigned c) {
  if (c == 0 || c > kNumClasses) return ObjCheck{0, 0, 0};
  const SizeClass& sc = kClasses.c[c];
  const uint64_t d = sc.size;
  const uint64_t mul = ~uint64_t{0} / d + 1;
  const uint64_t e = d * mul;  // size*mul - 2^64
  return ObjCheck{mul, e ? uint64_t{sc.objects} * e : 1, static_cast<uint32_t>((uint64_t{kPageSize} << sc.slab_order) - 1)};
}

namespace detail {
constexpr bool obj_checks_sound() {
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const SizeClass& sc = kClasses.c[c];
    const uint64_t slab = uint64_t{kPageSize} << sc.slab_order;
    const uint64_t e = sc.size * (~uint64_t{0} / sc.size + 1);
    // Power-of-two sizes: no slack to reject (the mask bounds the offset).
    if (e == 0 && uint64_t{sc.objects} * sc.size != slab) return false;
    // Offsets fit 32 bits, and the multiples' products stay below every
    // non-multiple's (which is at least mul).
    if (slab > (uint64_t{1} << 32) || uint64_t{sc.objects} * e >= ~uint64_t{0} / sc.size) return false;
    // Only class 0 (large blocks) has limit 0 (free_not_small_start).
    if (obj_check(c).lim == 0) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::obj_checks_sound(), "object-start check constants");

struct ObjCheckTable {
  ObjCheck c[kNumClasses + 1];
};
constexpr ObjCheckTable make_obj_checks() {
  ObjCheckTable t{};
  for (unsigned c = 0; c <= kNumClasses; ++c) t.c[c] = obj_check(c);
  return t;
}
inline constexpr ObjCheckTable kObjChecks = make_obj_checks();

// p lies in a slab page of a class whose check constants are (mask, mul, lim).
EBB_INLINE bool object_start(uintptr_t p, uint32_t mask, uint64_t mul, uint64_t lim) {
  return ((p & mask) * mul) < lim;
}
EBB_INLINE bool object_start(const void* p, unsigned cls) {
  const ObjCheck& k = kObjChecks.c[cls];
  return object_start(reinterpret_cast<uintptr_t>(p), k.mask, k.mul, k.lim);
}

EBB_INLINE bool in_heap(const void* p) {
  return reinterpret_cast<uintptr_t>(p) - g_fast.base < g_fast.heap_extent();
}

// The class of the slab page p is in (p in the heap).
EBB_INLINE unsigned page_class_of(const void* p) {
  return page_class_at(reinterpret_cast<uintptr_t>(p) - g_fast.base);
}

EBB_INLINE void* link_load(const void* slot) {
  const uintptr_t w = *static_cast<const uintptr_t*>(slot);
  return reinterpret_cast<void*>(w ^ reinterpret_cast<uintptr_t>(slot) ^ g_fast.link_secret);
}
EBB_INLINE void link_store(void* slot, const void* next) {
  *static_cast<uintptr_t*>(slot) =
      reinterpret_cast<uintptr_t>(next) ^ reinterpret_cast<uintptr_t>(slot) ^ g_fast.link_secret;
}
// Asks for p's cache line in the exclusive state (PREFETCHW: a nop on CPUs
// without it, and for an address that is not mapped: prefetches never fault).
EBB_INLINE void prefetch_for_write(const void* p) { asm("prefetchw %0" : : "m"(*static_cast<const char*>(p))); }

EBB_INLINE uint64_t& key_word(void* p) { return static_cast<uint64_t*>(p)[1]; }
EBB_INLINE bool has_free_key(const void* p) { return static_cast<const uint64_t*>(p)[1] == g_fast.free_key; }

// A pointer read from a free list (decoded) is an object of class `cls`:
// in the heap, on a slab page of that class, at an object start.
EBB_INLINE bool valid_free_object(const void* p, unsigned cls) {
  return in_heap(p) && page_class_of(p) == cls && object_start(p, cls);
}

// Aborts: a free list of class `cls` led to `p`, which is not one of its
// objects (the list was overwritten: a write after free or an overflow).
[[noreturn]] void fatal_corrupt_list(Fn fn, const void* p, const char* where);
// Aborts with the reason `p` (in a slab page) is not an object start:
// unaligned, inside an object, or past the last object.
[[noreturn]] void fatal_not_object_start(Fn fn, const void* p);

// Cuts a list after its first n objects (n >= 1): the first n end with
// nullptr, and the rest is returned. Every link followed is checked to stay
// in the heap first (a write after free would otherwise send the walk
// anywhere); `where` names the list in the message.
EBB_INLINE void* cut_list(void* head, uint32_t n, const char* where) {
  void* last = head;
  for (uint32_t i = 1; i < n; ++i) {
    last = link_load(last);
    if (!in_heap(last)) fatal_corrupt_list(Fn::kFree, last, where);
  }
  void* rest = link_load(last);
  link_store(last, nullptr);
  return rest;
}

// Draws the per-process secrets (free_key, link_secret) into g_fast and sets
// up the hardened mode if it is on; once, at initialisation, before the heap
// is published.
void security_init();

}  // namespace ebb
