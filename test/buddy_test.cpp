// The buddy free lists on their own: split/merge, counts, the reported
// boundary and the reporting isolate/putback cycle, checked against the full
// invariant walker after every operation of long random sequences.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "buddy/buddy.h"

using namespace ebb;

namespace {

class BuddyTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kPages = 1u << 14;  // 64 MiB of pages: two top-order blocks
  void SetUp() override {
    descs_.assign(kPages, PageDesc{});
    words_.assign(kPages / 64, 0);
    bits_.init(words_.data());
    frontier_ = kPages;
    notified_ = 0;
    b_.init(descs_.data(), &bits_, &frontier_, /*report_order=*/0, /*mark_pages=*/1, &BuddyTest::notify);
    b_.add_fresh(0, kPages, /*now=*/0);
  }
  // What PageHeap does with a block: its pages are in use now.
  Buddy::Block take(unsigned order, uint64_t now) {
    Buddy::Block blk{};
    EXPECT_TRUE(b_.alloc(order, now, &blk));
    b_.clear_reported(blk.idx, 1u << blk.order);
    descs_[blk.idx].kind = PageKind::kLargeHead;
    descs_[blk.idx].npages = 1u << blk.order;
    return blk;
  }
  void give(const Buddy::Block& blk, uint64_t now) { b_.free_range(blk.idx, 1u << blk.order, false, now); }
  static void notify() { ++notified_; }

  std::vector<PageDesc> descs_;
  std::vector<uint64_t> words_;
  ReportedBits bits_;
  uint32_t frontier_ = 0;
  Buddy b_;
  static inline int notified_ = 0;
};

TEST_F(BuddyTest, FreshMemoryIsReportedTopOrderBlocks) {
  EXPECT_EQ(b_.check(true), 0u);
  EXPECT_EQ(b_.counts().nr_free[kMaxOrder], 2u);
  EXPECT_EQ(b_.counts().nr_reported[kMaxOrder], 2u);
  EXPECT_EQ(b_.counts().free_pages, kPages);
  EXPECT_EQ(b_.counts().reported_pages, kPages);
}

TEST_F(BuddyTest, SplitAndMergeRestoreTheHeap) {
  std::vector<Buddy::Block> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(take(static_cast<unsigned>(i % 6), 1));
  EXPECT_EQ(b_.check(true), 0u);
  for (auto& blk : blocks) give(blk, 2);
  EXPECT_EQ(b_.check(true), 0u);
  EXPECT_EQ(b_.counts().free_pages, kPages);
  // Everything merged back into the two top blocks.
  EXPECT_EQ(b_.counts().nr_free[kMaxOrder], 2u);
  uint64_t others = 0;
  for (unsigned o = 0; o < kMaxOrder; ++o) others += b_.counts().nr_free[o];
  EXPECT_EQ(others, 0u);
}

TEST_F(BuddyTest, WarmBlocksAreAllocatedBeforeReportedOnes) {
  Buddy::Block a = take(4, 1), x = take(4, 1), c = take(4, 1), y = take(4, 1);
  (void)x;
  (void)y;
  // Free a and c (not buddies of each other: x and y keep them apart).
  give(a, 10);
  give(c, 10);
  // Report a (and everything fresh): isolate everything cold at order 4.
  uint32_t ids[64];
  unsigned n = b_.isolate_cold(4, 1000, ids, 64);
  ASSERT_GE(n, 1u);
  for (unsigned i = 0; i < n; ++i) b_.putback(ids[i], ids[i] == a.idx, 1000);
  EXPECT_EQ(b_.check(true), 0u);
  // a is now reported behind the boundary; c is warm: allocation takes c.
  Buddy::Block got{};
  ASSERT_TRUE(b_.alloc(4, 1001, &got));
  EXPECT_EQ(got.idx, c.idx);
  EXPECT_EQ(got.nrep, 0u);
}

