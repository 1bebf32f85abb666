#include "front/harden.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include <emmintrin.h>

#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "front/central.h"
#include "front/free_list.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/thread_cache.h"
#include "os/os.h"

namespace ebb {

namespace {

constexpr size_t kNone = ~size_t{0};

constinit uint64_t g_canary_secret = 0;

uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// Per-block words derived from its address and the secret: the canary
// pattern and the check bits of the small objects' size word.
uint64_t canary_word(const void* p) { return mix(reinterpret_cast<uintptr_t>(p) ^ g_canary_secret); }
uint64_t tail_mask(const void* p) { return mix(reinterpret_cast<uintptr_t>(p) ^ ~g_canary_secret); }

// Byte i of a block's canary is byte (i & 7) of its canary word (blocks are
// 16-byte aligned: whole words where the offset allows).
void write_pattern(char* p, size_t from, size_t to, uint64_t w) {
  size_t i = from;
  for (; i < to && (i & 7); ++i) p[i] = static_cast<char>(w >> ((i & 7) * 8));
  for (; i + 8 <= to; i += 8) memcpy(p + i, &w, 8);
  for (; i < to; ++i) p[i] = static_cast<char>(w >> ((i & 7) * 8));
}
size_t pattern_break(const char* p, size_t from, size_t to, uint64_t w) {
  size_t i = from;
  for (; i < to && (i & 7); ++i)
    if (p[i] != static_cast<char>(w >> ((i & 7) * 8))) return i;
  for (; i < to && (i & 15); i += 8) {  // to a 16-byte boundary
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != w) break;
  }
  if (!(i & 15)) {
    const __m128i ww = _mm_set1_epi64x(static_cast<long long>(w));
    for (; i + 64 <= to; i += 64) {
      const __m128i* v = reinterpret_cast<const __m128i*>(p + i);
      const __m128i x = _mm_or_si128(_mm_or_si128(_mm_xor_si128(_mm_load_si128(v), ww), _mm_xor_si128(_mm_load_si128(v + 1), ww)),
                                     _mm_or_si128(_mm_xor_si128(_mm_load_si128(v + 2), ww), _mm_xor_si128(_mm_load_si128(v + 3), ww)));
      if (_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_setzero_si128())) != 0xffff) break;
    }
  }
  for (; i + 8 <= to; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != w) break;
  }
  for (; i < to; ++i)
    if (p[i] != static_cast<char>(w >> ((i & 7) * 8))) return i;
  return to;
}

[[noreturn]] void fatal_overflow(Fn fn, const void* p, size_t size, size_t at) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_name(fn)).str("(): heap buffer overflow: the ").u64(size);
    out.str("-byte block at ").ptr(p).str(" was written past its end (at offset ").u64(at).str(") (aborting)\n");
  }
  abort();
}

[[noreturn]] void fatal_size_word(Fn fn, const void* p, size_t slot) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_name(fn)).str("(): heap buffer overflow: the size word at the end of the ");
    out.u64(slot).str("-byte slot of ").ptr(p).str(" was overwritten (aborting)\n");
  }
  abort();
}

// ---- small objects: [0, n) the program's, [n, S-8) canary, [S-8, S) size word

// The size word: n in the low 16 bits, 48 check bits of (slot, n, secret)
// above (a change of any byte of it is seen, but with odds of 2^-48).
uint64_t size_word(const void* p, size_t n) { return n | (tail_mask(reinterpret_cast<const char*>(p) + n) << 16); }

void small_setup(void* p, size_t slot, size_t n) {
  if (!hf(kHfSizeWord)) return;
  if (hf(kHfCanary)) write_pattern(static_cast<char*>(p), n, slot - kTailBytes, canary_word(p));
  const uint64_t t = size_word(p, n);
  memcpy(static_cast<char*>(p) + slot - kTailBytes, &t, 8);
}

