#include "front/thread_cache.h"

#include <errno.h>
#include <pthread.h>

#include "common/check.h"
#include "common/log.h"
#include "front/central.h"
#include "front/globals.h"
#include "front/harden.h"
#include "front/large.h"
#include "front/meta_pool.h"
#include "front/pressure_relief.h"
#include "os/os.h"

namespace ebb {

constinit ThreadCache g_empty_cache;
constinit thread_local ThreadCache* t_cache __attribute__((tls_model("initial-exec"))) = &g_empty_cache;

namespace {

thread_local ThreadState t_state __attribute__((tls_model("initial-exec"))) = ThreadState::kNone;

// Lock order (see docs/DESIGN.md): reporter batch -> registry -> cache pool
// -> a cache's mutex -> central bins (ascending) -> slab pool -> heap.
constinit Mutex g_registry_lock;
constinit ThreadCache* g_registry = nullptr;
constinit MetaPool<ThreadCache> g_cache_pool;
pthread_key_t g_key;
constinit bool g_key_ok = false;

// A list's capacity (slow start: grow_bin), and its length. The hardened
// mode keeps nothing in thread caches (capacity 0): its checks are all on
// the slow paths (front/harden.h).
uint32_t bin_max(const ThreadCache* tc, unsigned cls) { return tc->max[cls]; }
uint32_t bin_count(const ThreadCache* tc, unsigned cls) { return tc->max[cls] - tc->bins[cls].room; }

void registry_link(ThreadCache* tc) {
  LockGuard r(g_registry_lock);
  tc->reg_prev = nullptr;
  tc->reg_next = g_registry;
  if (g_registry) g_registry->reg_prev = tc;
  g_registry = tc;
}

// Registry lock held.
void registry_unlink(ThreadCache* tc) {
  if (tc->reg_prev) tc->reg_prev->reg_next = tc->reg_next;
  else g_registry = tc->reg_next;
  if (tc->reg_next) tc->reg_next->reg_prev = tc->reg_prev;
  tc->reg_prev = tc->reg_next = nullptr;
}

// What an overflowing bin of capacity `max` keeps: its newest quarter (at
// least one object); the rest, a batch (overflow_batch), goes on. A refill
// of an empty bin takes such a batch from the transfer cache whole.
EBB_INLINE uint32_t overflow_keep(uint32_t max) { return (max + 3) / 4; }
EBB_INLINE uint32_t overflow_batch(uint32_t max) { return max - overflow_keep(max); }

// The cache's mutex held (or the cache otherwise exclusive). Returns all but
// `keep` objects of a bin to the central bin; `freed_at` as in
// central_free_batch; `transfer`: an overflow, offered to the transfer cache.
//
// Every link walked is checked to stay in the heap before it is followed (a
// write after free would otherwise send the walk anywhere); the slabs check
// the objects themselves (central_free_batch), a refill and malloc's pops a
// transfer batch's. A whole bin (an exiting thread, a drained idle cache)
// is handed on unwalked: the list ends with nullptr already. Otherwise the
// bin is cut after its first `keep` objects (the newest), and the rest, the
// objects freed longest ago, goes on, as jemalloc's flushes do: the walk
// that cuts a list is a chain of loads, each waiting for the one before
// (lines the frees just wrote), and keeping a quarter walks a third of a
// hop per object sent, where sending the newest half walked one
// (`BM_BatchRandom/512`: flush_bin 20% of the samples, its cut walk). To
// the slabs the batch is the newest objects instead: the walk that frees
// them finds where the bin goes on, so no object is walked twice (a batch
// freed in scattered order costs a TLB miss an object on each walk: a cut
// before the slabs' walk was 7% of `pressure`).
void flush_bin(ThreadCache* tc, unsigned cls, uint32_t keep, uint64_t freed_at = 0, bool transfer = false) {
  Bin& b = tc->bins[cls];
  const uint32_t count = bin_count(tc, cls);
  if (count <= keep) return;
  const uint32_t n = count - keep;
  void* head = b.head;
  if (!in_heap(head)) fatal_corrupt_list(Fn::kFree, head, "a thread cache's list");
  b.room = bin_max(tc, cls) - keep;
  if (keep == 0) {
    b.head = nullptr;
    if (transfer) central_transfer_batch(cls, head, n);
    else central_free_batch(cls, head, n, freed_at);
  } else if (transfer && !central_transfer_full(cls)) {
    // (A transfer batch is a cache's bin later: it ends with nullptr, as the
    // bin's oldest object does.)
    central_transfer_batch(cls, cut_list(head, keep, "a thread cache's list"), n);
  } else {
    central_free_batch(cls, head, n, freed_at, &b.head);
  }
}

// Calls f(obj) for each of the `n` objects of a list of class cls (each
// checked first), until f returns true; whether one did.
template <class F>
bool walk_list(const void* x, uint32_t n, unsigned cls, Fn fn, F f) {
  for (uint32_t i = 0; i < n; ++i) {
    if (!valid_free_object(x, cls)) fatal_corrupt_list(fn, x, "a thread cache's list");
    if (f(x)) return true;
    x = link_load(x);
  }
  return false;
}

// The cache holds p: its bin of class cls or the dormant bin's pass list.
bool bin_contains(const ThreadCache* tc, const void* p, unsigned cls) {
  auto is_p = [p](const void* x) { return x == p; };
  return walk_list(tc->bins[cls].head, bin_count(tc, cls), cls, Fn::kFree, is_p) ||
         walk_list(tc->pass[cls].head, tc->pass[cls].count, cls, Fn::kFree, is_p);
}

// The mutex held (or the owner inside the busy handshake). Takes the pass
// list of class cls out of the cache; returns its length.
uint32_t take_pass_list(ThreadCache* tc, unsigned cls, void** head) {
  PassList& l = tc->pass[cls];
  const uint32_t n = l.count;
  *head = l.head;
  l.head = nullptr;
  __atomic_store_n(&l.count, 0u, __ATOMIC_RELAXED);
  return n;
}

// The descriptor flag that marks a large block as held by a cache (large.cpp
// has the same, for its own callers; inline here, where it is hot).
EBB_INLINE void mark_cached(void* p, bool cached) {
  PageDesc& d = g.heap.region().descs()[g.heap.region().page_index(p)];
  d.flags = static_cast<uint8_t>(cached ? d.flags | kPageCached : d.flags & ~kPageCached);
}

// The cache's mutex held. Removes large slot i.
LargeSlot large_remove(ThreadCache* tc, unsigned i) {
  const LargeSlot s = tc->large[i];
  for (unsigned k = i; k + 1 < tc->large_count; ++k) tc->large[k] = tc->large[k + 1];
  tc->large_count--;
  tc->large_pages -= s.npages;
  return s;
}

// The cache's mutex held. Sets a bin's capacity, flushing what it holds
// beyond it; keeps grown_bytes.
void set_bin_max(ThreadCache* tc, unsigned cls, uint32_t nm) {
  const uint32_t m = tc->max[cls], count = bin_count(tc, cls);
  if (count > nm) flush_bin(tc, cls, nm);
  tc->max[cls] = nm;
  if (nm > class_info(cls).cache_init) tc->grown_mask |= uint64_t{1} << cls;
  else tc->grown_mask &= ~(uint64_t{1} << cls);
  tc->bins[cls].room = nm - (count < nm ? count : nm);
  // (Capacities never go below the class's start: grown_bytes counts what
  // is above it.)
  tc->grown_bytes = tc->grown_bytes + uint64_t{nm} * class_info(cls).size - uint64_t{m} * class_info(cls).size;
}

// The cache's mutex held. Halves the capacity of other classes (round
// robin, none below its start) until `need` bytes are freed; false if
// they cannot give that much (a walk that takes less still shrinks them:
// caches follow a budget that fell).
bool steal_capacity(ThreadCache* tc, unsigned cls, uint64_t need) {
  // Only the other classes' growth beyond their start can be taken, so only
  // they are visited (grown_mask), in turn from steal_next: walking all 40
  // cost a thread using one class at its budget 11% of a batch of 512 B
  // objects' instructions, and one using many (`tinymixed`: 16 B-8 KiB in a
  // ~90 KiB budget, a steal on most slow-path calls) 170 instructions a
  // grow_bin call, 105 this way.
  static_assert(kNumClasses < 64, "a class is a bit of grown_mask");
  for (uint64_t cand = tc->grown_mask & ~(uint64_t{1} << cls); cand && need > 0;) {
    const uint64_t from_next = cand & (~uint64_t{0} << tc->steal_next);
    const unsigned v = static_cast<unsigned>(__builtin_ctzll(from_next ? from_next : cand));
    cand &= ~(uint64_t{1} << v);
    tc->steal_next = v == kNumClasses ? 1 : v + 1;
    const uint32_t m = tc->max[v], init = class_info(v).cache_init;
    const uint32_t nm = m / 2 > init ? m / 2 : init;
    const uint64_t freed = uint64_t{m - nm} * class_info(v).size;
    set_bin_max(tc, v, nm);
    need = freed >= need ? 0 : need - freed;
  }
  return need == 0;
}

// How far a thread's caches may grow beyond their start (before the bounds
// of grow_bin): an eighth of the heap's pages in use (as of its last growth
// or reporter pass), scaled down by the heap's size below 8 MiB. In a small
// heap the caches are a large part of it, and the objects they hold pin
// slabs that would go back: `tinymixed` (0.9 MiB live in 2.3 MiB of pages
// in use, half of it free objects in slabs) peaked 0.35 MiB higher with a
// flat eighth. Larger heaps keep it: their caches' batches are what keeps
// threads that pass objects to each other off the central bins' locks
// (`BM_RemoteFree` took 1.6x the time with a sixteenth of the memory in
// use, 3x with 64 KiB), and a thread allocating 1000 objects of 8 KiB at a
// time (`BM_BatchRandom/8192`) 6% more with that sixteenth.
uint64_t cache_budget_bytes() {
  constexpr uint64_t kFull = uint64_t{8} << 20;
  const uint64_t in_use = g.heap.in_use_hint() << kPageShift;
  return in_use >= kFull ? in_use / 8 : in_use / 8 * in_use / kFull;
}

// A slow-path call on a bin: the class is in use, let the cache hold more
// of it (slow start, as tcmalloc's per-class list lengths), within the
// thread's budget for growth beyond the classes' start (cache_budget_bytes),
// at least 64 KiB, at most EBBMALLOC_THREAD_CACHE_KB (2 MiB). Past it, a
// growing class takes capacity from the others, so a thread's caches follow
// what it uses and a small program's stay small (a 1 MiB program: 2.7 MiB
// cached without it).
void grow_bin(ThreadCache* tc, unsigned cls) {
  const uint32_t cap = class_info(cls).cache_max, m = tc->max[cls];
  if (m == 0 || m >= cap) return;  // (0: the hardened mode)
  const uint32_t grown = m * 2 < cap ? m * 2 : cap;
  const uint64_t add = uint64_t{grown - m} * class_info(cls).size;
  // (The option's least value is 64 KiB: the bounds never cross.)
  const uint64_t most = uint64_t{g.opts.thread_cache_kb} << 10, least = uint64_t{64} << 10;
  const uint64_t by_use = cache_budget_bytes();
  const uint64_t budget = by_use < least ? least : (by_use > most ? most : by_use);
  if (tc->grown_bytes + add > budget && !steal_capacity(tc, cls, tc->grown_bytes + add - budget)) return;
  tc->bins[cls].room += grown - m;
  tc->max[cls] = grown;
  tc->grown_mask |= uint64_t{1} << cls;
  tc->grown_bytes += add;
}

// `idle`: the reporter drains a thread that went idle; when it comes back,
// its caches start small again. `transfer`: a thread that exits offers its
// lists to the transfer caches whole (the next thread's first refills take
// them in O(1) instead of through the slab bitmaps; what stays there is
// drained to the slabs once cold, like any overflow).
[[gnu::flatten]] void flush_all(ThreadCache* tc, uint64_t freed_at = 0, bool idle = false, bool transfer = false) {
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    // (Most of a cache's classes are empty: no call for them.)
    if (bin_count(tc, c)) flush_bin(tc, c, 0, freed_at, transfer);
    if (idle && tc->max[c]) set_bin_max(tc, c, class_info(c).cache_init);
    if (tc->pass[c].count) {
      void* head;
      const uint32_t n = take_pass_list(tc, c, &head);
      if (transfer) central_transfer_batch(c, head, n);
      else central_free_batch(c, head, n, freed_at);
    }
    if (idle) tc->pass[c].max = 0;
  }
  while (tc->large_count) {
    const LargeSlot s = large_remove(tc, tc->large_count - 1);
    large_release(s.p, s.npages, freed_at);
  }
}

// Marks the cache as changed; `stamp` also records when (a clock read: the
// small-object slow paths, which run once per batch, do; the large-block
// cache, hit on every large malloc/free, does not).
void bump_epoch(ThreadCache* tc, bool stamp = true) {
  tc->epoch.store(tc->epoch.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (stamp) tc->last_ms.store(os::now_ms(), std::memory_order_relaxed);
}

uint64_t cache_bytes(const ThreadCache* tc) {
  uint64_t bytes = uint64_t{__atomic_load_n(&tc->large_pages, __ATOMIC_RELAXED)} << kPageShift;
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    const uint32_t room = __atomic_load_n(&tc->bins[c].room, __ATOMIC_RELAXED);
    const uint32_t max = __atomic_load_n(&tc->max[c], __ATOMIC_RELAXED);
    const uint32_t passed = __atomic_load_n(&tc->pass[c].count, __ATOMIC_RELAXED);
    bytes += (uint64_t{max > room ? max - room : 0u} + passed) * class_info(c).size;
  }
  return bytes;
}

// The cache holds, with the heap's warm free memory, at least the mark:
// worth a reporter thread (cheaper than worth_reporting(), which also walks
// the central bins: those ask on their own when a slab is freed into).
bool cache_worth(const ThreadCache* tc) {
  const uint64_t mark = uint64_t{g.opts.report_mark_kb} << 10;
  return cache_bytes(tc) + (g.heap.buddy().warm_reportable_pages_racy() << kPageShift) >= mark;
}

// After a slow-path operation on the cache. With a reporter thread idle, it
// is woken to look at caches later. With none, one is wanted only for memory
// worth giving back: on the paths that put memory into the cache (`adds`),
// every 64th operation looks (the sum over the bins costs ~200
// instructions). A cache holds a few MiB at most; what overflows it goes to
// the central bins, which count it (Reporter::note_freed).
void note_activity(const ThreadCache* tc, bool adds) {
  const uint32_t s = g.reporter.state();
  if (EBB_UNLIKELY(s == Reporter::kIdle)) {
    g.reporter.note_activity();
  } else if (s == Reporter::kNoThread && adds && (tc->epoch.load(std::memory_order_relaxed) & 63) == 1 &&
             cache_worth(tc)) {
    g.reporter.note_activity();
  }
}

void thread_exit(void* arg) {
  ThreadCache* tc = static_cast<ThreadCache*>(arg);
  // Later frees in this thread (other TLS destructors) go uncached.
  t_cache = &g_empty_cache;
  t_state = ThreadState::kExited;
  {
    LockGuard m(tc->mutex);
    flush_all(tc, 0, false, /*transfer=*/true);
  }
  {
    LockGuard r(g_registry_lock);
    registry_unlink(tc);
  }
  g_cache_pool.put(tc);
  // Batches left in the transfer caches are drained by a reporter pass once
  // cold: make sure one comes (it sets the deadline).
  g.reporter.request();
  g.reporter.maybe_start_thread();
}

ThreadCache* thread_init() {
  if (!ensure_init()) return nullptr;
  t_state = ThreadState::kSetup;  // re-entrant calls below run uncached
  ThreadCache* tc = g_cache_pool.get();
  if (!tc) {
    t_state = ThreadState::kNone;
    return nullptr;
  }
  // Every bin dormant (capacity 0) until the thread allocates its class
  // (malloc_small_slow_impl); the pool's caches come back empty (flush_all).
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    tc->bins[c].room = tc->max[c] = 0;
    tc->pass[c].max = 0;
  }
  registry_link(tc);
  // Registers the exit destructor; for early keys this never allocates,
  // and if it does the allocation is served uncached (kSetup).
  if (g_key_ok) pthread_setspecific(g_key, tc);
  t_cache = tc;
  t_state = ThreadState::kActive;
  return tc;
}