TEST_F(BuddyTest, MergedReportedAndWarmIsWarmAndKnowsWhichPagesAreReported) {
  Buddy::Block a = take(3, 1);
  Buddy::Block buddy = take(3, 1);
  ASSERT_EQ(a.idx ^ buddy.idx, 8u) << "consecutive order-3 allocations should be buddies";
  give(a, 5);
  uint32_t ids[8];
  ASSERT_EQ(b_.isolate_cold(3, 100, ids, 8), 1u);
  b_.putback(ids[0], true, 100);
  EXPECT_EQ(b_.check(true), 0u);
  give(buddy, 200);  // merges with the reported a
  EXPECT_EQ(b_.check(true), 0u);
  // The merged block is warm, with exactly a's 8 pages reported.
  EXPECT_GT(b_.warm_reportable_pages(), 0u);
  EXPECT_EQ(b_.count_reported(std::min(a.idx, buddy.idx), 16), 8u);
}

TEST_F(BuddyTest, BlocksFreedEarlierAreListedByTheirFreeTime) {
  // Pages that sat in an idle cache come back with an older stamp: they are
  // listed where that stamp belongs, so the reporter finds them cold.
  Buddy::Block a = take(2, 0), s1 = take(2, 0), c = take(2, 0), s2 = take(2, 0), e = take(2, 0), s3 = take(2, 0);
  (void)s1;
  (void)s2;
  (void)s3;
  give(a, 100);
  give(c, 900);
  give(e, 300);  // freed at 300, handed back after c
  EXPECT_EQ(b_.check(true), 0u) << "the warm run stays ordered by free time";
  uint32_t ids[8];
  uint64_t next = ~0ull;
  // At t=1350 with cold=1000 (cutoff 350): a (100) and e (300) are cold, c (900) is not.
  const unsigned n = b_.isolate_cold(2, 1350 - 1000, ids, 8, &next);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(ids[0], a.idx);
  EXPECT_EQ(ids[1], e.idx);
  EXPECT_EQ(next, 900u) << "c, freed at 900, is the next to become cold";
  for (unsigned i = 0; i < n; ++i) b_.putback(ids[i], true, 1350);
  EXPECT_EQ(b_.check(true), 0u);
}

TEST_F(BuddyTest, AnOldBlockBehindManyNewerOnesIsFoundFromTheColdEnd) {
  // More newer warm blocks than the search from the head looks at: the
  // place is found from the cold end.
  std::vector<Buddy::Block> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(take(0, 0));
  for (int i = 0; i < 80; i += 2) give(blocks[i], 1000 + i);  // every other: no merging
  give(blocks[81], 10);
  EXPECT_EQ(b_.check(true), 0u) << "the warm run stays ordered by free time";
  uint32_t ids[4];
  uint64_t next = ~0ull;
  ASSERT_EQ(b_.isolate_cold(0, 2001 - 1000, ids, 4, &next), 2u);
  EXPECT_EQ(ids[0], blocks[81].idx) << "the oldest block is isolated first";
  EXPECT_EQ(ids[1], blocks[0].idx);
  EXPECT_EQ(next, 1002u);
  for (unsigned i = 0; i < 2; ++i) b_.putback(ids[i], true, 2001);
  EXPECT_EQ(b_.check(true), 0u);
}

TEST_F(BuddyTest, OnlyColdBlocksAreIsolatedAndTheNextDeadlineIsKnown) {
  Buddy::Block a = take(2, 0), s1 = take(2, 0), c = take(2, 0), s2 = take(2, 0);
  (void)s1;
  (void)s2;
  give(a, 100);  // becomes free at t=100
  give(c, 500);  // at t=500
  uint32_t ids[8];
  uint64_t next = ~0ull;
  // At t=1200 with cold=1000 (cutoff 200) only a is cold; c, freed at 500,
  // becomes cold at 1500.
  const unsigned n = b_.isolate_cold(2, 1200 - 1000, ids, 8, &next);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(ids[0], a.idx);
  EXPECT_EQ(next, 500u);
  b_.putback(ids[0], true, 1200);
  EXPECT_EQ(b_.check(true), 0u);
}

TEST_F(BuddyTest, FreeOfReportableOrderNotifies) {
  notified_ = 0;
  Buddy::Block a = take(0, 0);
  give(a, 1);
  EXPECT_GT(notified_, 0);
}

TEST_F(BuddyTest, CheckerDetectsCorruption) {
  Buddy::Block a = take(2, 0);
  Buddy::Block s = take(2, 0);
  (void)s;
  give(a, 1);
  ASSERT_EQ(b_.check(false), 0u);
  descs_[a.idx].nrep = 1;  // count no longer matches the page bits
  EXPECT_GT(b_.check(false), 0u);
  descs_[a.idx].nrep = 0;
  descs_[a.idx + 1].kind = PageKind::kFreeHead;  // overlapping block
  EXPECT_GT(b_.check(false), 0u);
  descs_[a.idx + 1].kind = PageKind::kFreeTail;
  EXPECT_EQ(b_.check(false), 0u);
}