// The requested size of the live small object p (its slot is `slot` bytes),
// after checking its size word and canary.
size_t small_requested(const void* p, size_t slot, Fn fn) {
  if (!hf(kHfSizeWord)) return slot;
  uint64_t t;
  memcpy(&t, static_cast<const char*>(p) + slot - kTailBytes, 8);
  const uint64_t n = t & 0xffff;
  if (n > slot - kTailBytes || t != size_word(p, n)) fatal_size_word(fn, p, slot);
  if (!hf(kHfCanary)) return n;
  const size_t at = pattern_break(static_cast<const char*>(p), n, slot - kTailBytes, canary_word(p));
  if (at < slot - kTailBytes) fatal_overflow(fn, p, n, at);
  return n;
}

// central_free_hardened's check, under the bin lock before anything changes.
void small_free_check(void* p, unsigned cls, Fn fn, size_t size) {
  const size_t n = small_requested(p, class_info(cls).size, fn);
  if (hf(kHfSizeWord) && size != kNone && size != n) fatal_size_mismatch(fn, p, size, n, n);
}

void* small_alloc(size_t n, unsigned cls) {
  void* p = central_alloc_hardened(cls);
  if (!p) return nullptr;
  small_setup(p, class_info(cls).size, n);
  return p;
}

// ---- zero-size allocations: unique addresses in a region never accessible

constexpr size_t kZeroSlot = 16;
constexpr size_t kZeroSlots = size_t{1} << 22;  // 64 MiB of address space
constinit uintptr_t g_zero_base = 0;
constinit uint64_t* g_zero_bits = nullptr;  // 1 = allocated (heap lock)
constinit size_t g_zero_rotor = 0;          // the next slot to look at: freed slots wait a full round

bool in_zero_region(const void* p) {
  return g_zero_base && reinterpret_cast<uintptr_t>(p) - g_zero_base < kZeroSlots * kZeroSlot;
}

void* zero_alloc() {
  if (!hf(kHfZeroSize) || !g_zero_base) return nullptr;
  LockGuard h(g.heap.lock());
  for (size_t k = 0; k <= kZeroSlots / 64; ++k) {
    const size_t w = (g_zero_rotor / 64 + k) % (kZeroSlots / 64);
    uint64_t free_bits = ~g_zero_bits[w];
    if (k == 0) free_bits &= ~uint64_t{0} << (g_zero_rotor & 63);
    if (!free_bits) continue;
    const size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(free_bits));
    g_zero_bits[w] |= uint64_t{1} << (i & 63);
    g_zero_rotor = (i + 1) % kZeroSlots;
    return reinterpret_cast<void*>(g_zero_base + i * kZeroSlot);
  }
  return nullptr;  // all in use: a real 16-byte object instead
}

void zero_free(void* p, Fn fn) {
  const size_t off = reinterpret_cast<uintptr_t>(p) - g_zero_base;
  if (off % kZeroSlot) fatal_pointer(fn_invalid_pointer(fn), p, "inside a zero-size allocation");
  const size_t i = off / kZeroSlot;
  LockGuard h(g.heap.lock());
  uint64_t& w = g_zero_bits[i / 64];
  if (!(w & (uint64_t{1} << (i & 63)))) {
    g.heap.lock().unlock();
    fatal_misuse(fn, "double free of", p, "the zero-size allocation is already free");
  }
  w &= ~(uint64_t{1} << (i & 63));
}

// ---- large blocks: [guard][pages of the object, canary after n][guard] ----

