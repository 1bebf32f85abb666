// Per-thread caches of small objects: the malloc/free fast path.
//
// The fast path takes no lock, makes no atomic read-modify-write and has no
// "initialised?" test: a thread's cache pointer starts at a shared empty
// cache whose bins are empty and full at once (max 0), so both malloc and
// free fall into the slow path, which sets things up. (No fast path writes
// a bin it cannot take from or put into: free tests `room` before it
// subtracts, so threads sharing that cache never write it.)
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
#include <cstddef>
#include <cstdint>

#include "common/config.h"
#include "common/lock.h"
#include "common/log.h"
#include "front/free_list.h"
#include "front/size_classes.h"

namespace ebb {

// One size class of a thread cache: a list of free objects linked through
// their first word (encoded, see front/free_list.h), and the constants of
// the object-start check free() makes, kept here on the same cache line.
// `room`: how many more objects the list takes (its capacity, bin_max() in
// thread_cache.cpp, minus its length), so free()'s fast path tests one
// field; 0 in the shared empty cache, and in every cache in the hardened
// mode, whose objects never stay in a thread cache.
struct Bin {
  void* head = nullptr;
  uint64_t chk_mul = 0;
  uint64_t chk_lim = 0;
  uint32_t chk_mask = 0;
  uint32_t room = 0;
};
static_assert(sizeof(Bin) == kBinBytes, "a bin is half a cache line");

// Large blocks (above the small classes, up to kLargeCacheMaxPages) that a
// thread freed, kept for its next large malloc of about the same size: a
// service that allocates and frees the same buffers does not take the heap
// lock, or split and merge buddy blocks, every time.
constexpr uint32_t kLargeCacheMaxPages = 1024;  // 4 MiB blocks at most
constexpr uint32_t kLargeCacheCapPages = 1024;  // 4 MiB per thread at most
constexpr unsigned kLargeSlots = 8;

struct LargeSlot {
  void* p;
  uint32_t npages;
};

// free() of a pointer in the heap that free_small's object-start check
// rejected, `b` the bin of its page's class: a large block (class 0: its
// bin's limit is 0, so every pointer fails the check, and no other bin's is)
// goes to large_free; in a slab page it aborts (unaligned, inside an object,
// past the last object).
EBB_NOINLINE void free_not_small_start(void* p, const Bin* b, Fn fn);

// What a thread frees of a class it has not allocated since its cache was
// set up (the bin is dormant: capacity 0, so both fast paths leave it to
// the slow path): other threads' objects, passed on in batches to the
// transfer cache, where the threads that allocate the class refill from,
// instead of being kept for this thread's own next malloc. A consumer thread
// then holds less than one batch a class, not a grown bin; and a thread that
// frees an object it was handed, then allocates that class, does not take
// the object back. That object's neighbours on its cache line are the
// allocating thread's, which may be writing them (passive false sharing:
// Hoard's cache-scratch; a thread's first objects come from a refill).
struct PassList {
  void* head;      // linked and keyed like a bin's list
  uint32_t count;  // written with relaxed atomic stores (cache_bytes reads it racily)
  uint32_t max;    // a batch: how many are passed on at once (slow start, 0: not started)
};

static_assert(sizeof(PassList) * 2 == kBinBytes, "free's fast path finds a pass list at half its bin's offset");

struct alignas(64) ThreadCache {
  constexpr ThreadCache() {
    for (unsigned c = 1; c <= kNumClasses; ++c) {
      bins[c].chk_mul = kObjChecks.c[c].mul;
      bins[c].chk_lim = kObjChecks.c[c].lim;
      bins[c].chk_mask = kObjChecks.c[c].mask;
    }
  }
  std::atomic<uint32_t> busy{0};
  std::atomic<uint32_t> drain_req{0};
  Bin bins[kNumClasses + 1];
  // ---- slow-path state below ----
  RawMutex mutex;                     // owner's slow path, or a drain (not counted: see common/lock.h)
  LargeSlot large[kLargeSlots] = {};  // oldest first (mutex)
  uint32_t large_count = 0;
  uint32_t large_pages = 0;
  uint32_t max[kNumClasses + 1] = {};  // each bin's capacity (slow start; 0: dormant, see PassList; mutex)
  uint64_t grown_bytes = 0;           // capacity above the classes' start, in bytes (mutex)
  uint64_t grown_mask = 0;            // bit c: max[c] is above class c's start (mutex)
  uint32_t steal_next = 1;            // the next class grow_bin shrinks for another (mutex)
  PassList pass[kNumClasses + 1] = {};  // dormant bins' frees (owner under the busy handshake, or mutex)
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

// `size` is the request (its class is computed again: the fast path keeps
// one register fewer). Sets errno to ENOMEM when it returns nullptr.
void* malloc_small_slow(size_t size);
// `size`: what a sized free says the object's size is, or kNoSize. (The
// class is looked up again: the fast path keeps one register fewer.)
constexpr size_t kNoSize = ~size_t{0};
void free_small_slow(void* p, Fn fn, size_t size);

// The owner's side of the handshake above, for every operation that touches
// the cache without its mutex: publishes `busy`, then reads drain_req (before
// the cache: a drain that completes in between is then seen in full, its
// flush ordered before drain_req returns to 0). False: a drain or a hold is
// requested, and the caller leaves and takes the slow path, which waits on
// the mutex. Every enter is followed by a leave.
EBB_INLINE bool cache_enter(ThreadCache* tc) {
  tc->busy.store(1, std::memory_order_relaxed);
  // The acquire load of drain_req as one compare with memory (GCC loads an
  // atomic into a register and tests it: an instruction more on every
  // malloc and free). x86 loads are acquire; "memory" keeps the compiler
  // from moving the cache's accesses above it (and the store above below).
  asm goto("cmpl $0, %0\n\tjne %l[requested]" : : "m"(tc->drain_req) : "cc", "memory" : requested);
  return true;
requested:
  return false;
}
// room - 1, false if it was 0 (a full list, left as it is: room is never
// written with a value that is not the list's). A compare and a subtract
// with memory: GCC loads, tests, subtracts and stores otherwise.
EBB_INLINE bool take_room(uint32_t& room) {
  asm goto("cmpl $0, %0\n\tje %l[full]" : : "m"(room) : "cc" : full);
  asm("subl $1, %0" : "+m"(room) : : "cc");
  return true;
full:
  return false;
}
EBB_INLINE void cache_leave(ThreadCache* tc) { tc->busy.store(0, std::memory_order_release); }

EBB_INLINE void* malloc_small(size_t size) {
  const size_t off = size_class_bin_offset(size);
  ThreadCache* tc = t_cache;
  if (EBB_LIKELY(cache_enter(tc))) {
    Bin* b = reinterpret_cast<Bin*>(reinterpret_cast<char*>(tc->bins) + off);
    void* p = b->head;
    // An empty list (nullptr) and a link a stray write redirected outside
    // the heap both fail this; the slow path tells them apart.
    if (EBB_LIKELY(in_heap(p))) {
      void* next = link_load(p);
      b->head = next;
      // The next object's line, for ownership, while the program works on
      // this one: its link is what the next malloc of the class waits for
      // (a miss when another thread freed it, or it has been free a while).
      // A nop for nullptr or a corrupt link (prefetches do not fault).
      prefetch_for_write(next);
      key_word(p) = 0;  // live objects never carry the free key
      b->room++;
      cache_leave(tc);
      return p;
    }
  }
  cache_leave(tc);
  return malloc_small_slow(size);
}

// `bin_off` is the bin offset (class * kBinBytes) of p's page's class
// (page_bin_offset): p is in a slab page of that class, or in a page of none
// (0: class 0's bin, whose object-start check every pointer fails).
template <Fn kFn = Fn::kFree>
EBB_INLINE void free_small(void* p, size_t bin_off, size_t size = kNoSize) {
  ThreadCache* tc = t_cache;
  Bin* b = reinterpret_cast<Bin*>(reinterpret_cast<char*>(tc->bins) + bin_off);
  asm("" : "+r"(b));  // one bin address, not recomputed for each field (GCC 12 does)
  // Interior, unaligned and past-the-last-object pointers; the constants
  // never change, so they are read before `busy`.
  if (EBB_UNLIKELY(!object_start(reinterpret_cast<uintptr_t>(p), b->chk_mask, b->chk_mul, b->chk_lim)))
    return free_not_small_start(p, b, kFn);
  if (EBB_LIKELY(cache_enter(tc))) {
    // Word 1 holding the free key: probably a double free (the slow path
    // decides). This also covers free(p); free(p) at the head.
    const uint64_t key = g_fast.free_key;
    if (EBB_LIKELY(key_word(p) != key)) {
      if (EBB_LIKELY(take_room(b->room))) {
        link_store(p, b->head);
        key_word(p) = key;
        b->head = p;
        cache_leave(tc);
        return;
      }
      // A dormant bin (see PassList): its pass list takes the object while
      // it has room (its max is 0 in the shared empty cache, in the hardened
      // mode and once the bin is awake: then the slow path). The list is
      // found from the bin's address (b - tc is bins' offset + class *
      // kBinBytes; its half, the list's offset less half of bins'), not from
      // bin_off: keeping bin_off in a register for this cold branch cost the
      // fast path an instruction.
      static_assert(offsetof(ThreadCache, bins) % 2 == 0 && offsetof(ThreadCache, pass) > offsetof(ThreadCache, bins) / 2);
      const size_t half = static_cast<size_t>(reinterpret_cast<char*>(b) - reinterpret_cast<char*>(tc)) / 2;
      PassList* l = reinterpret_cast<PassList*>(reinterpret_cast<char*>(tc) + half +
                                                (offsetof(ThreadCache, pass) - offsetof(ThreadCache, bins) / 2));
      const uint32_t n = l->count + 1;
      if (n < l->max) {
        link_store(p, l->head);
        key_word(p) = key;
        l->head = p;
        __atomic_store_n(&l->count, n, __ATOMIC_RELAXED);
        cache_leave(tc);
        return;
      }
    }
  }
  cache_leave(tc);
  free_small_slow(p, kFn, size);
}

// A small object the program still uses (realloc, malloc_usable_size): an
// object start, and not free (aborts otherwise).
void check_small_live(const void* p, unsigned cls, Fn fn);

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
// For the resident floor (front/floor.cpp), which counts objects in caches
// as free: calls f(readable, ctx) with every thread's cache held still, as a
// double-free search holds them (the registry lock, every cache's mutex,
// and the other threads stopped at their next fast-path call: drain_req,
// one membarrier, waiting for `busy` to drop). `readable` is false when
// other threads' lists cannot be read (no membarrier on this kernel): only
// the caller's own cache can then be visited. No allocator lock may be held.
void with_thread_caches_held(void (*f)(bool readable, void* ctx), void* ctx);
// Inside with_thread_caches_held only: calls visit(obj, vctx) for every
// object of class cls in the caller's cache and, if `readable`, in every
// other thread's. A link that leads out of the class aborts (a corrupt list).
void thread_caches_visit(unsigned cls, bool readable, void (*visit)(void* obj, void* ctx), void* vctx);
// Bytes sitting in thread caches (racy; for statistics).
uint64_t thread_cache_bytes(uint64_t* ncaches);
void thread_cache_global_init();
void thread_cache_prefork();
void thread_cache_postfork_parent();
void thread_cache_postfork_child();

}  // namespace ebb
