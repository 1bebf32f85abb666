#include "api/malloc_api.h"

#include <stdlib.h>

#include "common/log.h"
#include "front/harden.h"

namespace ebb {

void* malloc_large_path(size_t size, size_t align, bool zero) {
  // A block of the thread's large-block cache first, before anything else is
  // looked at: a thread that holds one is set up, its blocks are at most
  // 4 MiB (no size to refuse), and the hardened mode's never go there. One
  // call less than through large_alloc (bench/fastpath 65536: 278 -> 250
  // instructions per pair; 226 with thread_large_put's trim).
  if (size <= size_t{kLargeCacheMaxPages} << kPageShift && align <= kPageSize) {
    if (void* p = thread_large_take(static_cast<uint32_t>((size + kPageSize - 1) >> kPageShift))) {
      if (zero) memset(p, 0, size);
      return p;
    }
  }
  if (EBB_UNLIKELY(!ensure_init())) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = g.opts.harden ? harden_malloc_large(size, align, zero) : large_alloc(size, align, zero);
  if (!p) errno = ENOMEM;
  return p;
}

namespace {
// p is in the heap after all: it grew on another thread a moment ago and
// this thread read the extent before (plainly). Seen again with acquire.
bool in_grown_heap(const void* p) {
  return reinterpret_cast<uintptr_t>(p) - g_fast.base < g_fast.extent.load(std::memory_order_acquire);
}
}  // namespace

void free_outside_heap(void* p, Fn fn) {
  if (g.opts.harden && harden_free_outside(p, fn, ~size_t{0})) return;
  if (huge_free(p, fn)) return;
  if (in_grown_heap(p)) return do_free(p);
  fatal_pointer(fn_invalid_pointer(fn), p, "not allocated by ebbmalloc");
}

unsigned aligned_class(size_t size, size_t align) {
  if (!is_pow2(align)) align = align > (SIZE_MAX >> 1) + 1 ? 0 : size_t{1} << log2_ceil(align);
  if (align <= kMinAlign) return size <= kSmallMax ? size_class(size) : 0;
  if (size <= kSmallMax && align <= kSmallMax) {
    unsigned c = size_class(size > align ? size : align);
    while (c <= kNumClasses && class_info(c).size % align != 0) ++c;
    if (c <= kNumClasses) return c;
  }
  return 0;
}

namespace {
// What aligned_path or do_malloc asked large_alloc (or huge_alloc) for.
size_t large_request(size_t size, size_t align) {
  return align > kMinAlign && size <= kSmallMax ? kSmallMax + 1 : size;
}
}  // namespace

void sized_free_other_class(void* p, unsigned cls, size_t size, size_t align, Fn fn) {
  if (g.opts.harden) {
    // Its blocks are in the class of size + 8: the exact size is checked.
    if (align > kMinAlign && (reinterpret_cast<uintptr_t>(p) & (align - 1))) fatal_misaligned(p, align, fn);
    harden_free_small(p, fn, size);
    return;
  }
  const SizeClass& sc = class_info(cls);
  const unsigned below = cls > 1 ? cls - 1 : 0;
  fatal_size_mismatch(fn, p, size, below ? class_info(below).size + 1 : 0, sc.size);
  (void)align;
}

void sized_free_large(void* p, size_t size, size_t align, Fn fn) {
  if (g.opts.harden) {
    const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
    if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) == 0 && d.kind == PageKind::kLargeHead && d.flags) {
      harden_free_large(p, fn, size);  // the exact size
      return;
    }
    large_free(p, fn);  // not a live hardened block: this says what it is
    return;
  }
  large_check_size(p, large_request(size, align), fn);
  large_free(p, fn);
}

void sized_free_outside_heap(void* p, size_t size, size_t align, Fn fn) {
  if (g.opts.harden) {
    if (harden_free_outside(p, fn, size)) return;
    if (!huge_free(p, fn, size)) fatal_pointer(fn_invalid_pointer(fn), p, "not allocated by ebbmalloc");
    return;
  }
  if (!huge_check_size(p, large_request(size, align), fn))
    fatal_pointer(fn_invalid_pointer(fn), p, "not allocated by ebbmalloc");
  free_outside_heap(p, fn);
}

void fatal_misaligned(void* p, size_t align, Fn fn) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_invalid_pointer(fn)).str(" ").ptr(p).str(": not aligned to ").u64(align);
    out.str(", the alignment it was allocated with (aborting)\n");
  }
  abort();
}

void* aligned_path(size_t align, size_t size) {
  // Precondition: align is a power of two.
  if (EBB_UNLIKELY(g.opts.harden)) return harden_aligned(align, size);
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
      if (EBB_UNLIKELY(reinterpret_cast<uintptr_t>(p) & (align - 1))) {
        // The heap could not grow and the slow path gave a mapping of its
        // own, aligned to a page only.
        free_outside_heap(p, Fn::kFree);
        if (!(p = huge_alloc(size, align))) errno = ENOMEM;
      }
      return p;
    }
  }
  return malloc_large_path(size > kSmallMax ? size : kSmallMax + 1, align, false);
}

size_t usable_size(const void* p) {
  if (EBB_UNLIKELY(g.opts.harden)) return harden_usable(p);
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  if (off < g_fast.heap_extent()) {
    const unsigned cls = page_class_at(off);
    if (cls) {
      check_small_live(p, cls, Fn::kUsableSize);
      return class_info(cls).size;
    }
    large_check_live(p, Fn::kUsableSize);
    return large_usable(p);
  }
  if (!p) return 0;
  const size_t n = huge_usable(p);
  if (!n && in_grown_heap(p)) return usable_size(p);
  if (!n) fatal_pointer("malloc_usable_size(): invalid pointer", p, "not allocated by ebbmalloc");
  return n;
}

void* realloc_impl(void* p, size_t size) {
  if (EBB_UNLIKELY(g.opts.harden)) return harden_realloc(p, size);
  if (!p) return do_malloc(size);
  if (size == 0) {  // glibc frees and returns NULL
    do_free<Fn::kRealloc>(p);
    return nullptr;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - g_fast.base;
  size_t old;
  if (off < g_fast.heap_extent()) {
    const unsigned cls = page_class_at(off);
    if (cls) {
      check_small_live(p, cls, Fn::kRealloc);
      old = class_info(cls).size;
      if (size <= kSmallMax && size_class(size) == cls) return p;
    } else {
      large_check_live(p, Fn::kRealloc);
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
  do_free<Fn::kRealloc>(p);
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
    if (!p) return nullptr;  // errno is ENOMEM
    memset(p, 0, size);
    return p;
  }
  return malloc_large_path(size, 0, true);
}

}  // namespace ebb