struct LargeQEntry {
  uint32_t idx;     // first page (the leading guard's, if any)
  uint32_t npages;  // the whole block
  bool given_back;  // madvised (reported)
  bool protect;     // PROT_NONE (must be made accessible again)
  uint64_t stamp;   // when it was freed
};
// Quarantined large blocks stay resident (so reuse does not fault them back
// in), up to 16 MiB; the reporter returns them to the heap once cold, with
// the time they were freed, so the same pass gives them back.
constexpr unsigned kLargeQSlots = 64;
constexpr uint64_t kLargeQPages = (uint64_t{16} << 20) >> kPageShift;
constinit LargeQEntry g_lq[kLargeQSlots] = {};  // FIFO (heap lock)
constinit unsigned g_lq_head = 0;
constinit unsigned g_lq_count = 0;
constinit uint64_t g_lq_pages = 0;

PageDesc& desc_of(const void* p) { return g.heap.region().descs()[g.heap.region().page_index(p)]; }

// Returns a quarantined block to the heap (no lock held).
void large_release_quarantined(const LargeQEntry& e) {
  char* block = g.heap.region().page_addr(e.idx);
  if (e.protect && os::protect(block, size_t{e.npages} << kPageShift, true) != 0) return;  // kept out for good
  LockGuard h(g.heap.lock());
  PageDesc* d = g.heap.region().descs();
  // Only the heads the buddy sets stay heads.
  for (uint32_t k = 0; k < 2 && k < e.npages; ++k)
    if (d[e.idx + k].kind == PageKind::kLargeHead) {
      d[e.idx + k].kind = PageKind::kFreeTail;
      d[e.idx + k].flags = 0;
    }
  if (e.given_back) g.heap.region().reported().set(e.idx, e.npages);
  g.heap.free_pages(e.idx, e.npages, e.given_back, e.stamp);
  debug_check_heap_locked();
}

// The live hardened large block p (aborts otherwise); its descriptor.
PageDesc& live_large(const void* p, Fn fn) {
  PageDesc& d = desc_of(p);
  if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) != 0 || d.kind != PageKind::kLargeHead ||
      !(d.flags & (kPageHardened | kPageGuardPage))) {
    // Not one of ours: the default checks say what it is.
    (void)large_usable(p);
    fatal_pointer(fn_invalid_pointer(fn), p, "not a block allocated by ebbmalloc");
  }
  if (d.flags & kPageGuardPage) fatal_pointer(fn_invalid_pointer(fn), p, "a guard page, not a block");
  if (d.flags & kPageQuarantined)
    fatal_misuse(fn, fn == Fn::kRealloc || fn == Fn::kUsableSize ? "pointer to freed memory" : "double free of", p,
                 "the block is already free (in the quarantine)");
  return d;
}

size_t large_requested(const void* p, Fn fn) {
  const PageDesc& d = live_large(p, fn);
  harden_check_canary(p, d.stamp, size_t{d.npages - 1} << kPageShift, fn);
  return d.stamp;
}

// ---- faults on guard pages, quarantined blocks and zero-size allocations

void describe_fault(int sig, siginfo_t* si, void*) {
  const void* a = si->si_addr;
  const char* what = nullptr;
  const void* block = nullptr;
  if (in_zero_region(a)) {
    what = "access to a zero-size allocation";
  } else if (huge_describe_fault(a, &block, &what)) {
  } else if (g.heap.region().contains(a)) {
    // The large block whose pages cover the address, looking back at most
    // one buddy block's worth of pages.
    const uint32_t page = g.heap.region().page_index(a);
    const PageDesc* d = g.heap.region().descs();
    for (uint32_t k = 0; k <= (kMaxBlockSize >> kPageShift) + 1 && k <= page; ++k) {
      const PageDesc& h = d[page - k];
      if (h.kind != PageKind::kLargeHead) continue;
      if (k >= h.npages) break;
      block = g.heap.region().page_addr(page - k);
      if (h.flags & kPageGuardPage) {
        what = "a guard page before the large block at";
        block = g.heap.region().page_addr(page - k + 1);
      } else if (h.flags & kPageQuarantined) {
        what = "use after free of the large block at";
      } else if ((h.flags & kPageHardened) && k == h.npages - 1) {
        what = "a guard page after the large block at";
      }
      break;
    }
  }
  if (what) {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(sig == SIGBUS ? "SIGBUS" : "SIGSEGV").str(" at ").ptr(a).str(": ").str(what);
    if (block) out.str(" ").ptr(block);
    out.str(" (hardened mode)\n");
  }
  // SA_RESETHAND put the default action back: the access runs again and
  // ends the process with the same signal.
}

