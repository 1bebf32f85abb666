#include "front/thread_cache.h"

#include <pthread.h>

#include "common/check.h"
#include "common/log.h"
#include "front/central.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/meta_pool.h"
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

// The cache's mutex held (or the cache otherwise exclusive). Returns all but
// `keep` objects of a bin to the central bin; `freed_at` as in
// central_free_batch; `transfer`: an overflow, offered to the transfer cache.
void flush_bin(ThreadCache* tc, unsigned cls, uint32_t keep, uint64_t freed_at = 0, bool transfer = false) {
  Bin& b = tc->bins[cls];
  if (b.count <= keep) return;
  const uint32_t n = b.count - keep;
  void* head = b.head;
  void* last = head;
  for (uint32_t i = 1; i < n; ++i) last = *static_cast<void**>(last);
  b.head = *static_cast<void**>(last);
  b.count = keep;
  *static_cast<void**>(last) = nullptr;  // the batch ends here (a transfer batch is a cache's bin later)
  if (transfer) central_transfer_batch(cls, head, n);
  else central_free_batch(cls, head, n, freed_at);
}

// The cache's mutex held. Removes large slot i.
LargeSlot large_remove(ThreadCache* tc, unsigned i) {
  const LargeSlot s = tc->large[i];
  for (unsigned k = i; k + 1 < tc->large_count; ++k) tc->large[k] = tc->large[k + 1];
  tc->large_count--;
  tc->large_pages -= s.npages;
  return s;
}

// A slow-path call on a bin: the class is in use, let the cache hold more
// of it (slow start, as tcmalloc's per-class list lengths).
void grow_bin(Bin& b, unsigned cls) {
  const uint32_t cap = class_info(cls).cache_max;
  if (b.max < cap) b.max = b.max * 2 < cap ? b.max * 2 : cap;
}

// `idle`: the reporter drains a thread that went idle; when it comes back,
// its caches start small again.
void flush_all(ThreadCache* tc, uint64_t freed_at = 0, bool idle = false) {
  for (unsigned c = 1; c <= kNumClasses; ++c) {
    flush_bin(tc, c, 0, freed_at);
    if (idle) tc->bins[c].max = class_info(c).cache_init;
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
  for (unsigned c = 1; c <= kNumClasses; ++c)
    bytes += uint64_t{__atomic_load_n(&tc->bins[c].count, __ATOMIC_RELAXED)} * class_info(c).size;
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
    flush_all(tc);
  }
  {
    LockGuard r(g_registry_lock);
    registry_unlink(tc);
  }
  g_cache_pool.put(tc);
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
  for (unsigned c = 1; c <= kNumClasses; ++c) tc->bins[c].max = class_info(c).cache_init;
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

void* malloc_small_slow(unsigned cls) {
  ThreadCache* tc = my_cache();
  if (!tc) {
    if (!ensure_init()) return nullptr;
    return central_alloc_one(cls);
  }
  void* p = nullptr;
  {
    LockGuard m(tc->mutex);  // waits for a drain in progress
    Bin& b = tc->bins[cls];
    grow_bin(b, cls);
    if (!b.head) {
      // A refill takes what an overflow flushes (max - max/2), so batches
      // pass whole through the transfer cache.
      const unsigned want = b.max - b.max / 2;
      b.count = central_alloc_batch(cls, want, &b.head);
    }
    if (b.head) {
      p = b.head;
      b.head = *static_cast<void**>(p);
      b.count--;
    }
    bump_epoch(tc);
  }
  note_activity(tc, /*adds=*/false);
  g.reporter.maybe_start_thread();
  return p;
}

void free_small_slow(void* p, unsigned cls) {
  ThreadCache* tc = my_cache();
  if (!tc) {
    central_free_one(cls, p);
    return;
  }
  {
    LockGuard m(tc->mutex);
    Bin& b = tc->bins[cls];
    if (b.head == p) fatal_pointer("free(): double free of", p, "the object is already free");
    if (b.count >= b.max) {
      flush_bin(tc, cls, b.max / 2, 0, /*transfer=*/true);
      grow_bin(b, cls);
    }
    *static_cast<void**>(p) = b.head;
    b.head = p;
    b.count++;
    bump_epoch(tc);
  }
  note_activity(tc, /*adds=*/true);
  g.reporter.maybe_start_thread();
}

void* thread_large_take(uint32_t npages) {
  ThreadCache* tc = my_cache();
  if (!tc) return nullptr;
  LockGuard m(tc->mutex);
  // Newest first: the block most likely still in the CPU's caches.
  for (unsigned i = tc->large_count; i-- > 0;) {
    const uint32_t n = tc->large[i].npages;
    if (n >= npages && n - npages <= npages / 8) {
      bump_epoch(tc, false);
      return large_remove(tc, i).p;
    }
  }
  return nullptr;
}

bool thread_large_put(void* p, uint32_t npages) {
  if (npages > kLargeCacheMaxPages) return false;
  ThreadCache* tc = my_cache();
  if (!tc) return false;
  {
    LockGuard m(tc->mutex);
    for (unsigned i = 0; i < tc->large_count; ++i)
      if (tc->large[i].p == p) fatal_pointer("free(): double free of", p, "the block is already free");
    // Make room: the oldest blocks go back to the heap.
    while (tc->large_count == kLargeSlots || (tc->large_count && tc->large_pages + npages > kLargeCacheCapPages)) {
      const LargeSlot s = large_remove(tc, 0);
      large_release(s.p, s.npages);
    }
    tc->large[tc->large_count++] = LargeSlot{p, npages};
    tc->large_pages += npages;
    bump_epoch(tc, false);
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
