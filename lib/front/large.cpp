#include "front/large.h"

#include <cstdint>
#include <stdlib.h>

#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "front/globals.h"
#include "front/harden.h"
#include "front/pressure_relief.h"
#include "front/thread_cache.h"
#include "os/os.h"

namespace ebb {

// ---- large: buddy blocks ---------------------------------------------------

void* large_alloc(size_t size, size_t align, bool zero) {
  if (size > kMaxBlockSize || align > kMaxBlockSize) return huge_alloc(size, align);
  const uint32_t npages = static_cast<uint32_t>((size + kPageSize - 1) >> kPageShift);
  const unsigned align_order = align > kPageSize ? log2_ceil(align) - kPageShift : 0;
  maybe_relieve_pressure();
  PageRun run;
  {
    LockGuard h(g.heap.lock());
    if (!g.heap.alloc_pages(npages ? npages : 1, align_order, &run)) {
      // The heap's address space is used up: fall back to a mapping.
      return huge_alloc(size, align);
    }
    PageDesc* d = g.heap.region().descs();
    d[run.idx].kind = PageKind::kLargeHead;
    d[run.idx].npages = run.npages;
    d[run.idx].flags = 0;
    // Interior pages are not marked: only heads are read (an interior
    // pointer finds no large head and is refused).
    debug_check_heap_locked();
  }
  void* p = g.heap.region().page_addr(run.idx);
  if (zero) {
    // Reported memory reads as zero (MADV_DONTNEED), but leaving it untouched
    // costs more than it saves: a program that reads its calloc'd buffer
    // before writing it maps the shared zero page first, and then takes a
    // second, copy-on-write fault per page that flushes the TLB on every CPU
    // running the process. Fault it in writable instead, in one call (the
    // kernel zeroes each page once). Huge callocs (own mappings) stay lazy.
    if (!(g.zero_reported && run.reported == run.npages && os::populate_write(p, size) == 0))
      memset(p, 0, size);
  }
  g.reporter.maybe_start_thread();
  return p;
}

namespace {
// Heap lock held; p is not the start of a live large block. If it lies in
// one, says so and aborts (the descriptors keep only heads: look back).
void fatal_if_inside_large(const void* p, Fn fn) {
  const uint32_t page = g.heap.region().page_index(p);
  const PageDesc* d = g.heap.region().descs();
  for (uint32_t k = 0; k <= (kMaxBlockSize >> kPageShift) && k <= page; ++k) {
    const PageDesc& h = d[page - k];
    if (h.kind == PageKind::kFreeHead || h.kind == PageKind::kIsolated) return;  // free memory
    if (h.kind != PageKind::kLargeHead) continue;
    if (k >= h.npages || (h.flags & kPageNotLive)) return;
    const char* start = g.heap.region().page_addr(page - k);
    g.heap.lock().unlock();
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_invalid_pointer(fn)).str(" ").ptr(p).str(": ");
    out.u64(static_cast<uint64_t>(static_cast<const char*>(p) - start)).str(" bytes into the large block at ");
    out.ptr(start).str(", not at its start (aborting)\n");
    out.flush();
    abort();
  }
}

// Heap lock held. Returns the head descriptor of the large block at p or aborts.
PageDesc& large_head(const void* p, const char* what) {
  const uint32_t idx = g.heap.region().page_index(p);
  PageDesc& d = g.heap.region().descs()[idx];
  if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) != 0 || d.kind != PageKind::kLargeHead ||
      (d.flags & kPageNotLive)) {
    g.heap.lock().unlock();
    // (A page of the large path with kind kSlab belonged to a slab that went
    // back to the heap: its page-class entry is 0.)
    if (d.kind == PageKind::kFreeHead || d.kind == PageKind::kFreeTail || d.kind == PageKind::kIsolated ||
        d.kind == PageKind::kSlab || (d.kind == PageKind::kLargeHead && (d.flags & (kPageCached | kPageQuarantined))))
      fatal_pointer(what, p, "double free or pointer to free memory");
    fatal_pointer(what, p, "not a block allocated by ebbmalloc");
  }
  return d;
}

// The caller owns the block at p if the free or realloc is valid, so its
// head descriptor does not change under it and is read without the heap
// lock; nullptr if p is not the head of a live large block (the caller
// then takes the lock to say what is wrong).
const PageDesc* owned_head(const void* p) {
  if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) != 0) return nullptr;
  const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  return d.kind == PageKind::kLargeHead ? &d : nullptr;
}

