// The allocator's process-wide state, constant-initialised so that it is
// usable before any constructor runs.
#pragma once
#include <atomic>
#include <cstdint>

#include "buddy/page_heap.h"
#include "common/options.h"
#include "front/central.h"
#include "front/slab_pool.h"
#include "report/reporter.h"

namespace ebb {

// What the malloc/free fast paths read, on one cache line of its own.
struct alignas(64) FastGlobals {
  uintptr_t base = 0;       // heap start (0 until initialised)
  // Heap size so far: (p - base) < extent <=> p in the heap. It only grows
  // (HeapRegion::grow, a release store); a pointer the heap handed out is
  // below the extent any thread that got the pointer sees. The fast path
  // reads it plainly (an atomic load costs free() an instruction: GCC does
  // not fold it into the compare); a stale value can only be smaller, and
  // free_outside_heap() looks again with acquire.
  std::atomic<size_t> extent{0};
  // One byte per heap page: a slab page's class times kPageClassScale, 0
  // for every other page (page_bin_offset, page_class_at below).
  uint8_t* page_class = nullptr;
  size_t heap_extent() const { return *reinterpret_cast<const size_t*>(&extent); }
  // Per-process secrets (front/harden.h), random at start-up:
  uint64_t free_key = 0;     // word 1 of every small object in a thread cache or transfer batch
  uint64_t link_secret = 0;  // free-list links are stored as next ^ slot ^ link_secret
  // malloc's class lookup (size_classes.h's BinOffsets): beside the fields
  // above, malloc forms one address for both (a table of its own in
  // read-only data costs it an instruction more).
  BinOffsets bin_off16;
};

struct Globals {
  Options opts;
  PageHeap heap;
  Reporter reporter;
  CentralBin bins[kNumClasses + 1];
  SlabPool slab_pool;
  std::atomic<uint32_t> init_state{0};  // 0 none, 1 running, 2 done, 3 failed
  bool zero_reported = true;  // reported memory reads as zero (MADV_DONTNEED)
};

extern constinit FastGlobals g_fast;
extern constinit Globals g;

// size_class(size) * kBinBytes: the offset of the class's bin in a thread
// cache's bin array (malloc's fast path then needs no shift).
EBB_INLINE size_t size_class_bin_offset(size_t size) { return g_fast.bin_off16.off[(size + 15) >> 4]; }

// The page-class map holds a class times 4: the byte times 8 is then the
// class's bin offset (class * kBinBytes), which free's fast path forms in
// the address itself (an index scaled by 8: no shift).
constexpr unsigned kPageClassScale = kBinBytes / 8;
static_assert(kNumClasses * kPageClassScale <= 255, "a page's class fits its byte");
EBB_INLINE uint8_t page_class_byte(unsigned cls) { return static_cast<uint8_t>(cls * kPageClassScale); }
// `off`: a heap offset (pointer - g_fast.base), below the heap extent.
EBB_INLINE unsigned page_class_at(uintptr_t off) { return g_fast.page_class[off >> kPageShift] / kPageClassScale; }
// size_class_bin_offset for the block at heap offset `off` (0 for a page
// that is not a slab's: class 0's bin, which no pointer passes).
EBB_INLINE size_t page_bin_offset(uintptr_t off) { return size_t{g_fast.page_class[off >> kPageShift]} * 8; }

// Initialises the allocator on first use; safe from any thread, any time.
// Returns false if the heap could not be reserved.
bool ensure_init();
inline bool initialized() { return g.init_state.load(std::memory_order_acquire) == 2; }

// Debug builds with EBBMALLOC_CHECK: walk the heap (heap lock held).
void debug_check_heap_locked();

}  // namespace ebb