TEST_F(BuddyTest, LongRandomSequencesKeepEveryInvariant) {
  std::mt19937_64 rng(12345);
  std::vector<Buddy::Block> live;
  uint64_t now = 0;
  for (int step = 0; step < 6000; ++step) {
    now += rng() % 50;
    const unsigned op = rng() % 10;
    if (op < 5) {
      Buddy::Block blk{};
      // Orders on both sides of a pageblock, for both groups (their lists
      // and pageblocks are checked by the walker too).
      const unsigned order = static_cast<unsigned>(rng() % 11);
      const Buddy::Group group = rng() % 2 ? Buddy::kSlabGroup : Buddy::kLargeGroup;
      if (b_.alloc(order, now, &blk, group, rng() % 4 == 0)) {
        b_.clear_reported(blk.idx, 1u << blk.order);
        descs_[blk.idx].kind = PageKind::kLargeHead;
        descs_[blk.idx].npages = 1u << blk.order;
            live.push_back(blk);
      }
    } else if (op < 9 && !live.empty()) {
      const size_t i = rng() % live.size();
      // Free the block, sometimes only a prefix with the tail trimmed first.
      const Buddy::Block blk = live[i];
      live[i] = live.back();
      live.pop_back();
      const uint32_t n = 1u << blk.order;
      if (n > 1 && rng() % 2) {
        const uint32_t keep = 1 + static_cast<uint32_t>(rng() % (n - 1));
        b_.free_range(blk.idx + keep, n - keep, false, now);
        descs_[blk.idx].npages = keep;
        b_.free_range(blk.idx, keep, false, now);
      } else {
        b_.free_range(blk.idx, n, false, now);
      }
    } else {
      // A reporting round on a random order, some madvise calls "failing".
      uint32_t ids[32];
      const unsigned order = static_cast<unsigned>(rng() % (kMaxOrder + 1));
      const uint64_t cold = rng() % 200;
      const unsigned n = now >= cold ? b_.isolate_cold(order, now - cold, ids, 32) : 0;
      ASSERT_EQ(b_.check(false), 0u) << "with blocks isolated";
      for (unsigned k = 0; k < n; ++k) b_.putback(ids[k], rng() % 8 != 0, now);
    }
    ASSERT_EQ(b_.check(true), 0u) << "after step " << step << " op " << op;
  }
  for (const auto& blk : live) b_.free_range(blk.idx, 1u << blk.order, false, now);
  EXPECT_EQ(b_.check(true), 0u);
  EXPECT_EQ(b_.counts().free_pages, kPages);
}

// Grouping: slabs and large blocks below a pageblock come from pageblocks of
// their own, and each group takes its own fragments first.
class BuddyGroupTest : public BuddyTest {
 protected:
  static constexpr uint32_t kPb = 1u << kPageblockOrder;
  // Takes a block for `group` and marks it in use (as PageHeap would).
  Buddy::Block get(unsigned order, uint64_t now, Buddy::Group group, bool steal = true) {
    Buddy::Block blk{};
    EXPECT_TRUE(b_.alloc(order, now, &blk, group, steal));
    mark(blk.idx, 1u << blk.order);
    return blk;
  }
  void mark(uint32_t idx, uint32_t n) {
    b_.clear_reported(idx, n);
    descs_[idx].kind = PageKind::kLargeHead;
    descs_[idx].npages = n;
  }
  // Frees a block whose pages were written (warm).
  void put(const Buddy::Block& blk, uint64_t now) { b_.free_range(blk.idx, 1u << blk.order, false, now); }
  static uint32_t pb(const Buddy::Block& blk) { return blk.idx / kPb; }
};

