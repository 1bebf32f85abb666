// The allocation functions, once, as inline code: the exported C symbols
// (override.cpp) and the C++ operators (new_delete.cpp) are thin shims.
#pragma once
#include <errno.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/config.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/thread_cache.h"

namespace ebb {

EBB_NOINLINE void* malloc_large_path(size_t size, size_t align, bool zero);
EBB_NOINLINE void free_outside_heap(void* p, Fn fn);
void* aligned_path(size_t align, size_t size);
size_t usable_size(const void* p);
void* realloc_impl(void* p, size_t size);
void* calloc_impl(size_t n, size_t m);
// Sized frees, off the fast path: a small object whose class is not the one
// `size` (and `align`) give (aborts, except in the hardened mode, whose
// blocks are in other classes and which checks the exact size later), a
// large or a huge block.
EBB_NOINLINE void sized_free_other_class(void* p, unsigned cls, size_t size, size_t align, Fn fn);
EBB_NOINLINE void sized_free_large(void* p, size_t size, size_t align, Fn fn);
EBB_NOINLINE void sized_free_outside_heap(void* p, size_t size, size_t align, Fn fn);
// The class aligned_path gives (size, align), align > kMinAlign; 0 for a
// large or huge block.
unsigned aligned_class(size_t size, size_t align);
// Aborts: p is not aligned to the alignment the delete says it had.
[[noreturn]] EBB_NOINLINE void fatal_misaligned(void* p, size_t align, Fn fn);

EBB_INLINE void* do_malloc(size_t size) {
  // malloc_small's slow path sets errno when it fails (so the fast path
  // tail-calls it).
  if (EBB_LIKELY(size <= kSmallMax)) return malloc_small(size);
  return malloc_large_path(size, 0, false);
}

template <Fn kFn = Fn::kFree>
EBB_INLINE void do_free(void* p) {
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  if (EBB_LIKELY(off < g_fast.heap_extent())) {
    // A large block's pages have class 0, whose bin fails free_small's
    // object-start check: free_small sends it on to large_free (one test
    // fewer on the small path).
    free_small<kFn>(p, page_bin_offset(off));
    return;
  }
  if (p) free_outside_heap(p, kFn);
}

// The class do_malloc(size) or aligned_path(align, size) gives; 0 for a
// large or huge block.
EBB_INLINE unsigned expected_class(size_t size, size_t align) {
  if (EBB_LIKELY(align <= kMinAlign)) return size <= kSmallMax ? size_class(size) : 0;
  return aligned_class(size, align);
}

// free_sized, free_aligned_sized, sized operator delete: the size (and the
// alignment, 0 if none) must be what the block was allocated with, as far as
// its size class tells (the hardened mode checks the exact size).
template <Fn kFn>
EBB_INLINE void do_free_sized(void* p, size_t size, size_t align) {
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  if (EBB_LIKELY(off < g_fast.heap_extent())) {
    const unsigned cls = page_class_at(off);
    if (EBB_LIKELY(cls != 0)) {
      if (EBB_UNLIKELY(cls != expected_class(size, align))) {
        sized_free_other_class(p, cls, size, align, kFn);
        return;
      }
      free_small<kFn>(p, page_bin_offset(off), size);
      return;
    }
    sized_free_large(p, size, align, kFn);
    return;
  }
  if (p) sized_free_outside_heap(p, size, align, kFn);
}

// operator delete(void*, align_val_t): the block must have that alignment.
template <Fn kFn>
EBB_INLINE void do_free_aligned(void* p, size_t align) {
  if (EBB_UNLIKELY(reinterpret_cast<uintptr_t>(p) & (align - 1))) fatal_misaligned(p, align, kFn);
  do_free<kFn>(p);
}

}  // namespace ebb
