// The page heap against a memory limit's mark (PageHeap::check_headroom),
// on its own, with the reporter out of the way: a request that would fault
// memory in past the mark reads the usage and gives back warm free memory
// first, as much as it would exceed the target (below the mark) by; the usage read beats the
// estimate; without a mark nothing happens. (The whole mechanism, reporter
// included, is test/pressure_test.cpp and test/pressure_limit_test.sh.)
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "buddy/page_heap.h"
#include "common/lock.h"

using namespace ebb;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

uint64_t g_usage = 0;  // what the sample hook reports
int g_samples = 0, g_urges = 0;
uint64_t sample() {
  ++g_samples;
  return g_usage;
}
void urge() { ++g_urges; }

// As large.cpp marks a run it takes (the heap checker reads it).
void mark_large(PageHeap& h, const PageRun& r) {
  PageDesc& d = h.region().descs()[r.idx];
  d.kind = PageKind::kLargeHead;
  d.npages = r.npages;
}

class Headroom : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h_.init(size_t{1} << 30, &extent_, /*report_order=*/0, /*mark_pages=*/256, nullptr, false));
    g_samples = g_urges = 0;
    // 32 MiB in 64 KiB blocks, every other one freed: 16 MiB of warm holes
    // no request of 128 KiB or more fits.
    LockGuard g(h_.lock());
    std::vector<PageRun> runs(512);
    for (PageRun& r : runs) {
      ASSERT_TRUE(h_.alloc_pages(16, 0, &r));
      mark_large(r);
    }
    for (size_t i = 1; i < runs.size(); i += 2) h_.free_pages(runs[i].idx, 16);
    warm_ = h_.buddy().warm_reportable_pages();
    ASSERT_EQ(warm_, 256u * 16);
  }
  // Takes 1 MiB of fresh memory (it cannot come from the holes).
  void take_fresh() {
    LockGuard g(h_.lock());
    PageRun r;
    ASSERT_TRUE(h_.alloc_pages(256, 0, &r));
    mark_large(r);
    EXPECT_EQ(r.reported, 256u) << "the 1 MiB should have come from fresh memory";
  }
  void mark_large(const PageRun& r) { ::mark_large(h_, r); }
  uint64_t warm() {
    LockGuard g(h_.lock());
    return h_.buddy().warm_reportable_pages();
  }
  // `target`: what a give-back brings the usage down to (Pressure sets it
  // below the mark by half its distance to the limit); 0 = the mark.
  void set_headroom(uint64_t mark, uint64_t estimate, uint64_t target = 0) {
    h_.headroom().mark.store(mark);
    h_.headroom().target.store(target ? target : mark);
    h_.headroom().estimate.store(estimate);
    h_.headroom().sample = &sample;
    h_.headroom().urge = &urge;
  }

  std::atomic<size_t> extent_{0};
  PageHeap h_;
  uint64_t warm_ = 0;
};

TEST_F(Headroom, WithoutAMarkNothingHappens) {
  take_fresh();
  EXPECT_EQ(warm(), warm_);
  EXPECT_EQ(h_.pressure_give_backs(), 0u);
  EXPECT_EQ(h_.headroom().estimate.load(), 0u);
}

TEST_F(Headroom, UnderTheMarkTheEstimateGrowsAndNothingGoesBack) {
  set_headroom(100 * kMiB, 50 * kMiB);
  take_fresh();
  EXPECT_EQ(h_.headroom().estimate.load(), 51 * kMiB);
  EXPECT_EQ(g_samples, 0);
  EXPECT_EQ(warm(), warm_);
}

TEST_F(Headroom, PastTheMarkWarmMemoryGoesBackFirst) {
  // The estimate and the usage say 99.5 MiB: 1 MiB more is 0.5 MiB past
  // the mark, 2.5 MiB past the target.
  set_headroom(100 * kMiB, 99 * kMiB + kMiB / 2, 98 * kMiB);
  g_usage = 99 * kMiB + kMiB / 2;
  take_fresh();
  EXPECT_EQ(g_samples, 1);
  EXPECT_EQ(g_urges, 1);
  EXPECT_EQ(h_.pressure_give_backs(), 1u);
  // What the target is exceeded by, and not all of it: warm blocks, largest
  // first, up to that (the last in part).
  EXPECT_GE(h_.pressure_given_back_bytes(), 2 * kMiB + kMiB / 2);
  EXPECT_LT(h_.pressure_given_back_bytes(), 3 * kMiB);
  EXPECT_EQ(warm(), warm_ - (h_.pressure_given_back_bytes() >> kPageShift));
  EXPECT_EQ(h_.headroom().estimate.load(), 100 * kMiB + kMiB / 2 - h_.pressure_given_back_bytes());
  LockGuard g(h_.lock());
  EXPECT_EQ(h_.buddy().check(true), 0u);
}