// Back to the heap, every check made under its lock. Out of line, as
// large_alloc_heap.
__attribute__((noinline)) void large_free_heap(void* p, Fn fn) {
  {
    LockGuard h(g.heap.lock());
    const PageDesc& hd = g.heap.region().descs()[g.heap.region().page_index(p)];
    if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) != 0 || hd.kind != PageKind::kLargeHead)
      fatal_if_inside_large(p, fn);
    PageDesc& d = large_head(p, fn_invalid_pointer(fn));
    g.heap.free_pages(g.heap.region().page_index(p), d.npages);
    debug_check_heap_locked();
  }
  g.reporter.maybe_start_thread();
}
}  // namespace

void large_free(void* p, Fn fn) {
  // A valid free owns the block, so its descriptor can be read without the
  // heap lock; anything unexpected takes the checked path below.
  const PageDesc& peek = g.heap.region().descs()[g.heap.region().page_index(p)];
  if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) == 0 && peek.kind == PageKind::kLargeHead) {
    if (peek.flags) {
      // In some thread's large-block cache: freed already.
      if (peek.flags & kPageCached)
        fatal_misuse(fn, "double free of", p, "the block is already free (in a thread's large-block cache)");
      // The hardened mode's blocks, guard pages and quarantine.
      harden_free_large(p, fn, ~size_t{0});
      return;
    }
    if (thread_large_put(p, peek.npages)) return;
  }
  large_free_heap(p, fn);
}

void large_check_live(const void* p, Fn fn) {
  const PageDesc& peek = g.heap.region().descs()[g.heap.region().page_index(p)];
  if ((reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) == 0 && peek.kind == PageKind::kLargeHead &&
      !(peek.flags & kPageCached))
    return;
  LockGuard h(g.heap.lock());
  fatal_if_inside_large(p, fn);
  large_head(p, fn_invalid_pointer(fn));
}

void large_set_cached(void* p, bool cached) {
  PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  d.flags = static_cast<uint8_t>(cached ? d.flags | kPageCached : d.flags & ~kPageCached);
}

void large_check_size(const void* p, size_t size, Fn fn) {
  // The caller owns the block: its descriptor can be read without the lock
  // (a block that is not live is refused by the free that follows).
  const PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  if (d.kind != PageKind::kLargeHead || (reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) != 0) return;
  const uint64_t want = size ? (uint64_t{size} + kPageSize - 1) >> kPageShift : 1;
  if (d.npages < want || d.npages - want > want / 8)
    fatal_size_mismatch(fn, p, size, (uint64_t{d.npages} << kPageShift) - kPageSize + 1, uint64_t{d.npages} << kPageShift);
}

void large_release(void* p, uint32_t npages, uint64_t freed_at) {
  large_set_cached(p, false);
  {
    LockGuard h(g.heap.lock());
    g.heap.free_pages(g.heap.region().page_index(p), npages, false, freed_at);
    debug_check_heap_locked();
  }
  // No maybe_start_thread() here: callers hold their cache's mutex, and
  // creating the thread allocates (they start it once the mutex is free).
}


size_t large_usable(const void* p) {
  if (const PageDesc* d = owned_head(p)) return size_t{d->npages} << kPageShift;
  LockGuard h(g.heap.lock());
  return size_t{large_head(p, "malloc_usable_size(): invalid pointer").npages} << kPageShift;
}

bool large_resize_in_place(void* p, size_t new_size) {
  if (new_size > kMaxBlockSize) return false;
  const uint32_t want = static_cast<uint32_t>((new_size + kPageSize - 1) >> kPageShift);
  const PageDesc* owned = owned_head(p);
  // Same size: no lock needed.
  if (owned && want == owned->npages) return true;
  LockGuard h(g.heap.lock());
  PageDesc& d = large_head(p, "realloc(): invalid pointer");
  const uint32_t idx = g.heap.region().page_index(p);
  if (want == d.npages) return true;
  if (want > d.npages) {
    // Grow: into the free pages after the block, if there are enough (no
    // copy, and the old pages stay resident: a buffer grown 25% at a time to
    // 16 MiB copied 64 MiB and faulted in 80 MiB, BM_ReallocGrow).
    if (!g.heap.extend(idx, d.npages, want - d.npages)) return false;
    d.npages = want;
    debug_check_heap_locked();
    return true;
  }
  // Shrink: the tail goes back to the free lists.
  g.heap.free_pages(idx + want, d.npages - want);
  d.npages = want;
  debug_check_heap_locked();
  return true;
}

