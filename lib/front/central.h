// Slabs and the central free lists: one bin per size class, each a lock and
// a list of partly used slabs. Slabs are buddy blocks; which objects of a
// slab are free is a bitmap kept out of band in the slab header, so a page
// of a slab still in use whose objects are all free can be given back to the
// OS without ever being touched. Thread caches refill from and flush to the
// bins in batches; a slab whose last object comes back returns to the page
// heap at once.
//
// Free page reporting inside slabs (the bins' half of a reporter pass):
//  - every page of a slab has a stamp (its descriptor's `stamp`): when an
//    object on it was last freed, i.e. when it became wholly free if it is;
//  - a free marks the slab "dirty" (on the bin's dirty list); the reporter
//    looks only at dirty slabs, takes the objects of wholly free pages that
//    have been free for cold_ms out of the bitmap (isolates them), madvises
//    the pages with no lock held, and puts the objects back with the pages
//    marked reported (`rep_pages`, and the descriptors' `reported` bits);
//  - each bin's partial list is, like a buddy free list, one run of warm
//    slabs followed by one run of slabs with reported pages (`boundary`
//    points at the first), and a slab with reported pages prefers objects
//    on its resident pages: reported memory is touched last.
#pragma once
#include <cstdint>

#include "common/lock.h"
#include "common/log.h"
#include "front/size_classes.h"