void install_fault_handler() {
  for (int sig : {SIGSEGV, SIGBUS}) {
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;  // the program's own
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = &describe_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
}

void harden_free_any(void* p, Fn fn, size_t size);

}  // namespace

// ---- shared helpers ------------------------------------------------------------

void harden_write_canary(void* p, size_t from, size_t to) {
  if (!hf(kHfCanary)) return;
  write_pattern(static_cast<char*>(p), from, to, canary_word(p));
}

void harden_check_canary(const void* p, size_t from, size_t to, Fn fn) {
  if (!hf(kHfCanary)) return;
  const size_t at = pattern_break(static_cast<const char*>(p), from, to, canary_word(p));
  if (at < to) fatal_overflow(fn, p, from, at);
}

void check_still_zero(const void* p, size_t size, Fn fn, const char* when) {
  const char* b = static_cast<const char*>(p);
  size_t i = 0;
  // 64 bytes at a time (p is 16-byte aligned), then the exact place.
  for (; i + 64 <= size; i += 64) {
    const __m128i* v = reinterpret_cast<const __m128i*>(b + i);
    const __m128i o = _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)),
                                   _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3)));
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(o, _mm_setzero_si128())) != 0xffff) break;
  }
  for (; i + 8 <= size; i += 8) {
    uint64_t v;
    memcpy(&v, b + i, 8);
    if (v) break;
  }
  for (; i < size && !b[i]; ++i) {
  }
  if (i >= size) return;
  {
    OutBuf out(2);
    out.str("ebbmalloc: ");
    if (fn != Fn::kNone) out.str(fn_name(fn)).str("(): ");
    out.str("write after free: the freed ").u64(size).str("-byte block at ").ptr(p).str(" was written at offset ");
    out.u64(i).str(" (found ").str(when).str(") (aborting)\n");
  }
  abort();
}

void harden_init() {
  g_canary_secret = os::random_u64();
  // Free objects are checked to hold zeros, reported memory included.
  if (g.opts.madv_free) {
    log_line("EBBMALLOC_HARDEN=1 gives memory back with MADV_DONTNEED (EBBMALLOC_MADVISE=free ignored)");
    g.opts.madv_free = false;
  }
  g.zero_reported = true;
  if (void* r = os::reserve(kZeroSlots * kZeroSlot)) {
    g_zero_bits = static_cast<uint64_t*>(os::map(kZeroSlots / 8));
    if (g_zero_bits) g_zero_base = reinterpret_cast<uintptr_t>(r);
    else os::unmap(r, kZeroSlots * kZeroSlot);
  }
  install_fault_handler();
  if (g.opts.verbose) log_line("hardened mode (EBBMALLOC_HARDEN=1)");
}

// ---- allocation ------------------------------------------------------------------