// ---- huge: own mappings ------------------------------------------------------

namespace {

struct HugeSlot {
  uintptr_t addr;  // 0 = empty
  size_t size;
  // The hardened mode's guard pages around the mapping (0 otherwise) and
  // the requested size.
  uint32_t lead;
  uint32_t trail;
  size_t req;
};

constinit Mutex g_huge_lock;
constinit HugeSlot* g_slots = nullptr;
constinit size_t g_cap = 0;  // power of two
constinit size_t g_count = 0;
constinit uint64_t g_huge_bytes = 0;

size_t slot_of(uintptr_t a) { return static_cast<size_t>((a >> kPageShift) * 0x9E3779B97F4A7C15ull) & (g_cap - 1); }

bool table_grow() {
  const size_t cap = g_cap ? g_cap * 2 : 256;
  HugeSlot* s = static_cast<HugeSlot*>(os::map(cap * sizeof(HugeSlot)));
  if (!s) return false;
  HugeSlot* old = g_slots;
  const size_t old_cap = g_cap;
  g_slots = s;
  g_cap = cap;
  for (size_t i = 0; i < old_cap; ++i) {
    if (!old[i].addr) continue;
    size_t j = slot_of(old[i].addr);
    while (g_slots[j].addr) j = (j + 1) & (g_cap - 1);
    g_slots[j] = old[i];
  }
  if (old) os::unmap(old, old_cap * sizeof(HugeSlot));
  return true;
}

// Huge lock held. Index of p's slot or g_cap.
size_t table_find(uintptr_t a) {
  if (!g_cap) return 0;
  for (size_t j = slot_of(a);; j = (j + 1) & (g_cap - 1)) {
    if (g_slots[j].addr == a) return j;
    if (!g_slots[j].addr) return g_cap;
  }
}

// Huge lock held. Removes slot i (linear probing: shift followers back).
void table_erase(size_t i) {
  g_count--;
  g_huge_bytes -= g_slots[i].size;
  g_slots[i].addr = 0;
  for (size_t j = (i + 1) & (g_cap - 1); g_slots[j].addr; j = (j + 1) & (g_cap - 1)) {
    const size_t home = slot_of(g_slots[j].addr);
    // Move j into the hole at i if its home is not in (i, j].
    const bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!between) {
      g_slots[i] = g_slots[j];
      g_slots[j].addr = 0;
      i = j;
    }
  }
}

bool table_insert(uintptr_t a, size_t size, uint32_t lead = 0, uint32_t trail = 0, size_t req = 0) {
  if ((g_count + 1) * 2 > g_cap && !table_grow()) return false;
  size_t j = slot_of(a);
  while (g_slots[j].addr) j = (j + 1) & (g_cap - 1);
  g_slots[j] = HugeSlot{a, size, lead, trail, req};
  g_count++;
  g_huge_bytes += size;
  return true;
}

}  // namespace

void* huge_alloc(size_t size, size_t align) {
  const size_t map_size = align_up(size ? size : 1, kPageSize);
  if (map_size < size) return nullptr;
  maybe_relieve_pressure();
  g.heap.headroom_map(map_size);  // near a memory limit: warm free memory goes back first
  void* p = os::map_aligned(map_size, align < kPageSize ? kPageSize : align);
  if (!p) return nullptr;
  LockGuard h(g_huge_lock);
  if (!table_insert(reinterpret_cast<uintptr_t>(p), map_size)) {
    os::unmap(p, map_size);
    return nullptr;
  }
  return p;
}

void* huge_alloc_guarded(size_t size, size_t align) {
  const size_t map_size = align_up(size ? size : 1, kPageSize);
  if (map_size < size || map_size > SIZE_MAX - 2 * kPageSize) return nullptr;
  // A guard page before the block (unless that would break its alignment)
  // and one after it.
  const uint32_t lead = align <= kPageSize ? kPageSize : 0;
  const uint32_t trail = kPageSize;
  maybe_relieve_pressure();
  g.heap.headroom_map(map_size);
  char* base = static_cast<char*>(os::map_aligned(lead + map_size + trail, align < kPageSize ? kPageSize : align));
  if (!base) return nullptr;
  char* p = base + lead;
  if (hf(kHfGuards)) {
    if (lead) os::protect(base, lead, false);
    os::protect(p + map_size, trail, false);
  }
  harden_write_canary(p, size, map_size);
  LockGuard h(g_huge_lock);
  if (!table_insert(reinterpret_cast<uintptr_t>(p), map_size, lead, trail, size)) {
    os::unmap(base, lead + map_size + trail);
    return nullptr;
  }
  return p;
}

