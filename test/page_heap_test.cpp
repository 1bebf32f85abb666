// PageHeap::extend: a large block grows in place into the free pages after
// it (realloc), and past the frontier; a page in use after it, or an
// isolated block, stops it with nothing changed.
#include <gtest/gtest.h>

#include <atomic>

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

}  // namespace