TEST_F(Headroom, TheUsageReadBeatsTheEstimate) {
  // The estimate says past the mark; the usage read says 60 MiB.
  set_headroom(100 * kMiB, 120 * kMiB);
  g_usage = 60 * kMiB;
  take_fresh();
  EXPECT_EQ(g_samples, 1);
  EXPECT_EQ(h_.pressure_give_backs(), 0u);
  EXPECT_EQ(warm(), warm_);
  EXPECT_EQ(h_.headroom().estimate.load(), 61 * kMiB);
}

TEST_F(Headroom, FarPastTheMarkEveryWarmPageGoesBack) {
  set_headroom(100 * kMiB, 200 * kMiB);
  g_usage = 200 * kMiB;
  take_fresh();
  EXPECT_EQ(warm(), 0u);
  EXPECT_EQ(h_.pressure_given_back_bytes(), warm_ << kPageShift);
}

TEST_F(Headroom, HugeMappingsCountAndUnmapsLowerTheEstimate) {
  set_headroom(100 * kMiB, 10 * kMiB);
  h_.headroom_map(40 * kMiB);
  EXPECT_EQ(h_.headroom().estimate.load(), 50 * kMiB);
  h_.headroom_release(40 * kMiB);
  h_.headroom_refault(kMiB);
  EXPECT_EQ(h_.headroom().estimate.load(), 11 * kMiB);
  h_.headroom_release(1000 * kMiB);  // never below zero
  EXPECT_EQ(h_.headroom().estimate.load(), 0u);
  EXPECT_FALSE(h_.pressure_urgent());
  h_.headroom().estimate.store(100 * kMiB);
  EXPECT_TRUE(h_.pressure_urgent());
}


// Without a limit: a large request that faults memory in gives back the warm
// free memory beyond a cushion (a fifth of what is in use), and no more
// than that, even when the coldest warm block is larger: only part of it
// goes back, the rest stays warm for the next request.
TEST(LargeRequest, GivesBackNoMoreThanItsShareOfTheColdestBlock) {
  std::atomic<size_t> extent{0};
  PageHeap h;
  ASSERT_TRUE(h.init(size_t{1} << 30, &extent, /*report_order=*/0, /*mark_pages=*/256, nullptr, false));
  LockGuard g(h.lock());
  auto take = [&](uint64_t bytes) {
    PageRun r;
    EXPECT_TRUE(h.alloc_pages(static_cast<uint32_t>(bytes >> kPageShift), 0, &r));
    mark_large(h, r);
    return r;
  };
  take(32 * kMiB);  // 32 MiB in use
  const PageRun a = take(16 * kMiB);
  take(4096);  // keeps a's block from joining the fresh memory above it
  h.free_pages(a.idx, a.npages);
  ASSERT_EQ(h.buddy().warm_reportable_pages() << kPageShift, 16 * kMiB);
  // 20 MiB do not fit a's 16: they come from fresh memory, and 52 MiB are
  // then in use (cushion 10.4 MiB): 5.6 MiB of a's block go back.
  const PageRun b = take(20 * kMiB);
  EXPECT_EQ(b.reported, b.npages) << "the 20 MiB come from fresh memory";
  const uint64_t given = h.given_back_bytes(), warm = h.buddy().warm_reportable_pages() << kPageShift;
  EXPECT_GT(given, 4 * kMiB);
  EXPECT_LE(given, 6 * kMiB) << "not the whole 16 MiB block";
  EXPECT_EQ(given + warm, 16 * kMiB);
  EXPECT_EQ(h.buddy().check(true), 0u);
}

}  // namespace
