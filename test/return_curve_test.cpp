// The return curve on its own (report/return_curve.h): what a pass keeps and
// how soon it looks again, for the demand histories that matter — a mass
// free, the ups and downs of a steady program, a program that keeps drawing;
// and the heap's side of it (when it last had its peak in use).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "buddy/page_heap.h"
#include "common/lock.h"
#include "os/os.h"
#include "report/return_curve.h"

using namespace ebb;

namespace {

constexpr uint64_t kCold = 1000, kDelay = 200, kMark = 256;  // the defaults (mark: 1 MiB of pages)

ReturnCurve fresh() {
  ReturnCurve c;
  c.init(kCold, kDelay, kMark);
  return c;
}

}  // namespace

// The swing ages from the moment the heap last had its peak in use (a mass
// free's), not from the pass that first sees the peak: a pass 300 ms after
// the free keeps (1 - 0.3)^2 of it, whenever the passes before it ran.
TEST(ReturnCurve, TheSwingAgesFromTheFreeNotFromThePass) {
  ReturnCurve c = fresh();
  c.plan(1000, 100000, 100000, 1000, 0, 100000, false);  // steady at 100000 pages until t = 1000
  // Freed 90000 pages at t = 1000; the first pass after it runs at t = 1300.
  const ReturnPlan p = c.plan(1300, 10000, 100000, 1000, 90000, 100000, false);
  EXPECT_EQ(p.swing_pages, 90000u * 700 / 1000 * 700 / 1000);
  EXPECT_EQ(p.excess_pages, 90000u - p.swing_pages);
  // The same free seen at its own moment keeps all of it.
  ReturnCurve d = fresh();
  d.plan(1000, 100000, 100000, 1000, 0, 100000, false);
  EXPECT_EQ(d.plan(1300, 10000, 100000, 1300, 90000, 100000, false).swing_pages, 90000u);
}

// A mass free is followed closely: passes every DELAY_MS / 4 and blocks of
// that age may go back, while the claim decays and warm memory is left for
// it to let go (not a pass DELAY_MS later: the curve, not a staircase).
TEST(ReturnCurve, AMassFreeIsFollowedEveryQuarterDelay) {
  ReturnCurve c = fresh();
  c.plan(1000, 100000, 100000, 1000, 0, 100000, false);
  const ReturnPlan p = c.plan(1300, 10000, 100000, 1000, 90000, 100000, false);
  EXPECT_TRUE(p.follow);
  EXPECT_EQ(p.min_age_ms, kDelay / 4);
  EXPECT_EQ(p.slab_cold_ms, kDelay / 4) << "free slab pages go with it";
  // Nothing in excess for a moment (the claim covers what is warm): still
  // followed, the claim keeps falling.
  const ReturnPlan q = c.plan(1350, 10000, 10000, 1350, 30000, 100000, false);
  EXPECT_EQ(q.excess_pages, 0u);
  EXPECT_TRUE(q.follow);
  // Everything warm is back: the passes slow down again.
  const ReturnPlan r = c.plan(1400, 10000, 10000, 1400, 0, 100000, false);
  EXPECT_FALSE(r.follow);
  EXPECT_EQ(r.min_age_ms, kDelay);
  // And once the claim is gone.
  const ReturnPlan e = c.plan(2100, 10000, 10000, 2100, 30000, 100000, false);
  EXPECT_EQ(e.swing_pages, 0u);
  EXPECT_FALSE(e.follow);
}

// The ups and downs of a steady program are not a mass free: a swing of a
// few percent of what is in use (churn: 1-2 MiB beside 35 MiB) waits
// DELAY_MS as before.
TEST(ReturnCurve, TheUpsAndDownsOfASteadyProgramAreNotFollowed) {
  ReturnCurve c = fresh();
  uint64_t drawn = 10000;
  c.plan(1000, 10000, 10000, 1000, 0, drawn, false);
  for (uint64_t t = 1200; t <= 5000; t += 200) {
    drawn += 3000;  // it keeps drawing pages from the heap
    const ReturnPlan p = c.plan(t, 9000, 9500, t - 50, 2000, drawn, false);
    EXPECT_FALSE(p.follow) << "at " << t;
    EXPECT_EQ(p.min_age_ms, kDelay);
    EXPECT_EQ(p.excess_pages, 0u) << "the slack keeps its fragments, at " << t;
  }
}

// A swing of four marks or more, and of a quarter of what is still in use,
// counts as a mass free; a smaller one does not.
TEST(ReturnCurve, AMassFreeIsAtLeastFourMarksAndAQuarterOfWhatIsInUse) {
  {
    ReturnCurve c = fresh();
    c.plan(1000, 100000, 100000, 1000, 0, 100000, false);
    // 20000 pages freed of 100000: a fifth of what is still in use.
    EXPECT_FALSE(c.plan(1100, 80000, 100000, 1000, 20000, 100000, false).follow);
  }
  {
    ReturnCurve c = fresh();
    c.plan(1000, 2000, 2000, 1000, 0, 2000, false);
    // 1000 pages (4 MiB minus a bit) freed of 2000: under four marks.
    EXPECT_FALSE(c.plan(1100, 1000, 2000, 1000, 1000, 2000, false).follow);
  }
  {
    ReturnCurve c = fresh();
    c.plan(1000, 100000, 100000, 1000, 0, 100000, false);
    EXPECT_TRUE(c.plan(1100, 60000, 100000, 1000, 40000, 100000, false).follow);
  }
}

// The curve's demand signal from the heap: the peak since the last pass and
// the last moment it was in use — when the program freed it, not when it
// allocated it, however long it held it in between.
TEST(HeapPeak, TheHeapKnowsWhenItLeftItsPeak) {
  static PageHeap h;  // (large: kept out of the stack)
  std::atomic<size_t> extent{0};
  ASSERT_TRUE(h.init(size_t{1} << 30, &extent, /*report_order=*/0, /*mark_pages=*/256, nullptr, false));
  LockGuard g(h.lock());
  uint64_t at;
  h.take_in_use_peak(os::now_ms(), &at);
  PageRun r;
  ASSERT_TRUE(h.alloc_pages(256, 0, &r));
  PageDesc& d = h.region().descs()[r.idx];  // as large.cpp marks a run it takes
  d.kind = PageKind::kLargeHead;
  d.npages = r.npages;
  const uint64_t allocated = os::now_ms();
  usleep(60 * 1000);  // held, with no call into the heap
  const uint64_t before_free = os::now_ms();
  d.kind = PageKind::kFreeTail;
  h.free_pages(r.idx, 256);
  usleep(60 * 1000);
  const uint64_t now = os::now_ms();
  EXPECT_EQ(h.take_in_use_peak(now, &at), 256u);
  EXPECT_GE(at, before_free) << "allocated at " << allocated;
  EXPECT_LT(at, now);
  // Nothing since: the peak is what is in use now, now.
  EXPECT_EQ(h.take_in_use_peak(now + 5, &at), 0u);
  EXPECT_EQ(at, now + 5);
}
