// Every C++ operator new/delete form (plain, array, sized, aligned, nothrow).
//
// The library must not depend on the libstdc++ runtime, yet operator new has
// to call the new handler and throw std::bad_alloc. Both come from libstdc++,
// which any program that calls operator new has loaded: they are referenced
// weakly here, so the library itself needs only libc.
#include <new>

#include "api/malloc_api.h"
#include "common/log.h"

// Weak references to std::get_new_handler() and std::__throw_bad_alloc().
extern "C" std::new_handler ebb_weak_get_new_handler() __asm__("_ZSt15get_new_handlerv")
    __attribute__((weak));
extern "C" [[noreturn]] void ebb_weak_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv")
    __attribute__((weak));

using namespace ebb;

namespace {

[[noreturn]] void throw_bad_alloc() {
  if (ebb_weak_throw_bad_alloc) ebb_weak_throw_bad_alloc();
  fatal("operator new: out of memory");
}

std::new_handler current_handler() {
  return ebb_weak_get_new_handler ? ebb_weak_get_new_handler() : nullptr;
}

// Retries with the new handler until it succeeds; throws if there is none.
EBB_NOINLINE void* new_retry(size_t size, size_t align) {
  for (;;) {
    std::new_handler h = current_handler();
    if (!h) throw_bad_alloc();
    h();
    void* p = align ? aligned_path(align, size) : do_malloc(size);
    if (p) return p;
  }
}

// The nothrow forms return nullptr when there is no handler. A handler that
// throws from inside a nothrow new terminates the program (the library has
// no exception runtime of its own to catch with).
EBB_NOINLINE void* new_retry_nothrow(size_t size, size_t align) noexcept {
  for (;;) {
    std::new_handler h = current_handler();
    if (!h) return nullptr;
    h();
    void* p = align ? aligned_path(align, size) : do_malloc(size);
    if (p) return p;
  }
}

EBB_INLINE void* new_impl(size_t size) {
  void* p = do_malloc(size);
  if (EBB_LIKELY(p != nullptr)) return p;
  return new_retry(size, 0);
}

EBB_INLINE void* new_aligned(size_t size, std::align_val_t al) {
  const size_t align = static_cast<size_t>(al);
  void* p = aligned_path(align, size);
  if (EBB_LIKELY(p != nullptr)) return p;
  return new_retry(size, align);
}

EBB_INLINE void* new_nothrow(size_t size) noexcept {
  void* p = do_malloc(size);
  if (EBB_LIKELY(p != nullptr)) return p;
  return new_retry_nothrow(size, 0);
}

EBB_INLINE void* new_aligned_nothrow(size_t size, std::align_val_t al) noexcept {
  const size_t align = static_cast<size_t>(al);
  void* p = aligned_path(align, size);
  if (EBB_LIKELY(p != nullptr)) return p;
  return new_retry_nothrow(size, align);
}

}  // namespace

EBB_EXPORT void* operator new(size_t n) { return new_impl(n); }
EBB_EXPORT void* operator new[](size_t n) { return new_impl(n); }
EBB_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
EBB_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
EBB_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned(n, a); }
EBB_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_aligned(n, a); }
EBB_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}
EBB_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}

// Sized forms check the size against the block (do_free_sized); aligned
// forms check the pointer's alignment.
constexpr Fn kDel = Fn::kDelete;
EBB_EXPORT void operator delete(void* p) noexcept { do_free<kDel>(p); }
EBB_EXPORT void operator delete[](void* p) noexcept { do_free<kDel>(p); }
EBB_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { do_free<kDel>(p); }
EBB_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { do_free<kDel>(p); }
EBB_EXPORT void operator delete(void* p, size_t n) noexcept { do_free_sized<kDel>(p, n, 0); }
EBB_EXPORT void operator delete[](void* p, size_t n) noexcept { do_free_sized<kDel>(p, n, 0); }
EBB_EXPORT void operator delete(void* p, std::align_val_t a) noexcept {
  do_free_aligned<kDel>(p, static_cast<size_t>(a));
}
EBB_EXPORT void operator delete[](void* p, std::align_val_t a) noexcept {
  do_free_aligned<kDel>(p, static_cast<size_t>(a));
}
EBB_EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  do_free_sized<kDel>(p, n, static_cast<size_t>(a));
}
EBB_EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  do_free_sized<kDel>(p, n, static_cast<size_t>(a));
}
EBB_EXPORT void operator delete(void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  do_free_aligned<kDel>(p, static_cast<size_t>(a));
}
EBB_EXPORT void operator delete[](void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  do_free_aligned<kDel>(p, static_cast<size_t>(a));
}
