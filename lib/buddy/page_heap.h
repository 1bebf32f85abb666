// The page heap: the heap region plus its buddy allocator, behind one lock,
// growing the region on demand. Hands out runs of whole pages (slabs, large
// objects) and takes them back.
#pragma once
#include <cstdint>

#include "buddy/buddy.h"
#include "common/lock.h"
#include "heap/heap_region.h"

namespace ebb {

// How close the process is to its memory limit, as the page heap sees it
// between the reporter's samples (report/pressure.h sets it up).
struct Headroom {
  std::atomic<uint64_t> mark{0};      // bytes of usage that are pressure; 0: no limit
  std::atomic<uint64_t> target{0};    // what a give-back at the mark brings the usage down to
  std::atomic<uint64_t> estimate{0};  // usage at the last sample + what was faulted in since
  // What was counted since the last sample: handed out, maybe not touched
  // yet. A sample adds it to the usage it read (a huge block counted, then
  // sampled before the program wrote it, was lost, and the next request
  // went past the limit: pressure_test HugeMappingsGiveBackFirstToo).
  std::atomic<uint64_t> ahead{0};
  uint64_t (*sample)() = nullptr;     // reads the usage now (takes no allocator lock)
  void (*urge)() = nullptr;           // asks the reporter for a pressure pass (heap lock may be held)
  // Looks the limit up (report/pressure.h), called once, heap lock held,
  // when the heap first reaches kDiscoverBytes.
  void (*discover)() = nullptr;
  static constexpr uint64_t kDiscoverBytes = uint64_t{16} << 20;
};

struct PageRun {
  uint32_t idx;
  uint32_t npages;
  uint32_t reported;  // pages of the run that came from reported (zero) memory
};

class PageHeap {
 public:
  // `extent` as in HeapRegion::init.
  bool init(size_t max_bytes, std::atomic<size_t>* extent, unsigned report_order, uint64_t mark_pages,
            Buddy::NotifyFn notify, bool verbose);
  Mutex& lock() { return lock_; }
  HeapRegion& region() { return region_; }
  Buddy& buddy() { return buddy_; }

  // Heap lock held. Takes a block of order max(ceil(log2(npages)), align_order),
  // keeps the first `npages` pages and frees the tail. The kept pages'
  // reported bits are cleared (the caller will touch them, counted as a
  // fallback) unless `keep_reported`: then the caller owns the bits and
  // accounts for the pages when it touches them (slabs do, page by page).
  // `group`: whose pageblocks it comes from first (Buddy's grouping).
  bool alloc_pages(uint32_t npages, unsigned align_order, PageRun* out,
                   bool keep_reported = false, Buddy::Group group = Buddy::kLargeGroup);
  // Heap lock held. Grows the large block of `npages` at idx by `more` pages
  // in place, if the pages after it are free (or past the frontier, which
  // then advances): false, and nothing changed, otherwise. The new pages are
  // accounted as alloc_pages's are.
  bool extend(uint32_t idx, uint32_t npages, uint32_t more);
  // Heap lock held. The pages' kinds are reset here. Their reported bits are
  // counted if `count_reported` (a slab whose pages were partly given back);
  // otherwise all the pages are resident (warm) and their bits clear.
  // `freed_at` (0: now) is when the memory became free.
  void free_pages(uint32_t idx, uint32_t npages, bool count_reported = false, uint64_t freed_at = 0);

  // Heap lock held: pages handed out now (slabs, large blocks), and when
  // pages were last handed out (the return curve's demand signals).
  uint64_t in_use_pages() const {
    const BuddyCounts& c = buddy_.counts();
    return region_.frontier() - c.free_pages - c.isolated_pages;
  }
  uint64_t drawn_pages() const { return drawn_pages_; }  // ever handed out
  // The most pages in use at any moment since the last call (a pass
  // samples once; churn between passes peaks in between), and in *peak_ms
  // the last moment the heap had that many in use (`now_ms` if it has now):
  // a mass free's claim on its memory ages from the free, not from the
  // pass that first sees it.
  void lower_in_use_peak(uint64_t pages) { in_use_peak_ = in_use_peak_ > pages ? in_use_peak_ - pages : 0; }
  uint64_t take_in_use_peak(uint64_t now_ms, uint64_t* peak_ms) {
    const uint64_t cur = in_use_pages();
    uint64_t peak = cur;
    *peak_ms = now_ms;
    if (in_use_peak_ > cur) {
      peak = in_use_peak_;
      *peak_ms = in_use_peak_ms_ < now_ms ? in_use_peak_ms_ : now_ms;
    }
    in_use_peak_ = cur;
    in_use_peak_ms_ = now_ms;
    in_use_hint_.store(cur, std::memory_order_relaxed);
    return peak;
  }
  // Without the lock: pages in use as of the last growth or reporter pass
  // (thread caches size their budget by it).
  uint64_t in_use_hint() const { return in_use_hint_.load(std::memory_order_relaxed); }

