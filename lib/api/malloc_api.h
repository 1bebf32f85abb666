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
// A small object when the heap cannot grow (address space taken or used
// up, or no heap at all): its own mapping, or NULL with ENOMEM.
EBB_NOINLINE void* malloc_small_fallback(size_t size, size_t align);
EBB_NOINLINE void free_outside_heap(void* p);
void* aligned_path(size_t align, size_t size);
size_t usable_size(const void* p);
void* realloc_impl(void* p, size_t size);
void* calloc_impl(size_t n, size_t m);

EBB_INLINE void* do_malloc(size_t size) {
  if (EBB_LIKELY(size <= kSmallMax)) {
    void* p = malloc_small(size);
    if (EBB_UNLIKELY(!p)) return malloc_small_fallback(size, 0);
    return p;
  }
  return malloc_large_path(size, 0, false);
}

EBB_INLINE void do_free(void* p) {
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  if (EBB_LIKELY(off < g_fast.heap_extent())) {
    const unsigned cls = g_fast.page_class[off >> kPageShift];
    if (EBB_LIKELY(cls != 0)) {
      free_small(p, cls);
      return;
    }
    large_free(p);
    return;
  }
  if (p) free_outside_heap(p);
}

}  // namespace ebb
