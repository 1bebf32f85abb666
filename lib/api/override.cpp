// The exported C allocation API: every malloc-family symbol, glibc's extras,
// and the glibc-internal names (__libc_malloc ...) that a static link needs
// so that libc's own malloc.o is never pulled in.
#include <malloc.h>
#include <stdlib.h>

#include "api/malloc_api.h"
#include "api/stats.h"
#include "ebbmalloc.h"

using namespace ebb;

#define EBB_ALIAS(name) __attribute__((alias(#name), used, visibility("default")))

extern "C" {

EBB_EXPORT void* malloc(size_t size) noexcept { return do_malloc(size); }
EBB_EXPORT void free(void* p) noexcept { do_free<Fn::kFree>(p); }
EBB_EXPORT void* calloc(size_t n, size_t m) noexcept { return calloc_impl(n, m); }
EBB_EXPORT void* realloc(void* p, size_t size) noexcept { return realloc_impl(p, size); }

EBB_EXPORT void* reallocarray(void* p, size_t n, size_t m) noexcept {
  size_t size;
  if (__builtin_mul_overflow(n, m, &size)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc_impl(p, size);
}

EBB_EXPORT void* memalign(size_t align, size_t size) noexcept {
  // glibc rounds a non-power-of-two alignment up.
  if (!is_pow2(align)) {
    if (align > (SIZE_MAX >> 1) + 1) {
      errno = EINVAL;
      return nullptr;
    }
    align = size_t{1} << log2_ceil(align);
  }
  return aligned_path(align, size);
}

EBB_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept {
  if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  const int saved = errno;
  void* p = aligned_path(align, size);
  errno = saved;
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

EBB_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return aligned_path(align, size);
}

EBB_EXPORT void* valloc(size_t size) noexcept { return aligned_path(kPageSize, size); }

EBB_EXPORT void* pvalloc(size_t size) noexcept {
  if (size > SIZE_MAX - kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t rounded = align_up(size ? size : 1, kPageSize);
  return aligned_path(kPageSize, rounded);
}

EBB_EXPORT size_t malloc_usable_size(void* p) noexcept { return usable_size(p); }

// C23.
// The size (and alignment) must be the ones the block was allocated with.
EBB_EXPORT void free_sized(void* p, size_t size) noexcept { do_free_sized<Fn::kFreeSized>(p, size, 0); }
EBB_EXPORT void free_aligned_sized(void* p, size_t align, size_t size) noexcept {
  do_free_sized<Fn::kFreeAlignedSized>(p, size, align);
}

EBB_EXPORT int malloc_trim(size_t) noexcept { return ebb_report_now() > 0 ? 1 : 0; }

EBB_EXPORT struct mallinfo2 mallinfo2(void) noexcept {
  // Without the resident floor: mallinfo2 may be called often, and the
  // floor stops every thread.
  ebb_stats_t s;
  collect_stats(&s, false);
  struct mallinfo2 m = {};
  uint64_t blocks = 0;
  for (unsigned i = 0; i < EBB_NUM_ORDERS; ++i) blocks += s.free_blocks[i];
  m.arena = s.mapped_bytes - s.huge_bytes;
  m.ordblks = blocks;
  m.hblks = 0;
  m.hblkhd = s.huge_bytes;
  m.uordblks = s.live_bytes;
  m.fordblks = s.free_warm_bytes + s.free_reported_bytes + s.cached_bytes;
  m.keepcost = s.free_reported_bytes;  // free and already given back
  return m;
}

EBB_EXPORT struct mallinfo mallinfo(void) noexcept {
  const struct mallinfo2 m2 = mallinfo2();
  auto clamp = [](size_t v) { return static_cast<int>(v > INT32_MAX ? INT32_MAX : v); };
  struct mallinfo m = {};
  m.arena = clamp(m2.arena);
  m.ordblks = clamp(m2.ordblks);
  m.hblkhd = clamp(m2.hblkhd);
  m.uordblks = clamp(m2.uordblks);
  m.fordblks = clamp(m2.fordblks);
  m.keepcost = clamp(m2.keepcost);
  return m;
}

EBB_EXPORT void malloc_stats(void) noexcept { ebb_print_stats(2, 0); }

// glibc tuning knobs do not apply; accepted and ignored (returns success).
EBB_EXPORT int mallopt(int, int) noexcept { return 1; }

// glibc-internal names used by libc itself and by static links. (The
// aliases need not repeat the malloc/alloc_size attributes of their targets.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-attributes"
void* __libc_malloc(size_t) noexcept EBB_ALIAS(malloc);
void __libc_free(void*) noexcept EBB_ALIAS(free);
void* __libc_calloc(size_t, size_t) noexcept EBB_ALIAS(calloc);
void* __libc_realloc(void*, size_t) noexcept EBB_ALIAS(realloc);
void* __libc_memalign(size_t, size_t) noexcept EBB_ALIAS(memalign);
void* __libc_valloc(size_t) noexcept EBB_ALIAS(valloc);
void* __libc_pvalloc(size_t) noexcept EBB_ALIAS(pvalloc);
int __posix_memalign(void**, size_t, size_t) noexcept EBB_ALIAS(posix_memalign);
struct mallinfo __libc_mallinfo(void) noexcept EBB_ALIAS(mallinfo);
int __libc_mallopt(int, int) noexcept EBB_ALIAS(mallopt);
int __malloc_trim(size_t) noexcept EBB_ALIAS(malloc_trim);
#pragma GCC diagnostic pop

}  // extern "C"