TEST_F(BuddyGroupTest, EachGroupTakesItsOwnPageblocksFirst) {
  // One block of each group pins a pageblock of its own.
  const Buddy::Block sp = get(0, 1, Buddy::kSlabGroup), lp = get(0, 1, Buddy::kLargeGroup);
  EXPECT_NE(pb(sp), pb(lp));
  const Buddy::Block s1 = get(4, 1, Buddy::kSlabGroup), l1 = get(4, 1, Buddy::kLargeGroup);
  EXPECT_EQ(pb(s1), pb(sp)) << "the rest of the group's pageblock, before a new one";
  EXPECT_EQ(pb(l1), pb(lp));
  EXPECT_EQ(b_.check(true), 0u);
  // A warm fragment of the slab group, nothing else warm: a large block takes
  // it (warm memory before reported; a large block is freed whole).
  put(s1, 2);
  const Buddy::Block l2 = get(4, 3, Buddy::kLargeGroup);
  EXPECT_EQ(l2.idx, s1.idx);
  EXPECT_EQ(l2.nrep, 0u);
  put(l2, 4);
  // The slab group's own warm fragment first.
  const Buddy::Block s2 = get(4, 5, Buddy::kSlabGroup);
  EXPECT_EQ(s2.idx, s1.idx);
  // A warm fragment of the large group only: a slab takes its own
  // pageblock's reported rest instead (a slab would pin it).
  put(l1, 6);
  const Buddy::Block s3 = get(4, 7, Buddy::kSlabGroup);
  EXPECT_EQ(pb(s3), pb(sp));
  EXPECT_EQ(s3.nrep, 1u << 4);
  // ... and a large block takes it.
  const Buddy::Block l3 = get(4, 8, Buddy::kLargeGroup);
  EXPECT_EQ(l3.idx, l1.idx);
  EXPECT_EQ(b_.check(true), 0u);
}

TEST_F(BuddyGroupTest, OtherGroupsReportedMemoryOnlyWhenStealing) {
  // The rest of one slab-group pageblock is all that is free.
  get(0, 1, Buddy::kSlabGroup);
  Buddy::Block blk{};
  while (b_.alloc(kPageblockOrder, 1, &blk, Buddy::kLargeGroup, false)) mark(blk.idx, kPb);
  EXPECT_EQ(b_.counts().free_pages, kPb - 1);
  EXPECT_FALSE(b_.alloc(0, 2, &blk, Buddy::kLargeGroup, /*steal_reported=*/false));
  get(0, 2, Buddy::kLargeGroup, /*steal=*/true);
  EXPECT_EQ(b_.counts().free_pages, kPb - 2);
  EXPECT_EQ(b_.check(true), 0u);
}

// Runs and in-place growth take whole pageblocks for the large group: the
// fragments they leave are the large group's.
TEST_F(BuddyGroupTest, RunsClaimTheirPageblocks) {
  get(0, 1, Buddy::kSlabGroup);
  constexpr uint32_t kRun = kPb + kPb / 2 + 3;
  uint32_t idx;
  ASSERT_TRUE(b_.alloc_run(kRun, 0, 1, 64, &idx));
  mark(idx, kRun);
  EXPECT_EQ(b_.check(true), 0u);
  const Buddy::Block l = get(0, 2, Buddy::kLargeGroup, false);
  EXPECT_EQ(l.idx, idx + kRun) << "the run's tail, in a large-group pageblock";
  ASSERT_TRUE(b_.take_range(l.idx + 1, 5));
  mark(l.idx + 1, 5);
  EXPECT_EQ(b_.check(true), 0u);
}

}  // namespace