  // MADV_FREE instead of MADV_DONTNEED (EBBMALLOC_MADVISE=free).
  void set_lazy(bool lazy) { lazy_ = lazy; }
  // Gives back the resident pages of the n isolated blocks at ids (their
  // reported bits say which; no lock needed: nobody else touches an
  // isolated block), their runs in as few system calls as the kernel allows
  // (os::advise_free_ranges: a pass's batch of fragmented blocks in one or
  // two), adding the bytes to *released and the calls to *calls, and setting
  // the reported bits of the pages given back (atomic: the words are shared
  // with other blocks' pages). At most `max_pages` (the first resident
  // ones). ok[i]: whether all of block i's went back; false if any failed
  // (their bits stay clear).
  bool advise_blocks(const uint32_t* ids, unsigned n, bool* ok, uint64_t* released, uint64_t* calls,
                     uint64_t max_pages = ~uint64_t{0});
  // Heap lock held: takes warm blocks of reportable order off their lists
  // (isolated; the highest order first if `largest`, else the coldest
  // stamped at or before `now`) until their resident pages cover `bytes`,
  // at most `max` and os::kAdviseBatch of them. Their ids and free times go
  // to ids[] and freed[]; returns how many.
  unsigned isolate_for(uint64_t bytes, unsigned max, bool largest, uint64_t now, uint32_t* ids, uint64_t* freed);
  uint64_t given_back_bytes() const { return given_back_bytes_; }
  uint64_t give_back_calls() const { return give_back_calls_; }

  Headroom& headroom() { return headroom_; }
  // Heap lock held. `pages` of reported or fresh memory are about to be
  // faulted in: if that puts the usage at or over the pressure mark, warm
  // free memory goes back first, as much as the usage would exceed it by.
  void check_headroom(uint64_t pages, uint64_t now);
  // Without the heap lock: memory outside the heap (huge mappings) about to
  // be faulted in (takes the heap lock when there is a limit).
  void headroom_map(uint64_t bytes);
  // Without the heap lock: pages of slabs given back earlier are handed out
  // again (the slab faults them in): counted, not checked (the next slow
  // path's relief is, front/pressure_relief.h).
  void headroom_refault(uint64_t bytes) {
    if (!headroom_.mark.load(std::memory_order_relaxed)) return;
    headroom_.estimate.fetch_add(bytes, std::memory_order_relaxed);
    headroom_.ahead.fetch_add(bytes, std::memory_order_relaxed);
  }
  // Without the heap lock: memory stopped being resident (unmapped, or given
  // back by the reporter or a relief); never below zero.
  void headroom_release(uint64_t bytes) {
    if (!headroom_.mark.load(std::memory_order_relaxed)) return;
    uint64_t e = headroom_.estimate.load(std::memory_order_relaxed);
    while (!headroom_.estimate.compare_exchange_weak(e, e > bytes ? e - bytes : 0, std::memory_order_relaxed)) {
    }
  }
  // Without any lock: the estimate is at or past the mark (a relaxed load
  // when there is no limit).
  bool pressure_urgent() const {
    const uint64_t m = headroom_.mark.load(std::memory_order_relaxed);
    return m && headroom_.estimate.load(std::memory_order_relaxed) >= m;
  }
  uint64_t pressure_give_backs() const { return pressure_give_backs_; }
  uint64_t pressure_given_back_bytes() const { return pressure_given_back_; }

  uint64_t fallbacks() const { return fallbacks_; }
  uint64_t fallback_pages() const { return fallback_pages_; }

 private:
  bool grow_for(unsigned order, uint64_t now);
  // The frontier to want_end, or at least need_end if the heap's address
  // space ends before want_end.
  bool grow_to(uint64_t need_end, uint64_t want_end, uint64_t now);
  // Pages [idx, idx+npages) were just taken: their reported pages are
  // cleared and counted (unless keep_reported), the heap's limit and peak
  // see them. Returns how many were reported.
  uint32_t settle(uint32_t idx, uint32_t npages, bool keep_reported, uint64_t now);
  // Takes a block or run for npages (see alloc_pages); false if the heap
  // cannot grow.
  bool take(uint32_t npages, unsigned order, unsigned align_order, uint64_t now, Buddy::Group group, uint32_t* idx,
            uint32_t* size);
  // A large request is about to fault in `pages` pages of reported or fresh
  // memory while warm free memory sits in blocks it could not use: give as
  // much of that back first (coldest first, madvised with the heap lock
  // held), so the process does not grow. Returns the bytes given back.
  // `cushion` pages of warm memory stay warm; at most `max_blocks` blocks go,
  // coldest first, or, `largest`, the highest orders first (under pressure:
  // the most memory per madvise call).
  uint64_t give_back_warm(uint64_t pages, uint64_t cushion, unsigned max_blocks, uint64_t now, bool largest = false);
  Mutex lock_;
  HeapRegion region_;
  uint32_t frontier_ = 0;  // mirror of region_.frontier() read by the buddy
  Buddy buddy_;
  uint64_t drawn_pages_ = 0;
  bool lazy_ = false;
  uint64_t given_back_bytes_ = 0;
  uint64_t give_back_calls_ = 0;
  uint64_t in_use_peak_ = 0;
  uint64_t in_use_peak_ms_ = 0;  // when the heap last had in_use_peak_ pages in use
  Headroom headroom_;
  uint64_t headroom_sampled_ms_ = 0;  // when check_headroom last read the usage itself
  bool discover_called_ = false;
  uint64_t pressure_give_backs_ = 0;
  uint64_t pressure_given_back_ = 0;
  std::atomic<uint64_t> in_use_hint_{0};
  uint64_t fallbacks_ = 0;       // allocations that used reported memory
  uint64_t fallback_pages_ = 0;  // pages of reported memory handed out
  bool verbose_ = false;
  Buddy::NotifyFn notify_ = nullptr;
};

}  // namespace ebb
