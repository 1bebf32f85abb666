// The buddy allocator's free lists, with free page reporting's boundaries.
//
// Lists per order (4 KiB << order; two below a pageblock, see the grouping
// below). Every list is one run of warm blocks
// (resident; newest at the head) followed by one run of reported blocks
// (fully given back to the OS), and `boundary` points at the first reported
// block. Blocks that are only partly reported (a reported block merged with
// a warm buddy) count as warm: reporting them again madvises only the pages
// that are still resident, which the per-page `reported` bits tell.
//
// Grouping (the kernel's pageblock migratetypes, after Mel Gorman's
// fragmentation avoidance): below a pageblock's order each order has two
// lists, one per group -- slabs, and large blocks -- and a free block is on
// the list of its pageblock's group. A pageblock gets the group of the
// request that first takes part of it while it is wholly free; requests
// take their own group's blocks first, then a whole free pageblock, and only
// then a block of the other group. Slabs (long-lived: one live object or one
// cached in a thread pins a slab) so gather in their own pageblocks and do
// not pin free large-block memory into fragments: a batch of buffers freed
// beside a few dozen slabs came back as 512 KiB pieces, and the next batch
// of 1-8 MiB blocks faulted in 70% of its memory afresh.
//
// This is the only code that touches free lists. It works on page indices
// and descriptors alone, never on the memory itself, so it is unit-tested
// without any heap behind it. Every call needs the heap lock.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/config.h"
#include "heap/page_desc.h"
#include "heap/reported_bits.h"

namespace ebb {

struct BuddyCounts {
  uint64_t nr_free[kNumOrders];
  uint64_t nr_reported[kNumOrders];
  uint64_t free_pages;      // pages in listed free blocks
  uint64_t reported_pages;  // of those, reported (not resident)
  uint64_t isolated_pages;  // free pages off-list while being reported
};

class Buddy {
 public:
  struct Block {
    uint32_t idx;
    unsigned order;
    uint32_t nrep;  // pages of the block that were reported (zero, not resident)
  };
  using NotifyFn = void (*)();
  // Who a request is for (see the grouping above).
  enum Group : uint8_t { kLargeGroup = 0, kSlabGroup = 1 };

  // `descs` covers every page index the heap may ever use; `frontier` is
  // read to avoid merging past the committed end. `notify` is called (heap
  // lock held) when warm free memory of order >= report_order passes the
  // mark: it must only flag a request.
  void init(PageDesc* descs, ReportedBits* bits, const uint32_t* frontier, unsigned report_order,
            uint64_t mark_pages, NotifyFn notify);
  // Warm first (any order) before reported, each time the group's own
  // blocks first, then whole pageblocks, then the other group's (see the
  // .cpp for the exact order); the other group's reported blocks only if
  // `steal_reported`. False if nothing fits.
  bool alloc(unsigned order, uint64_t now, Block* out, Group group = kLargeGroup, bool steal_reported = true);
  // A run of `npages` (at least a pageblock) made of adjacent free blocks,
  // starting at a free block of a pageblock's order or more (so aligned to
  // 2 MiB), without the power-of-two rounding of alloc(): a 20 MiB request
  // need not take a 32 MiB block, and free memory split across buddy
  // boundaries serves it. Of the first `max_starts` starts, the run with the
  // most warm pages, if it has at least `min_warm`. The run's blocks leave
  // their lists; what the last block has beyond the run is freed again.
  bool alloc_run(uint32_t npages, uint64_t min_warm, uint64_t now, unsigned max_starts, uint32_t* idx);
  // How many of the pages [a, a+n) are free from a on, in free blocks end
  // to end (listed ones: not an isolated block, not past the frontier).
  uint32_t free_pages_from(uint32_t a, uint32_t n) const;
  // Takes pages [a, a+n) off the free lists if all of them are free: the
  // blocks that hold them leave their lists, and their parts before a and
  // after a+n are freed again (with their reported bits and free times).
  // A large block grows in place this way (realloc).
  bool take_range(uint32_t a, uint32_t n);
  // Adds a free block (merging with free buddies). `nrep` is the number of
  // its pages whose `reported` bit is set.
  // `stamp`: when the block became free (normally now; earlier for pages
  // that sat in an idle cache); it is listed in stamp order.
  void free_block(uint32_t idx, unsigned order, uint32_t nrep, uint64_t stamp);
  // Frees an arbitrary page range, cut into aligned blocks. If `count_bits`
  // the per-page reported bits are counted; otherwise all pages are warm.
  void free_range(uint32_t idx, uint32_t npages, bool count_bits, uint64_t now);
  // New memory from the OS: never touched, so reported (zero, not resident).
  void add_fresh(uint32_t idx, uint32_t npages, uint64_t now);