// Returns the caller's cache, creating it on first use; nullptr when the
// thread must run uncached (during its own setup, after exit, or without
// memory for a cache).
ThreadCache* my_cache() {
  ThreadCache* tc = t_cache;
  if (EBB_LIKELY(tc != &g_empty_cache)) return tc;
  if (t_state != ThreadState::kNone) return nullptr;
  return thread_init();
}

// Another thread's cache: drain it if its owner is not inside a fast-path
// operation. Returns false if it must be retried later.
bool drain_other(ThreadCache* tc, uint64_t freed_at) {
  if (!tc->mutex.try_lock()) return false;
  tc->drain_req.store(1, std::memory_order_relaxed);
  if (!os::membarrier()) {
    // No asymmetric barrier on this kernel: it is not safe to touch the
    // cache; the owner keeps it until it exits or calls malloc_trim.
    tc->drain_req.store(0, std::memory_order_relaxed);
    tc->mutex.unlock();
    return true;
  }
  // Acquire: reading the owner's last busy=0 (a release store at the end of
  // each fast-path operation) orders everything that operation did before
  // the drain (on x86 a plain load; it also lets ThreadSanitizer see the
  // handover of the objects, which the membarrier hides from it).
  if (tc->busy.load(std::memory_order_acquire)) {
    tc->drain_req.store(0, std::memory_order_relaxed);
    tc->mutex.unlock();
    return false;
  }
  flush_all(tc, freed_at, /*idle=*/true);
  tc->drain_req.store(0, std::memory_order_release);
  tc->mutex.unlock();
  g.reporter.stats_mut().cache_drains.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace

void thread_cache_global_init() {
  g_key_ok = pthread_key_create(&g_key, &thread_exit) == 0;
  // Register for membarrier early, while the process has few threads.
  os::membarrier_available();
}

namespace {
void* malloc_small_slow_impl(size_t size, unsigned cls) {
  (void)size;
  ThreadCache* tc = my_cache();
  if (!tc) {
    if (!ensure_init()) return nullptr;
    void* p = central_alloc_one(cls);
    if (p) key_word(p) = 0;
    return p;
  }
  void* p = nullptr;
  maybe_relieve_pressure();  // a refill may take a new slab from the heap
  {
    LockGuard m(tc->mutex);  // waits for a drain in progress
    Bin& b = tc->bins[cls];
    // The fast path comes here with an empty list, or with a head that is
    // not in the heap: a link overwritten while its object was free.
    if (b.head && !valid_free_object(b.head, cls)) fatal_corrupt_list(Fn::kMalloc, b.head, "this thread's cache");
    // The thread's first malloc of the class wakes its bin (see PassList).
    const bool woken = tc->max[cls] == 0;
    if (woken) b.room = tc->max[cls] = class_info(cls).cache_init;
    grow_bin(tc, cls);
    if (!b.head) {
      // A transfer batch of up to `max` is taken whole (an overflow's
      // three quarters, another thread's of another capacity, an exited
      // thread's cache): the list is empty, so it fits. From the slabs a
      // refill takes half the capacity: it writes a link and the key into
      // every object it takes, so it faults them in (taking three quarters
      // there, `tinymixed` took 975 minor faults a run instead of 863).
      const unsigned max = bin_max(tc, cls);
      const unsigned want = max - max / 2;
      b.room = max - central_alloc_batch(cls, want, &b.head, max);
      if (b.head && !valid_free_object(b.head, cls)) fatal_corrupt_list(Fn::kMalloc, b.head, "a transfer batch");
    }
    // What the dormant bin passed less than a batch of goes to the slabs,
    // after the refill: a refill would take it back.
    if (woken) {
      void* passed;
      if (const uint32_t n = take_pass_list(tc, cls, &passed)) central_free_batch(cls, passed, n);
      tc->pass[cls].max = 0;  // (free's fast path pushes onto a list whose max is above 0)
    }
    if (b.head) {
      p = b.head;
      b.head = link_load(p);
      key_word(p) = 0;
      b.room++;
    }
    bump_epoch(tc);
  }
  note_activity(tc, /*adds=*/false);
  g.reporter.maybe_start_thread();
  return p;
}
}  // namespace

void* malloc_small_slow(size_t size) {
  if (EBB_UNLIKELY(!ensure_init())) {
    errno = ENOMEM;
    return nullptr;
  }
  if (g.opts.harden) return harden_malloc(size);
  void* p = malloc_small_slow_impl(size, size_class(size));
  // The heap cannot grow (address space taken or used up): a mapping of its
  // own, as for a large block; NULL and ENOMEM only if that fails too.
  if (EBB_UNLIKELY(!p) && !(p = huge_alloc(size ? size : 1, 0))) errno = ENOMEM;
  return p;
}

namespace {

// Registry lock held: takes every cache's mutex and stops the other threads
// at their next fast-path call (drain_req, one membarrier). Returns whether
// their lists may be read: then each owner is also out of its fast path.
bool hold_caches(ThreadCache* mine) {
  bool stopped = os::membarrier_available();
  for (ThreadCache* tc = g_registry; tc; tc = tc->reg_next) {
    tc->mutex.lock();
    if (tc != mine && stopped) tc->drain_req.store(1, std::memory_order_relaxed);
  }
  if (stopped) stopped = os::membarrier();
  if (stopped)
    for (ThreadCache* tc = g_registry; tc; tc = tc->reg_next)
      while (tc != mine && tc->busy.load(std::memory_order_acquire)) __builtin_ia32_pause();
  return stopped;
}

// Registry lock held: undoes hold_caches.
void release_caches(ThreadCache* mine) {
  for (ThreadCache* tc = g_registry; tc; tc = tc->reg_next) {
    if (tc != mine) tc->drain_req.store(0, std::memory_order_release);
    tc->mutex.unlock();
  }
}

ThreadCache* caller_cache() { return t_cache == &g_empty_cache ? nullptr : t_cache; }

}  // namespace

// Where the small object p of class cls is free, if anywhere: a thread's
// cache, a transfer batch or its slab (nullptr: it is live). Called when
// p's word 1 holds the free key, with no allocator lock held. The calling
// thread's own list is walked first (the usual double frees, immediate or
// interleaved, are found there without disturbing other threads); then
// everything at once: the registry lock, every cache's mutex, other threads
// stopped at their next fast-path call the way an idle-cache drain stops
// them (drain_req + membarrier, then waiting for `busy` to drop), and the
// bin's lock for its transfer batches and the slab's bitmap.
const char* find_free_small(const void* p, unsigned cls) {
  ThreadCache* mine = caller_cache();
  if (mine) {
    LockGuard m(mine->mutex);
    if (bin_contains(mine, p, cls)) return "the object is already free (in this thread's cache)";
  }
  LockGuard r(g_registry_lock);
  // Without membarrier another thread's list cannot be read safely: its
  // objects are then found only when they reach their slab.
  const bool stopped = hold_caches(mine);
  const char* where = nullptr;
  for (ThreadCache* tc = g_registry; tc && !where; tc = tc->reg_next) {
    if (tc != mine && !stopped) continue;
    if (bin_contains(tc, p, cls))
      where = tc == mine ? "the object is already free (in this thread's cache)"
                         : "the object is already free (in another thread's cache)";
  }
  if (!where) where = central_find_free(cls, p);
  release_caches(mine);
  return where;
}

void with_thread_caches_held(void (*f)(bool readable, void* ctx), void* ctx) {
  ThreadCache* mine = caller_cache();
  LockGuard r(g_registry_lock);
  const bool readable = hold_caches(mine);
  f(readable, ctx);
  release_caches(mine);
}

void thread_caches_visit(unsigned cls, bool readable, void (*visit)(void* obj, void* ctx), void* vctx) {
  const ThreadCache* mine = caller_cache();
  for (const ThreadCache* tc = g_registry; tc; tc = tc->reg_next) {
    if (tc != mine && !readable) continue;
    auto each = [visit, vctx](const void* x) {
      visit(const_cast<void*>(x), vctx);
      return false;
    };
    walk_list(tc->bins[cls].head, bin_count(tc, cls), cls, Fn::kNone, each);
    walk_list(tc->pass[cls].head, tc->pass[cls].count, cls, Fn::kNone, each);
  }
}

namespace {
// How many objects of class cls a dormant bin passes on at once: a new
// cache's capacity at first, doubling with each batch up to what a full bin's
// overflow flushes, and no more than the allocating threads' refills take
// whole (central_refill_fit): a larger batch is cut by a walk under the bin's
// lock, over objects whose lines sit in this thread's core (`xmalloc`, whose
// producers' capacities the cache budget keeps below the largest:
// central_alloc_batch 3.5% -> 11.4% of the samples before this bound).
uint32_t next_pass_max(uint32_t m, unsigned cls) {
  uint32_t most = overflow_batch(class_info(cls).cache_max);
  const uint32_t fit = central_refill_fit(cls);
  if (fit >= 2 && fit < most) most = fit;
  const uint32_t next = m == 0 ? class_info(cls).cache_init : m * 2;
  return next < most ? next : most;
}

// free() of an object of class cls whose bin is dormant (see PassList), when
// the fast path's push onto the pass list could not take it: the list is
// full (then it is passed on), not started, or a drain is in progress.
void pass_free(ThreadCache* tc, unsigned cls, void* p) {
  PassList& l = tc->pass[cls];
  {
    LockGuard m(tc->mutex);  // waits for a drain in progress
    if (l.max == 0) l.max = next_pass_max(0, cls);
    link_store(p, l.head);
    key_word(p) = g_fast.free_key;
    l.head = p;
    __atomic_store_n(&l.count, l.count + 1, __ATOMIC_RELAXED);
    if (l.count >= l.max) {
      void* head;
      const uint32_t n = take_pass_list(tc, cls, &head);
      l.max = next_pass_max(l.max, cls);
      central_transfer_batch(cls, head, n);
    }
    bump_epoch(tc);
  }
  note_activity(tc, /*adds=*/true);
  g.reporter.maybe_start_thread();
}
}  // namespace

void free_small_slow(void* p, Fn fn, size_t size) {
  if (g.opts.harden) {
    harden_free_small(p, fn, size);
    return;
  }
  const unsigned cls = page_class_of(p);
  // Before anything changes: a double free aborts here.
  if (has_free_key(p)) {
    if (const char* where = find_free_small(p, cls)) fatal_misuse(fn, "double free of", p, where);
  }
  ThreadCache* tc = my_cache();
  if (!tc) {
    central_free_one(cls, p);  // its slab's bitmap catches a double free
    return;
  }
  // (Only the owner wakes a bin: max is read here without the mutex.)
  if (tc->max[cls] == 0) return pass_free(tc, cls, p);
  {
    LockGuard m(tc->mutex);
    Bin& b = tc->bins[cls];
    if (b.room == 0) {
      flush_bin(tc, cls, overflow_keep(bin_max(tc, cls)), 0, /*transfer=*/true);
      grow_bin(tc, cls);
    }
    link_store(p, b.head);
    key_word(p) = g_fast.free_key;
    b.head = p;
    b.room--;
    bump_epoch(tc);
  }
  note_activity(tc, /*adds=*/true);
  g.reporter.maybe_start_thread();
}

static_assert(kObjChecks.c[0].lim == 0, "class 0 (large blocks) fails every object-start check");

void free_not_small_start(void* p, const Bin* b, Fn fn) {
  if (b->chk_lim == 0) return large_free(p, fn);
  fatal_not_object_start(fn, p);
}

void check_small_live(const void* p, unsigned cls, Fn fn) {
  if (!object_start(p, cls)) fatal_not_object_start(fn, p);
  if (has_free_key(p)) {
    if (const char* where = find_free_small(p, cls)) fatal_misuse(fn, "pointer to freed memory", p, where);
  }
}

namespace {
// The large-block cache is touched on every large malloc and free it serves,
// so it is entered as the small fast paths enter their bins (cache_enter),
// not under the cache mutex (two atomic read-modify-writes per call, most of
// a cached 64 KiB pair's time); when a drain or a hold has been requested it
// takes the mutex, which the drainer holds, as the small slow paths do. Only
// the owner and a drainer that won the handshake touch the slots.

// The cache exclusive (entered, or its mutex held). A cached block of at
// least npages and at most 1/8 more, newest first (the one most likely
// still in the CPU's caches), or nullptr.
EBB_INLINE void* large_take_slot(ThreadCache* tc, uint32_t npages) {
  for (unsigned i = tc->large_count; i-- > 0;) {
    const uint32_t n = tc->large[i].npages;
    if (n >= npages && n - npages <= npages / 8) {
      bump_epoch(tc, false);
      void* p = large_remove(tc, i).p;
      mark_cached(p, false);
      return p;
    }
  }
  return nullptr;
}

// The cache exclusive. Whether p fits beside the blocks the cache holds.
EBB_INLINE bool large_fits(const ThreadCache* tc, uint32_t npages) {
  return tc->large_count < kLargeSlots && tc->large_pages + npages <= kLargeCacheCapPages;
}

// The cache exclusive. Keeps p (which fits: large_fits, or an emptied cache).
// (A block in a thread's cache is marked so in its descriptor: large_free
// refuses a second free of it before it comes here. The owner set the mark
// itself, so its look at it is not racy; two threads freeing the same block
// at once is a race no scan of one cache could catch.)
EBB_INLINE void large_add(ThreadCache* tc, void* p, uint32_t npages) {
  mark_cached(p, true);
  tc->large[tc->large_count++] = LargeSlot{p, npages};
  tc->large_pages += npages;
  bump_epoch(tc, false);
}

// The cache exclusive. Keeps p; the oldest blocks that no longer fit go to
// out[] (*nout of them) for the caller to release once it has left the
// cache: the heap lock is not taken inside it.
void large_put_evicting(ThreadCache* tc, void* p, uint32_t npages, LargeSlot* out, unsigned* nout) {
  while (tc->large_count && !large_fits(tc, npages)) out[(*nout)++] = large_remove(tc, 0);
  large_add(tc, p, npages);
}

// thread_large_put when p does not fit beside the cache's blocks, or a drain
// or a hold is requested: out of line, with the blocks it evicts (the
// common put, into a cache with room, saves no registers for this).
EBB_NOINLINE void large_put_slow(ThreadCache* tc, void* p, uint32_t npages) {
  LargeSlot out[kLargeSlots];
  unsigned nout = 0;
  if (EBB_LIKELY(cache_enter(tc))) {
    large_put_evicting(tc, p, npages, out, &nout);
    cache_leave(tc);
  } else {
    cache_leave(tc);
    LockGuard m(tc->mutex);  // waits for the drain in progress
    large_put_evicting(tc, p, npages, out, &nout);
  }
  for (unsigned i = 0; i < nout; ++i) large_release(out[i].p, out[i].npages);
}
}  // namespace

void* thread_large_take(uint32_t npages) {
  // A thread without a cache of its own (the shared empty one: its count
  // stays 0) holds no blocks; nothing is set up here. (Racy when a drain
  // runs: an empty look only sends this call to the heap.)
  ThreadCache* tc = t_cache;
  if (__atomic_load_n(&tc->large_count, __ATOMIC_RELAXED) == 0) return nullptr;
  if (EBB_LIKELY(cache_enter(tc))) {
    void* p = large_take_slot(tc, npages);
    cache_leave(tc);
    return p;
  }
  cache_leave(tc);
  LockGuard m(tc->mutex);  // waits for the drain in progress
  return large_take_slot(tc, npages);
}

bool thread_large_put(void* p, uint32_t npages) {
  if (npages > kLargeCacheMaxPages) return false;
  ThreadCache* tc = my_cache();
  if (!tc) return false;
  if (EBB_LIKELY(cache_enter(tc)) && EBB_LIKELY(large_fits(tc, npages))) {
    large_add(tc, p, npages);
    cache_leave(tc);
  } else {
    cache_leave(tc);
    large_put_slow(tc, p, npages);
  }
  note_activity(tc, /*adds=*/true);
  g.reporter.maybe_start_thread();
  return true;
}

void thread_cache_flush_mine() {
  ThreadCache* tc = t_cache;
  if (tc == &g_empty_cache) return;
  LockGuard m(tc->mutex);
  flush_all(tc);
}

uint64_t drain_idle_caches(uint64_t now, uint64_t cold_ms, bool force) {
  uint64_t next = Reporter::kNever;
  ThreadCache* mine = t_cache;
  LockGuard r(g_registry_lock);
  for (ThreadCache* tc = g_registry; tc; tc = tc->reg_next) {
    const uint64_t bytes = cache_bytes(tc);
    if (bytes == 0) continue;
    const uint32_t e = tc->epoch.load(std::memory_order_relaxed);
    // Idle: no slow-path operation (epoch) and, as far as a racy look at the
    // bins can tell, no fast-path one (bytes) since the reporter last looked.
    if (!force) {
      if (e != tc->seen_epoch || bytes != tc->seen_bytes || tc->seen_ms == 0) {
        // Changed since the last look (which may be a while ago): idle at
        // best since its last slow-path operation, if that was within
        // cold_ms; older than that, fast-path calls changed it: count from now.
        const uint64_t last = tc->last_ms.load(std::memory_order_relaxed);
        tc->seen_epoch = e;
        tc->seen_bytes = bytes;
        tc->seen_ms = last && last <= now && last + cold_ms > now ? last : now;
        if (tc->seen_ms + cold_ms < next) next = tc->seen_ms + cold_ms;
        continue;
      }
      if (now < tc->seen_ms + cold_ms) {
        if (tc->seen_ms + cold_ms < next) next = tc->seen_ms + cold_ms;
        continue;
      }
    }
    // What an idle cache holds has been free since it was first seen idle:
    // its pages are stamped with that time, so they are cold already.
    const uint64_t freed_at = force ? 0 : tc->seen_ms;
    if (tc == mine) {
      LockGuard m(tc->mutex);
      flush_all(tc, freed_at, /*idle=*/true);
    } else if (!drain_other(tc, freed_at)) {
      if (now + cold_ms < next) next = now + cold_ms;
    }
  }
  return next;
}

uint64_t thread_cache_bytes(uint64_t* ncaches) {
  uint64_t bytes = 0, n = 0;
  LockGuard r(g_registry_lock);
  for (ThreadCache* tc = g_registry; tc; tc = tc->reg_next) {
    bytes += cache_bytes(tc);
    ++n;
  }
  if (ncaches) *ncaches = n;
  return bytes;
}

bool worth_reporting() {
  // The hardened mode's quarantines must be drained within a bounded time,
  // whatever they hold: any free there wants the thread.
  if (g.opts.harden) return true;
  const uint64_t mark = uint64_t{g.opts.report_mark_kb} << 10;
  uint64_t free = g.heap.buddy().warm_reportable_pages_racy() << kPageShift;
  if (free >= mark) return true;
  const CentralTotals t = central_totals();
  if (t.free_bytes > t.reported_bytes) free += t.free_bytes - t.reported_bytes;
  const ThreadCache* tc = t_cache;
  if (tc != &g_empty_cache) free += cache_bytes(tc);
  return free >= mark;
}

namespace {
// The forking thread's cache while a fork holds every lock: it runs
// uncached meanwhile (fork handlers may call malloc), so that it never
// waits for its own cache's mutex, which a signal handler's fork may have
// interrupted it holding.
constinit thread_local ThreadCache* t_fork_saved_cache __attribute__((tls_model("initial-exec"))) = nullptr;
constinit thread_local ThreadState t_fork_saved_state __attribute__((tls_model("initial-exec"))) = ThreadState::kNone;

void fork_restore_cache() {
  t_cache = t_fork_saved_cache;
  t_state = t_fork_saved_state;
}
}  // namespace

void thread_cache_prefork() {
  g_registry_lock.lock_raw();
  g_cache_pool.lock().lock_raw();
  t_fork_saved_cache = t_cache;
  t_fork_saved_state = t_state;
  t_cache = &g_empty_cache;
  t_state = ThreadState::kSetup;
}

void thread_cache_postfork_parent() {
  fork_restore_cache();
  g_cache_pool.lock().unlock_raw();
  g_registry_lock.unlock_raw();
}

void thread_cache_postfork_child() {
  fork_restore_cache();
  g_cache_pool.lock().reset_after_fork();
  g_registry_lock.reset_after_fork();
  // Only the forking thread exists in the child. The caches of the others
  // go back to the central bins, unless their owner was in the middle of
  // changing one (then its contents cannot be trusted and it is left alone).
  ThreadCache* mine = t_cache;
  ThreadCache* tc = g_registry;
  while (tc) {
    ThreadCache* next = tc->reg_next;
    if (tc != mine) {
      registry_unlink(tc);
      if (!tc->mutex.is_locked() && tc->busy.load(std::memory_order_relaxed) == 0) {
        flush_all(tc);
        g_cache_pool.put(tc);
      }
    } else {
      tc->mutex.reset_after_fork();
      tc->drain_req.store(0, std::memory_order_relaxed);
    }
    tc = next;
  }
}

}  // namespace ebb