namespace {

// The reported-page bitmap against a plain array of bools.
TEST(ReportedBitsTest, RangesCountsAndRunsMatchAPlainArray) {
  constexpr uint32_t kN = 1024;
  std::vector<uint64_t> words(kN / 64, 0);
  ReportedBits bits;
  bits.init(words.data());
  std::vector<bool> ref(kN, false);
  std::mt19937 rng(3);
  for (int step = 0; step < 2000; ++step) {
    const uint32_t i = rng() % kN, n = rng() % (kN - i) % 200;
    if (rng() % 2) {
      bits.set(i, n);
      for (uint32_t k = i; k < i + n; ++k) ref[k] = true;
    } else {
      bits.clear(i, n);
      for (uint32_t k = i; k < i + n; ++k) ref[k] = false;
    }
    const uint32_t qi = rng() % kN, qn = rng() % (kN - qi + 1);
    uint32_t expect = 0;
    for (uint32_t k = qi; k < qi + qn; ++k) expect += ref[k];
    ASSERT_EQ(bits.count(qi, qn), expect);
    // Runs of clear bits in [qi, qi+qn) tile exactly the clear pages.
    std::vector<bool> seen(kN, true);
    uint32_t a, b;
    for (uint32_t k = qi; bits.next_clear_run(k, qi + qn, &a, &b); k = b) {
      ASSERT_LT(a, b);
      ASSERT_GE(a, k);
      for (uint32_t x = a; x < b; ++x) seen[x] = false;
    }
    for (uint32_t k = qi; k < qi + qn; ++k) ASSERT_EQ(seen[k], ref[k]) << "page " << k;
    // An aligned 64-page window as a mask.
    const uint32_t base = (rng() % (kN / 64)) * 64;
    uint64_t m = 0;
    for (uint32_t k = 0; k < 64; ++k) m |= uint64_t{ref[base + k]} << k;
    ASSERT_EQ(bits.get_mask(base, 64), m);
  }
}


// A run serves a request of a non-power-of-two number of pages from free
// blocks that lie end to end, without rounding it up to the next order.
TEST_F(BuddyTest, RunsJoinAdjacentBlocksAcrossBuddyBoundaries) {
  // Two top-order blocks: take them both, then free a 16 MiB block at the
  // end of the first and a 16 MiB block at the start of the second: 32 MiB
  // free end to end, but no free 32 MiB buddy block.
  Buddy::Block lo = take(kMaxOrder, 1), hi = take(kMaxOrder, 1);
  const uint32_t half = 1u << (kMaxOrder - 1);
  b_.free_range(lo.idx + half, half, false, 5);
  b_.free_range(hi.idx, half, false, 5);
  descs_[lo.idx].npages = half;  // the halves still in use
  descs_[hi.idx + half].kind = PageKind::kLargeHead;
  descs_[hi.idx + half].npages = half;
  ASSERT_EQ(b_.check(true), 0u);
  Buddy::Block blk{};
  const uint32_t want = 6000;  // 23.4 MiB: order 13 for alloc()
  EXPECT_FALSE(b_.alloc(kMaxOrder, 6, &blk));
  uint32_t idx = kNil;
  ASSERT_TRUE(b_.alloc_run(want, 1, 6, 64, &idx));
  EXPECT_EQ(idx, lo.idx + half);
  descs_[idx].kind = PageKind::kLargeHead;
  descs_[idx].npages = want;
  EXPECT_EQ(b_.check(true), 0u);
  // What the run did not use went back: 32 MiB - 6000 pages.
  EXPECT_EQ(b_.counts().free_pages, uint64_t{2} * half - want);
  // A run wants warm pages: with min_warm above what is free, none.
  EXPECT_FALSE(b_.alloc_run(1024, 4096, 7, 64, &idx));
}

TEST_F(BuddyTest, TheColdestWarmBlockIsIsolatedFirstAcrossOrders) {
  Buddy::Block a = take(3, 1), x = take(3, 1), c = take(5, 1), y = take(5, 1);
  (void)x;
  (void)y;
  give(c, 100);  // order 5, freed at 100
  give(a, 50);   // order 3, freed at 50: the coldest
  uint32_t idx = kNil;
  EXPECT_FALSE(b_.isolate_coldest(40, &idx)) << "nothing was free at 40";
  ASSERT_TRUE(b_.isolate_coldest(200, &idx));
  EXPECT_EQ(idx, a.idx);
  b_.putback(idx, true, 300);
  ASSERT_TRUE(b_.isolate_coldest(200, &idx));
  EXPECT_EQ(idx, c.idx);
  b_.putback(idx, true, 300);
  EXPECT_EQ(b_.check(true), 0u);
  // The budget of the return curve: the stamp that covers the coldest pages.
  Buddy::Block e = take(4, 1), f = take(4, 1);
  give(e, 400);
  give(f, 500);
  uint64_t cutoff = 0;
  ASSERT_TRUE(b_.cold_cutoff(16, 1000, 64, &cutoff));
  EXPECT_EQ(cutoff, 400u) << "16 pages: the block freed at 400 covers them";
  ASSERT_TRUE(b_.cold_cutoff(17, 1000, 64, &cutoff));
  EXPECT_EQ(cutoff, 500u);
  EXPECT_FALSE(b_.cold_cutoff(16, 300, 64, &cutoff)) << "both are newer than 300";
}

}  // namespace