bool huge_free(void* p, Fn fn, size_t size) {
  HugeSlot slot;
  {
    LockGuard h(g_huge_lock);
    const size_t i = table_find(reinterpret_cast<uintptr_t>(p));
    if (i == g_cap) return false;
    slot = g_slots[i];
    if (slot.lead || slot.trail) {
      // Hardened: the canary after the requested size, the exact size.
      harden_check_canary(p, slot.req, slot.size, fn);
      if (size != ~size_t{0} && size != slot.req) fatal_size_mismatch(fn, p, size, slot.req, slot.req);
    }
    table_erase(i);
  }
  os::unmap(static_cast<char*>(p) - slot.lead, slot.lead + slot.size + slot.trail);
  g.heap.headroom_release(slot.size);
  return true;
}

size_t huge_requested(const void* p) {
  LockGuard h(g_huge_lock);
  const size_t i = table_find(reinterpret_cast<uintptr_t>(p));
  if (i == g_cap) return 0;
  if (g_slots[i].lead || g_slots[i].trail) harden_check_canary(p, g_slots[i].req, g_slots[i].size, Fn::kUsableSize);
  return g_slots[i].req ? g_slots[i].req : ~size_t{0};  // (~0: a zero-byte request)
}

bool huge_check_size(const void* p, size_t size, Fn fn) {
  LockGuard h(g_huge_lock);
  const size_t i = table_find(reinterpret_cast<uintptr_t>(p));
  if (i == g_cap) return false;
  const size_t want = align_up(size ? size : 1, kPageSize);
  if (want != g_slots[i].size || want < size) {
    const size_t have = g_slots[i].size;
    g_huge_lock.unlock();
    fatal_size_mismatch(fn, p, size, have - kPageSize + 1, have);
  }
  return true;
}

size_t huge_usable(const void* p) {
  LockGuard h(g_huge_lock);
  const size_t i = table_find(reinterpret_cast<uintptr_t>(p));
  return i == g_cap ? 0 : g_slots[i].size;
}

void* huge_realloc(void* p, size_t new_size) {
  const size_t map_size = align_up(new_size, kPageSize);
  if (map_size < new_size) return nullptr;
  size_t old_size;
  void* q;
  {
    LockGuard h(g_huge_lock);
    const size_t i = table_find(reinterpret_cast<uintptr_t>(p));
    if (i == g_cap) return nullptr;
    old_size = g_slots[i].size;
    if (old_size == map_size) return p;
    q = os::remap(p, old_size, map_size);
    if (!q) return nullptr;
    table_erase(i);
    table_insert(reinterpret_cast<uintptr_t>(q), map_size);  // cannot fail: one slot was freed
  }
  // (Counted after the fact: the heap lock is never taken inside the huge lock.)
  if (map_size > old_size) g.heap.headroom_map(map_size - old_size);
  else g.heap.headroom_release(old_size - map_size);
  return q;
}

bool huge_describe_fault(const void* a, const void** block, const char** what) {
  // From a signal handler: no lock (a torn read can only name nothing).
  const uintptr_t x = reinterpret_cast<uintptr_t>(a);
  for (size_t i = 0; i < g_cap; ++i) {
    const HugeSlot s = g_slots[i];
    if (!s.addr || !(s.lead || s.trail)) continue;
    if (x < s.addr && x >= s.addr - s.lead) *what = "a guard page before the huge block at";
    else if (x >= s.addr + s.size && x < s.addr + s.size + s.trail) *what = "a guard page after the huge block at";
    else continue;
    *block = reinterpret_cast<const void*>(s.addr);
    return true;
  }
  return false;
}

void huge_totals(uint64_t* bytes, uint64_t* count) {
  LockGuard h(g_huge_lock);
  *bytes = g_huge_bytes;
  *count = g_count;
}

void huge_prefork() { g_huge_lock.lock_raw(); }
void huge_postfork_parent() { g_huge_lock.unlock_raw(); }
void huge_postfork_child() { g_huge_lock.reset_after_fork(); }

}  // namespace ebb