  // Reporting: takes up to `max` of the oldest warm blocks of `order`
  // stamped at or before `cutoff` (free since then at least) off their list.
  // Returns how many. If it stopped at a newer block and `next_stamp` is
  // given, *next_stamp is lowered to that block's stamp.
  unsigned isolate_cold(unsigned order, uint64_t cutoff, uint32_t* out, unsigned max,
                        uint64_t* next_stamp = nullptr);
  // The return curve's budget: the stamp at or below which lie the coldest
  // `budget` warm pages of reportable order (the lists' cold ends merged by
  // stamp), looking only at blocks stamped at or before `newest` and at most
  // `max_blocks` of them. False if no block qualifies.
  bool cold_cutoff(uint64_t budget, uint64_t newest, unsigned max_blocks, uint64_t* cutoff) const;
  // Takes the coldest warm block of reportable order stamped at or before
  // `newest` off its list (isolated, as isolate_cold does); false if none.
  bool isolate_coldest(uint64_t newest, uint32_t* idx);
  // Takes the coldest warm block of the highest order that has one off its
  // list (isolated): under pressure the most memory per madvise call.
  bool isolate_largest(uint32_t* idx);
  // Warm free memory at or above this many pages calls `notify` (the
  // reporter raises it after a pass to what it kept plus the mark).
  void set_mark_pages(uint64_t pages) { mark_pages_ = pages ? pages : 1; }

  // Returns an isolated block, free since `now`: reported (every page now
  // given back) or with the pages its reported bits say (a madvise that
  // failed part way, a give-back of part of it); it goes to the warm run
  // while any page is resident.
  void putback(uint32_t idx, bool reported, uint64_t now);

  // Clears the reported bits of pages [idx, idx+n) (they are in use now).
  void clear_reported(uint32_t idx, uint32_t n) { bits_->clear(idx, n); }
  uint32_t count_reported(uint32_t idx, uint32_t n) const { return bits_->count(idx, n); }

  const BuddyCounts& counts() const { return c_; }
  uint64_t warm_reportable_pages() const { return warm_reportable_; }
  // Without the heap lock (a hint: the count may be changing).
  uint64_t warm_reportable_pages_racy() const { return __atomic_load_n(&warm_reportable_, __ATOMIC_RELAXED); }
  unsigned report_order() const { return report_order_; }
  void set_split_warm_first(bool v) { split_warm_first_ = v; }
  bool has_warm(unsigned o) const {
    return list_has_warm(o) || (o < kPageblockOrder && list_has_warm(kNumOrders + o));
  }

  // Walks every list and every page below the frontier; prints what is wrong
  // and returns the number of problems (0 = consistent). Slab and large pages
  // are accepted as in use.
  unsigned check(bool print) const;

 private:
  struct Area {
    uint32_t head = kNil, tail = kNil;
    uint32_t boundary = kNil;  // first fully reported block, kNil if none
  };
  // The lists: 0..kMaxOrder, an order's list (of the large group below a
  // pageblock's order, of whole pageblocks from it on); then kNumOrders + o,
  // order o < kPageblockOrder of the slab group.
  static constexpr unsigned kLists = kNumOrders + kPageblockOrder;
  static unsigned list_order(unsigned l) { return l < kNumOrders ? l : l - kNumOrders; }
  // The list a free block of order o at i belongs on.
  unsigned list_of(uint32_t i, unsigned o) const {
    return o < kPageblockOrder && group_of(i) == kSlabGroup ? kNumOrders + o : o;
  }
  Group group_of(uint32_t i) const { return static_cast<Group>(d(i & ~(pages(kPageblockOrder) - 1)).group); }
  // A free block of order >= kPageblockOrder at i leaves its list to be
  // used (whole or split): its pageblocks are the group's from now on.
  void claim(uint32_t i, unsigned o, Group group);
  bool list_has_warm(unsigned l) const { return area_[l].head != kNil && area_[l].head != area_[l].boundary; }
  // Of two blocks (either may be kNil), the one that became free first.
  uint32_t older(uint32_t i, uint32_t j) const {
    return j != kNil && (i == kNil || d(j).stamp < d(i).stamp) ? j : i;
  }
  PageDesc& d(uint32_t i) const { return descs_[i]; }
  // The head of the free block that holds page k (heads are aligned to their
  // order), or kNil.
  uint32_t free_head_of(uint32_t k) const;
  static uint32_t pages(unsigned o) { return uint32_t{1} << o; }
  bool fully_reported(uint32_t i) const { return d(i).nrep == pages(d(i).order); }
  // The oldest warm block of list l (just before the boundary), or kNil.
  uint32_t cold_end(unsigned l) const {
    const Area& a = area_[l];
    return a.boundary != kNil ? d(a.boundary).link.prev : a.tail;
  }
  void list_add_warm(uint32_t i, unsigned o);
  void list_add_warm_aged(uint32_t i, unsigned o);
  void list_add_reported(uint32_t i, unsigned o);
  void list_del(uint32_t i, unsigned o);
  // Takes the warm block i of order o off its list for reporting (kIsolated).
  void isolate(uint32_t i, unsigned o);
  void account(uint32_t i, unsigned o, int sign);
  void split(Block* b, unsigned target, uint64_t now);
  void insert(uint32_t i, unsigned o, uint32_t nrep, uint64_t stamp);

  PageDesc* descs_ = nullptr;
  ReportedBits* bits_ = nullptr;
  const uint32_t* frontier_ = nullptr;
  unsigned report_order_ = 0;
  uint64_t mark_pages_ = 0;
  NotifyFn notify_ = nullptr;
  bool split_warm_first_ = true;
  uint64_t warm_reportable_ = 0;  // warm pages in free blocks of order >= report_order
  Area area_[kLists];
  BuddyCounts c_{};
};

}  // namespace ebb