void* harden_malloc_large(size_t size, size_t align, bool zero) {
  if (size > PTRDIFF_MAX) return nullptr;
  const uint64_t obj = size ? (uint64_t{size} + kPageSize - 1) >> kPageShift : 1;
  const uint32_t lead = align <= kPageSize ? 1 : 0;
  const uint64_t total = obj + 1 + lead;
  if (total > (kMaxBlockSize >> kPageShift) || align > kMaxBlockSize) return huge_alloc_guarded(size, align);
  const unsigned align_order = align > kPageSize ? log2_ceil(align) - kPageShift : 0;
  PageRun run;
  bool ok;
  {
    // One lock section: the run must never be seen (by the checker, or in a
    // fork child) taken from the free lists but not marked as in use.
    LockGuard h(g.heap.lock());
    ok = g.heap.alloc_pages(static_cast<uint32_t>(total), align_order, &run);
    if (ok) {
      PageDesc* d = g.heap.region().descs();
      if (lead) {
        d[run.idx].kind = PageKind::kLargeHead;
        d[run.idx].npages = 1;
        d[run.idx].flags = kPageGuardPage;
      }
      PageDesc& hd = d[run.idx + lead];
      hd.kind = PageKind::kLargeHead;
      hd.npages = static_cast<uint32_t>(obj + 1);  // with the trailing guard
      hd.flags = static_cast<uint8_t>(kPageHardened | (lead ? kPageLeadGuard : 0));
      hd.stamp = size;
      debug_check_heap_locked();
    }
  }
  // The heap's address space is used up: a mapping of its own.
  if (!ok) return huge_alloc_guarded(size, align);
  char* p = g.heap.region().page_addr(run.idx + lead);
  // A guard that cannot be set up (the kernel's map count limit) is left
  // out; the block works without it.
  if (hf(kHfGuards)) {
    if (lead) os::protect(p - kPageSize, kPageSize, false);
    os::protect(p + (obj << kPageShift), kPageSize, false);
  }
  if (zero) memset(p, 0, size);
  harden_write_canary(p, size, obj << kPageShift);
  g.reporter.maybe_start_thread();
  return p;
}

void* harden_malloc(size_t size) {
  if (!ensure_init()) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p;
  if (size == 0 && (p = zero_alloc())) return p;
  if (size <= kSmallMax - kTailBytes) p = small_alloc(size, size_class(size + kTailBytes));
  else p = harden_malloc_large(size, 0, false);
  if (!p) errno = ENOMEM;
  g.reporter.maybe_start_thread();
  return p;
}