namespace ebb {

struct Slab {
  char* start = nullptr;
  uint32_t cls = 0;
  uint32_t nfree = 0;  // free objects (bits set)
  uint32_t page = 0;   // first page index
  uint32_t hint = 0;   // first bitmap word that may have a free bit
  Slab* prev = nullptr;  // partial list
  Slab* next = nullptr;
  Slab* scan_prev = nullptr;  // the bin's dirty or scan list
  Slab* scan_next = nullptr;
  uint64_t rep_pages = 0;  // bit k: page k is given back (not resident)
  uint64_t iso_pages = 0;  // bit k: page k's objects are isolated by the reporter
  uint64_t zero_pages = 0; // hardened mode: bit k: the object bytes of page k are known to be zero
  bool on_partial = false;
  uint8_t scan_list = 0;  // kNoList, kDirtyList or kScanList
  // 1 = free; one bit per object of the class (SlabPool::words_for words,
  // front/slab_pool.h): the header is sized by its class.
  uint64_t bits[];
};

// A batch of free objects handed from one thread cache to another without
// going through the slabs (tcmalloc's transfer cache): a producer thread's
// refill takes the batch a consumer thread's flush left, both O(1).
struct TransferBatch {
  void* head;      // linked through the objects' first word
  uint32_t count;
  uint64_t stamp;  // when it was flushed (the reporter drains it once cold)
};
// The transfer cache of a class holds at most kTransferSlots batches and
// kTransferBytes (gperftools bounds its transfer caches by 1 MiB a class,
// 64 slots). Eight slots held 512 objects of 512 B: a thread that allocated
// and freed 1000 at a time sent the rest through the slabs' bitmaps, and
// emptied and re-made six slabs a round (173 instructions a malloc/free
// pair, 99 with 32 slots; mimalloc 113: bench/fastpath/batch.c).
constexpr unsigned kTransferSlots = 32;
constexpr uint64_t kTransferBytes = uint64_t{1} << 20;

struct Quarantine;

struct alignas(64) CentralBin {
  Mutex lock;
  Quarantine* quarantine = nullptr;  // hardened mode: freed objects waiting (lazily mapped)
  uint64_t rng = 0;                  // hardened mode: random slot choice
  TransferBatch transfer[kTransferSlots] = {};  // a stack, newest last
  uint32_t ntransfer = 0;
  uint64_t transfer_objects = 0;
  uint32_t refill_fit = 0;       // the last thread-cache refill's most (relaxed; central_refill_fit)
  Slab* partial = nullptr;       // [slabs without reported pages][with]
  Slab* partial_tail = nullptr;
  Slab* boundary = nullptr;      // first slab with reported object pages
  Slab* dirty = nullptr;         // freed into since the reporter last looked
  Slab* scan = nullptr;          // taken from `dirty` by the running pass
  uint64_t slabs = 0;
  uint64_t free_objects = 0;
  uint64_t reported_pages = 0;   // pages of this bin's slabs given back
  uint64_t refaulted_pages = 0;  // reported pages handed out again
};

// Takes up to `want` objects of class `cls`, linked through their first word
// (encoded, front/free_list.h) and carrying the free key; returns how many
// (0 only when memory is exhausted). A transfer batch of up to `fit` objects
// (at least `want`: an empty thread-cache bin takes its whole capacity) is
// taken whole instead, however it compares with `want`.
unsigned central_alloc_batch(unsigned cls, unsigned want, void** head, unsigned fit = 0);
// Returns the first `n` objects of a list linked through their first word
// (encoded). Aborts on a pointer that is not a live object of this class.
// `freed_at` (0: now) is when the objects were freed, for the pages' stamps:
// a drained idle cache passes the time it went idle. `rest` (if given) gets
// the link of the n-th object, the list after the batch (the walk that frees
// them finds it: the caller need not walk the list to cut it first).
void central_free_batch(unsigned cls, void* head, unsigned n, uint64_t freed_at = 0, void** rest = nullptr);
// How many objects the last thread-cache refill of class cls took whole at
// most (0: none yet; a racy look): the size for batches offered to the
// transfer cache, which a refill would otherwise cut with a walk under the
// bin's lock.
unsigned central_refill_fit(unsigned cls);
// Whether the transfer cache of class cls has no room (a racy look: a hint).
bool central_transfer_full(unsigned cls);
// A thread cache's overflow of a busy thread, or the cache of a thread that
// exits: kept whole for the next refill if there is room (checked against
// the slabs only when it goes there).
void central_transfer_batch(unsigned cls, void* head, unsigned n);
// Single-object variants for threads without a cache.
void* central_alloc_one(unsigned cls);
void central_free_one(unsigned cls, void* p);

// Whether the small object p of class cls is free in a transfer batch or in
// its slab: a description of where, or nullptr (takes the bin's lock).
const char* central_find_free(unsigned cls, const void* p);

// ---- the hardened mode (front/harden.h) ----
// One object of class `cls` from a random free slot of the first partial
// slab (objects on resident pages first), its memory verified to hold zeros
// (a freed object is zeroed; a write after free aborts). nullptr when memory
// is exhausted.
void* central_alloc_hardened(unsigned cls);
// Frees p into the bin's quarantine after checking it is an allocated object
// (not free in its slab or quarantined: double free), calling `check` (the
// canary and size checks, which abort) and zeroing it. The oldest object
// leaves the quarantine for its slab when the quarantine is full (checked
// to be still zero). `check` runs under the bin lock, before any change.
void central_free_hardened(unsigned cls, void* p, Fn fn, void (*check)(void* p, unsigned cls, Fn fn, size_t size),
                           size_t size);
// The object is live (not free or quarantined); aborts otherwise.
void central_check_live_hardened(unsigned cls, const void* p, Fn fn);

// The reporter's slab hook (see Reporter::SlabHook).
uint64_t central_report_cold(uint64_t cold_ms, uint64_t batch_cold_ms, uint64_t page_cold_ms, uint64_t* released);

struct CentralTotals {
  uint64_t slab_bytes;      // bytes of slabs in use
  uint64_t free_bytes;      // free objects in them
  uint64_t slabs;
  uint64_t reported_bytes;  // slab pages given back
  uint64_t refaulted_bytes; // reported slab pages handed out again
};
// Statistics (racy reads: a snapshot good enough for reporting).
CentralTotals central_totals();

// The resident floor (front/floor.cpp): calls visit(obj, ctx) for every
// object in the hardened mode's quarantine of class `cls` (free objects the
// slab's bitmap still counts as taken). The bin's lock held.
void central_visit_quarantine(unsigned cls, void (*visit)(void* obj, void* ctx), void* ctx);

// Walks every bin: partial lists and boundaries, counts, bitmaps against
// reported and isolated pages. Takes each bin's lock in turn; returns the
// number of problems, printing the first ones if `print`.
unsigned central_check(bool print);

}  // namespace ebb
