// PageHeap::extend: a large block grows in place into the free pages after
// it (realloc), and past the frontier; a page in use after it, or an
// isolated block, stops it with nothing changed.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "buddy/page_heap.h"
#include "common/lock.h"

using namespace ebb;

namespace {

constexpr uint32_t kPagesPerMiB = (1u << 20) >> kPageShift;

class Extend : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h_.init(size_t{1} << 30, &extent_, /*report_order=*/0, /*mark_pages=*/256, nullptr, false));
  }
  // As large.cpp marks a block it takes (the heap checker reads it).
  PageRun take(uint32_t npages) {
    PageRun r{};
    EXPECT_TRUE(h_.alloc_pages(npages, 0, &r));
    PageDesc& d = h_.region().descs()[r.idx];
    d.kind = PageKind::kLargeHead;
    d.npages = r.npages;
    return r;
  }
  void grown(const PageRun& r, uint32_t npages) { h_.region().descs()[r.idx].npages = npages; }
  uint64_t free_pages() { return h_.buddy().counts().free_pages; }
  unsigned check() { return h_.buddy().check(true); }

  std::atomic<size_t> extent_{0};
  PageHeap h_;
};

TEST_F(Extend, IntoTheFreePagesAfterTheBlock) {
  LockGuard g(h_.lock());
  const PageRun a = take(4 * kPagesPerMiB);
  const PageRun b = take(4 * kPagesPerMiB);
  ASSERT_EQ(b.idx, a.idx + a.npages) << "the test wants b right after a";
  take(1);  // keeps b's pages from the frontier's free memory
  h_.free_pages(b.idx, b.npages);
  const uint64_t before = free_pages();
  // 3 MiB + 4 KiB of b's block: the rest of it is freed again, in pieces.
  ASSERT_TRUE(h_.extend(a.idx, a.npages, 3 * kPagesPerMiB + 1));
  grown(a, 7 * kPagesPerMiB + 1);
  EXPECT_EQ(free_pages(), before - (3 * kPagesPerMiB + 1));
  EXPECT_EQ(check(), 0u);
  // Then the rest of b's pages, across the pieces, and no more than that.
  EXPECT_TRUE(h_.extend(a.idx, 7 * kPagesPerMiB + 1, kPagesPerMiB - 1));
  grown(a, 8 * kPagesPerMiB);
  EXPECT_EQ(free_pages(), before - 4 * kPagesPerMiB);
  EXPECT_EQ(check(), 0u);
  EXPECT_FALSE(h_.extend(a.idx, 8 * kPagesPerMiB, 1)) << "the page after b is in use";
  EXPECT_EQ(check(), 0u);
}

TEST_F(Extend, NotOverAPageInUse) {
  LockGuard g(h_.lock());
  const PageRun a = take(2 * kPagesPerMiB);
  const PageRun b = take(2 * kPagesPerMiB);
  const PageRun c = take(1);
  ASSERT_EQ(b.idx, a.idx + a.npages);
  ASSERT_EQ(c.idx, b.idx + b.npages);
  take(1);
  h_.free_pages(b.idx, b.npages);
  const uint64_t before = free_pages();
  EXPECT_FALSE(h_.extend(a.idx, a.npages, b.npages + 1));
  EXPECT_EQ(free_pages(), before) << "nothing taken";
  EXPECT_EQ(check(), 0u);
  EXPECT_TRUE(h_.extend(a.idx, a.npages, b.npages));
  grown(a, a.npages + b.npages);
  EXPECT_EQ(check(), 0u);
}

TEST_F(Extend, PastTheFrontierTheHeapGrows) {
  LockGuard g(h_.lock());
  const PageRun a = take(3 * kPagesPerMiB);
  // The heap grew by two pageblocks at least; a's block ends where its
  // free tail begins, up to the frontier.
  const uint32_t frontier = h_.region().frontier();
  const uint32_t more = frontier - (a.idx + a.npages) + 10 * kPagesPerMiB;
  ASSERT_TRUE(h_.extend(a.idx, a.npages, more));
  grown(a, a.npages + more);
  EXPECT_GE(h_.region().frontier(), a.idx + a.npages + more);
  EXPECT_EQ(check(), 0u);
  // The new pages count as fresh memory faulted in.
  EXPECT_GE(h_.fallback_pages(), 10u * kPagesPerMiB);
}

TEST_F(Extend, NotIntoAnIsolatedBlock) {
  LockGuard g(h_.lock());
  const PageRun a = take(2 * kPagesPerMiB);
  const PageRun b = take(2 * kPagesPerMiB);
  ASSERT_EQ(b.idx, a.idx + a.npages);
  take(1);
  h_.free_pages(b.idx, b.npages);
  // The reporter has b's block off its list (isolated), madvising it.
  uint32_t iso;
  ASSERT_TRUE(h_.buddy().isolate_largest(&iso));
  ASSERT_EQ(iso, b.idx);
  EXPECT_FALSE(h_.extend(a.idx, a.npages, 1));
  h_.buddy().putback(iso, false, 0);
  EXPECT_TRUE(h_.extend(a.idx, a.npages, 1));
  grown(a, a.npages + 1);
  EXPECT_EQ(check(), 0u);
}

// Grouping (Buddy::Group): slabs built among buffers stay in pageblocks of
// their own, so that when the buffers are freed their memory joins into
// whole pageblocks, and larger blocks built next take it warm. One slab
// group's 128 KiB slab per three 64, 128 or 256 KiB buffers, 64 MiB in all; the
// buffers freed, the slabs kept; then 1-8 MiB blocks for 3/4 of the freed
// memory. With one list per order the slabs sat between the buffers, no
// pageblock came free, and every block came from fresh memory (reported =
// all of its pages).
TEST_F(Extend, SlabsKeptDoNotStrandFreedBuffers) {
  LockGuard g(h_.lock());
  std::vector<PageRun> buffers;
  uint64_t built = 0, seed = 7;
  auto rnd = [&seed] { return seed = seed * 6364136223846793005ull + 1442695040888963407ull, seed >> 33; };
  while (built < 64 * kPagesPerMiB) {
    for (int k = 0; k < 3; ++k) {
      const PageRun r = take(16u << (rnd() % 3));  // (powers of two: no trimmed tails left fresh)
      buffers.push_back(r);
      built += r.npages;
    }
    PageRun slab{};
    ASSERT_TRUE(h_.alloc_pages(32, 0, &slab, /*keep_reported=*/true, Buddy::kSlabGroup));
    h_.region().reported().clear(slab.idx, slab.npages);  // written
    for (uint32_t k = 0; k < slab.npages; ++k) h_.region().descs()[slab.idx + k].kind = PageKind::kSlab;
    built += slab.npages;
  }
  uint64_t freed = 0;
  for (const PageRun& r : buffers) {
    h_.free_pages(r.idx, r.npages);
    freed += r.npages;
  }
  EXPECT_EQ(check(), 0u);
  uint64_t taken = 0, fresh = 0;
  while (taken < freed * 3 / 4) {
    const PageRun r = take(256 + static_cast<uint32_t>(rnd() % 1793));
    taken += r.npages;
    fresh += r.reported;
  }
  EXPECT_EQ(check(), 0u);
  EXPECT_LT(fresh, taken / 10) << taken << " pages taken after the buffers were freed, " << fresh
                               << " of them from reported or fresh memory";
}

}  // namespace