void* harden_aligned(size_t align, size_t size) {
  if (align <= kMinAlign) return harden_malloc(size);
  if (!ensure_init() || size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = nullptr;
  if (size <= kSmallMax - kTailBytes && align <= kSmallMax) {
    const size_t need = size + kTailBytes > align ? size + kTailBytes : align;
    unsigned c = size_class(need);
    while (c <= kNumClasses && class_info(c).size % align != 0) ++c;
    if (c <= kNumClasses) {
      p = small_alloc(size, c);
      if (!p) errno = ENOMEM;
      return p;
    }
  }
  p = harden_malloc_large(size, align, false);
  if (!p) errno = ENOMEM;
  return p;
}

// ---- freeing -----------------------------------------------------------------------

void harden_free_small(void* p, Fn fn, size_t size) {
  const unsigned cls = page_class_of(p);
  if (!object_start(p, cls)) fatal_not_object_start(fn, p);
  central_free_hardened(cls, p, fn, &small_free_check, size);
}

void harden_free_large(void* p, Fn fn, size_t size) {
  PageDesc& d = live_large(p, fn);
  const size_t n = d.stamp;
  harden_check_canary(p, n, size_t{d.npages - 1} << kPageShift, fn);
  if (size != kNone && size != n) fatal_size_mismatch(fn, p, size, n, n);
  // Quarantined: given back and inaccessible at once, reused later.
  const uint32_t lead = (d.flags & kPageLeadGuard) ? 1 : 0;
  LargeQEntry e;
  e.idx = g.heap.region().page_index(p) - lead;
  e.npages = d.npages + lead;
  char* block = g.heap.region().page_addr(e.idx);
  const size_t bytes = size_t{e.npages} << kPageShift;
  e.given_back = false;
  e.stamp = os::now_ms();
  if (!hf(kHfQuarantine)) {  // (measurement builds) straight back to the heap
    e.protect = hf(kHfGuards);
    d.flags |= kPageQuarantined;
    large_release_quarantined(e);
    return;
  }
  // A use after free faults (the fault handler names the block).
  e.protect = os::protect(block, bytes, false) == 0;
  d.flags |= kPageQuarantined;
  LargeQEntry out[kLargeQSlots];
  unsigned nout = 0;
  {
    LockGuard h(g.heap.lock());
    while (g_lq_count && (g_lq_count == kLargeQSlots || g_lq_pages + e.npages > kLargeQPages)) {
      out[nout++] = g_lq[g_lq_head];
      g_lq_pages -= g_lq[g_lq_head].npages;
      g_lq_head = (g_lq_head + 1) % kLargeQSlots;
      g_lq_count--;
    }
    g_lq[(g_lq_head + g_lq_count) % kLargeQSlots] = e;
    g_lq_count++;
    g_lq_pages += e.npages;
  }
  for (unsigned i = 0; i < nout; ++i) large_release_quarantined(out[i]);
  g.reporter.request();  // it drains the quarantine when the block is cold
  g.reporter.maybe_start_thread();
}

uint64_t harden_drain_large(uint64_t now, uint64_t cold_ms) {
  LargeQEntry out[kLargeQSlots];
  unsigned nout = 0;
  uint64_t next = ~uint64_t{0};
  {
    LockGuard h(g.heap.lock());
    while (g_lq_count && now >= g_lq[g_lq_head].stamp + cold_ms) {
      out[nout++] = g_lq[g_lq_head];
      g_lq_pages -= g_lq[g_lq_head].npages;
      g_lq_head = (g_lq_head + 1) % kLargeQSlots;
      g_lq_count--;
    }
    if (g_lq_count) next = g_lq[g_lq_head].stamp + cold_ms;
  }
  for (unsigned i = 0; i < nout; ++i) large_release_quarantined(out[i]);
  return next;
}

bool harden_free_outside(void* p, Fn fn, size_t size) {
  if (!in_zero_region(p)) return false;
  if (size != kNone && size != 0) fatal_size_mismatch(fn, p, size, 0, 0);
  zero_free(p, fn);
  return true;
}

namespace {

// Any pointer: small, large, huge, zero-size.
void harden_free_any(void* p, Fn fn, size_t size) {
  if (!p) return;
  if (in_heap(p)) {
    if (page_class_of(p)) harden_free_small(p, fn, size);
    else large_free(p, fn);  // hardened blocks come back here through their descriptor
    return;
  }
  if (harden_free_outside(p, fn, size)) return;
  if (!huge_free(p, fn, size)) fatal_pointer(fn_invalid_pointer(fn), p, "not allocated by ebbmalloc");
}

size_t usable_checked(const void* p, Fn fn) {
  if (!p) return 0;
  if (in_heap(p)) {
    const unsigned cls = page_class_of(p);
    if (cls) {
      if (!object_start(p, cls)) fatal_not_object_start(fn, p);
      central_check_live_hardened(cls, p, fn);
      return small_requested(p, class_info(cls).size, fn);
    }
    return large_requested(p, fn);
  }
  if (in_zero_region(p)) return 0;
  const size_t n = huge_requested(p);
  if (n == 0) fatal_pointer(fn_invalid_pointer(fn), p, "not allocated by ebbmalloc");
  return n == ~size_t{0} ? 0 : n;
}

}  // namespace

size_t harden_usable(const void* p) { return usable_checked(p, Fn::kUsableSize); }

void* harden_realloc(void* p, size_t size) {
  if (!p) return harden_malloc(size);
  const size_t old = usable_checked(p, Fn::kRealloc);
  if (size == 0) {  // glibc frees and returns NULL
    harden_free_any(p, Fn::kRealloc, kNone);
    return nullptr;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  // Always moves: the old block goes through the quarantine.
  void* q = harden_malloc(size);
  if (!q) return nullptr;
  memcpy(q, p, old < size ? old : size);
  harden_free_any(p, Fn::kRealloc, kNone);
  return q;
}

}  // namespace ebb
