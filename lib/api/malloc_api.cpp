#include "api/malloc_api.h"

#include "common/log.h"

namespace ebb {

void* malloc_large_path(size_t size, size_t align, bool zero) {
  if (EBB_UNLIKELY(!ensure_init())) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = large_alloc(size, align, zero);
  if (!p) errno = ENOMEM;
  return p;
}

void* malloc_small_fallback(size_t size, size_t align) {
  void* p = huge_alloc(size ? size : 1, align);
  if (!p) errno = ENOMEM;
  return p;
}

namespace {
// p is in the heap after all: it grew on another thread a moment ago and
// this thread read the extent before (relaxed). Seen again with acquire.
bool in_grown_heap(const void* p) {
  return reinterpret_cast<uintptr_t>(p) - g_fast.base < g_fast.extent.load(std::memory_order_acquire);
}
}  // namespace

void free_outside_heap(void* p) {
  if (huge_free(p)) return;
  if (in_grown_heap(p)) return do_free(p);
  fatal_pointer("free(): invalid pointer", p, "not allocated by ebbmalloc");
}

void* aligned_path(size_t align, size_t size) {
  // Precondition: align is a power of two.
  if (align <= kMinAlign) return do_malloc(size);
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size <= kSmallMax && align <= kSmallMax) {
    // A class whose size is a multiple of the alignment gives aligned
    // objects: slabs are aligned to their (power-of-two) size, which is at
    // least 16 KiB and at least the largest power of two dividing the class.
    unsigned c = size_class(size > align ? size : align);
    while (c <= kNumClasses && class_info(c).size % align != 0) ++c;
    if (c <= kNumClasses) {
      void* p = malloc_small(class_info(c).size);
      return p ? p : malloc_small_fallback(size, align);
    }
  }
  return malloc_large_path(size > kSmallMax ? size : kSmallMax + 1, align, false);
}

size_t usable_size(const void* p) {
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  if (off < g_fast.heap_extent()) {
    const unsigned cls = g_fast.page_class[off >> kPageShift];
    if (cls) return class_info(cls).size;
    return large_usable(p);
  }
  if (!p) return 0;
  const size_t n = huge_usable(p);
  if (!n && in_grown_heap(p)) return usable_size(p);
  if (!n) fatal_pointer("malloc_usable_size(): invalid pointer", p, "not allocated by ebbmalloc");
  return n;
}

void* realloc_impl(void* p, size_t size) {
  if (!p) return do_malloc(size);
  if (size == 0) {  // glibc frees and returns NULL
    do_free(p);
    return nullptr;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  size_t old;
  if (off < g_fast.heap_extent()) {
    const unsigned cls = g_fast.page_class[off >> kPageShift];
    if (cls) {
      old = class_info(cls).size;
      if (size <= kSmallMax && size_class(size) == cls) return p;
    } else {
      old = large_usable(p);
      if (size > kSmallMax && large_resize_in_place(p, size)) return p;
    }
  } else {
    old = huge_usable(p);
    if (!old && in_grown_heap(p)) return realloc_impl(p, size);
    if (!old) fatal_pointer("realloc(): invalid pointer", p, "not allocated by ebbmalloc");
    if (size > kMaxBlockSize) {
      void* q = huge_realloc(p, size);
      if (!q) errno = ENOMEM;
      return q;
    }
  }
  void* q = do_malloc(size);
  if (!q) return nullptr;  // p is left untouched, errno is ENOMEM
  memcpy(q, p, old < size ? old : size);
  do_free(p);
  return q;
}

void* calloc_impl(size_t n, size_t m) {
  size_t size;
  if (__builtin_mul_overflow(n, m, &size)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size <= kSmallMax) {
    void* p = malloc_small(size);
    if (!p) return malloc_small_fallback(size, 0);  // a fresh mapping: zero already
    memset(p, 0, size);
    return p;
  }
  return malloc_large_path(size, 0, true);
}

}  // namespace ebb
