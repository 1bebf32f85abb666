// Per-thread caches of small objects: the malloc/free fast path.
//
// The fast path takes no lock, makes no atomic read-modify-write and has no
// "initialised?" test: a thread's cache pointer starts at a shared empty
// cache whose bins are empty and full at once (max 0), so both malloc and
// free fall into the slow path, which sets things up.
//
// Memory in the cache of a thread that goes idle must still become
// reportable. The reporter drains such caches from its own thread with an
// asymmetric Dekker handshake: the owner's fast path publishes `busy` and
// reads `drain_req` with compiler barriers only; the reporter sets
// `drain_req`, issues membarrier() (a full barrier on every running thread),
// and reads `busy`. Either the reporter sees the owner busy and retries
// later, or the owner sees the request and goes to the slow path, which
// waits on the cache mutex the reporter holds while draining.
#pragma once
#include <atomic>
#include <cstdint>

#include "common/config.h"
#include "common/lock.h"
#include "front/size_classes.h"

namespace ebb {

struct Bin {
  void* head = nullptr;
  uint32_t count = 0;
  uint32_t max = 0;
};

// Large blocks (above the small classes, up to kLargeCacheMaxPages) that a
// thread freed, kept for its next large malloc of about the same size: a
// service that allocates and frees the same buffers does not take the heap
// lock, or split and merge buddy blocks, every time.
constexpr uint32_t kLargeCacheMaxPages = 256;   // 1 MiB blocks at most
constexpr uint32_t kLargeCacheCapPages = 1024;  // 4 MiB per thread at most
constexpr unsigned kLargeSlots = 8;

struct LargeSlot {
  void* p;
  uint32_t npages;
};

struct alignas(64) ThreadCache {
  std::atomic<uint32_t> busy{0};
  std::atomic<uint32_t> drain_req{0};
  Bin bins[kNumClasses + 1];
  // ---- slow-path state below ----
  RawMutex mutex;                     // owner's slow path, or a drain (not counted: see common/lock.h)
  LargeSlot large[kLargeSlots] = {};  // oldest first (mutex)
  uint32_t large_count = 0;
  uint32_t large_pages = 0;
  std::atomic<uint32_t> epoch{0};     // bumped by every slow-path operation
  std::atomic<uint64_t> last_ms{0};   // when the last slow-path operation ran
  uint32_t seen_epoch = 0;            // reporter's view (registry lock)
  uint64_t seen_ms = 0;
  uint64_t seen_bytes = 0;
  ThreadCache* reg_prev = nullptr;    // registry links (registry lock)
  ThreadCache* reg_next = nullptr;
};

enum class ThreadState : uint8_t { kNone = 0, kActive, kSetup, kExited };

extern constinit ThreadCache g_empty_cache;
extern constinit thread_local ThreadCache* t_cache __attribute__((tls_model("initial-exec")));

void* malloc_small_slow(unsigned cls);
void free_small_slow(void* p, unsigned cls);

EBB_INLINE void* malloc_small(size_t size) {
  const unsigned cls = size_class(size);
  ThreadCache* tc = t_cache;
  tc->busy.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  // drain_req is read before the bin: a drain that completes in between is
  // then seen in full (its flush is ordered before drain_req returns to 0).
  if (EBB_LIKELY(tc->drain_req.load(std::memory_order_acquire) == 0)) {
    Bin& b = tc->bins[cls];
    void* p = b.head;
    if (EBB_LIKELY(p != nullptr)) {
      b.head = *static_cast<void**>(p);
      b.count--;
      tc->busy.store(0, std::memory_order_release);
      return p;
    }
  }
  tc->busy.store(0, std::memory_order_release);
  return malloc_small_slow(cls);
}

// `cls` comes from the page-class map.
EBB_INLINE void free_small(void* p, unsigned cls) {
  ThreadCache* tc = t_cache;
  tc->busy.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (EBB_LIKELY(tc->drain_req.load(std::memory_order_acquire) == 0)) {
    Bin& b = tc->bins[cls];
    // b.head != p catches the most common double free (free(p); free(p)).
    if (EBB_LIKELY(b.count < b.max && b.head != p)) {
      *static_cast<void**>(p) = b.head;
      b.head = p;
      b.count++;
      tc->busy.store(0, std::memory_order_release);
      return;
    }
  }
  tc->busy.store(0, std::memory_order_release);
  free_small_slow(p, cls);
}

// The calling thread's cached large block of at least `npages` pages (and at
// most 1/8 more), or nullptr.
void* thread_large_take(uint32_t npages);
// Keeps a live large block of `npages` pages in the calling thread's cache;
// false if it does not fit (the caller frees it to the heap). Aborts if the
// block is in the cache already (double free).
bool thread_large_put(void* p, uint32_t npages);

// Flushes the calling thread's cache back to the central bins.
void thread_cache_flush_mine();
// Reporter hook (Reporter::WorthHook): with no reporter thread, is there at
// least the mark (EBBMALLOC_REPORT_MARK_KB) of free memory to give back, in
// the page heap, in slabs, or in the calling thread's cache?
bool worth_reporting();
// Reporter hook: drains idle caches (see Reporter::CacheHook).
uint64_t drain_idle_caches(uint64_t now, uint64_t cold_ms, bool force);
// Bytes sitting in thread caches (racy; for statistics).
uint64_t thread_cache_bytes(uint64_t* ncaches);
void thread_cache_global_init();
void thread_cache_prefork();
void thread_cache_postfork_parent();
void thread_cache_postfork_child();

}  // namespace ebb
