// The page heap: the heap region plus its buddy allocator, behind one lock,
// growing the region on demand. Hands out runs of whole pages (slabs, large
// objects) and takes them back.
#pragma once
#include <cstdint>

#include "buddy/buddy.h"
#include "common/lock.h"
#include "heap/heap_region.h"

namespace ebb {

struct PageRun {
  uint32_t idx;
  uint32_t npages;
  uint32_t reported;  // pages of the run that came from reported (zero) memory
};

class PageHeap {
 public:
  bool init(size_t reserve_bytes, unsigned report_order, uint64_t mark_pages,
            Buddy::NotifyFn notify, bool verbose);
  Mutex& lock() { return lock_; }
  HeapRegion& region() { return region_; }
  Buddy& buddy() { return buddy_; }

  // Heap lock held. Takes a block of order max(ceil(log2(npages)), align_order),
  // keeps the first `npages` pages (reported bits cleared) and frees the tail.
  bool alloc_pages(uint32_t npages, unsigned align_order, PageRun* out);
  // Heap lock held. The pages are resident (warm) and their kinds reset here.
  void free_pages(uint32_t idx, uint32_t npages);

  uint64_t fallbacks() const { return fallbacks_; }
  uint64_t fallback_pages() const { return fallback_pages_; }

 private:
  bool grow_for(unsigned order, uint64_t now);
  Mutex lock_;
  HeapRegion region_;
  uint32_t frontier_ = 0;  // mirror of region_.frontier() read by the buddy
  Buddy buddy_;
  uint64_t fallbacks_ = 0;       // allocations that used reported memory
  uint64_t fallback_pages_ = 0;  // pages of reported memory handed out
  bool verbose_ = false;
};

}  // namespace ebb
