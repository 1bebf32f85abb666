// Free page reporting end to end, measured in this process's RSS: freed
// memory goes back to the OS after the cold time, warm memory is reused
// first, merged blocks are re-reported, reported memory is zero, and with
// the reporter off nothing is given back.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "test_util.h"

using namespace ebbtest;

namespace {

constexpr size_t kTotal = 256 * kMiB;

// Mixed small, medium and large objects adding up to kTotal, all touched.
std::vector<void*> allocate_mixed(size_t total) {
  std::vector<void*> v;
  v.reserve(200000);
  std::mt19937_64 rng(1);
  size_t sum = 0;
  while (sum < total) {
    const unsigned kind = rng() % 10;
    size_t n = kind < 6 ? 16 + rng() % 1024 : (kind < 9 ? 4096 + rng() % 60000 : 200000 + rng() % (2 << 20));
    void* p = malloc(n);
    touch(p, n);
    v.push_back(p);
    sum += n;
  }
  return v;
}

bool reporter_on() { return ebb_options()->reporter != 0; }

TEST(Reporting, RssFallsAfterTheColdTimeWithNoFurtherCalls) {
  if (!reporter_on()) GTEST_SKIP() << "reporter is off";
  std::vector<void*> v = allocate_mixed(kTotal);
  const uint64_t peak = rss_bytes();
  for (void* p : v) free(p);
  std::vector<void*>().swap(v);
  const uint64_t t0 = now_ms();
  // No allocator calls from here: the reporter (and its drain of this
  // thread's idle cache) must do it all by itself.
  uint64_t rss = peak;
  while (now_ms() - t0 < 10000) {
    sleep_ms(100);
    rss = rss_bytes();
    if (rss < peak && peak - rss >= kTotal * 9 / 10) break;
  }
  const uint64_t took = now_ms() - t0;
  ebb_stats_t s = stats();
  printf("peak %.1f MiB -> %.1f MiB after %llu ms; reported %.1f MiB in %llu madvise calls\n",
         peak / 1048576.0, rss / 1048576.0, static_cast<unsigned long long>(took),
         s.reported_bytes_total / 1048576.0, static_cast<unsigned long long>(s.madvise_calls));
  EXPECT_LT(rss, peak);
  EXPECT_GE(peak - rss, kTotal * 9 / 10) << "RSS must fall by 90% of what was freed";
  EXPECT_GT(s.reported_bytes_total, 0u);
  EXPECT_EQ(s.reporter_thread_running, 1u);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// The return curve: a mass free starts going back at the first pass (about
// DELAY_MS after it), not after COLD_MS; before it, nothing came back for
// a whole second (the old cold threshold).
TEST(Reporting, AMassFreeStartsGoingBackBeforeTheColdTime) {
  if (!reporter_on()) GTEST_SKIP() << "reporter is off";
  const uint32_t cold = ebb_options()->cold_ms;
  if (cold < 800) GTEST_SKIP() << "needs a cold time of at least 800 ms";
  std::vector<void*> v = allocate_mixed(kTotal);
  const uint64_t peak = rss_bytes();
  for (void* p : v) free(p);
  std::vector<void*>().swap(v);
  const uint64_t t0 = now_ms();
  uint64_t rss = peak;
  while (now_ms() - t0 < cold / 2 + 100) {
    sleep_ms(50);
    rss = rss_bytes();
    if (rss < peak && peak - rss >= kTotal / 4) break;
  }
  const uint64_t took = now_ms() - t0;
  printf("peak %.1f MiB -> %.1f MiB after %llu ms (cold %u ms)\n", peak / 1048576.0, rss / 1048576.0,
         static_cast<unsigned long long>(took), cold);
  ASSERT_LT(rss, peak);
  EXPECT_GE(peak - rss, kTotal / 4) << "a quarter of a mass free is back by half the cold time";
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// A mass free of small objects that the transfer caches hold (up to 1 MiB a
// class) goes back with the rest, not after the idle time: batches follow
// the free pages of slabs (DELAY_MS after a mass free). Run with a long
// cold time (ctest: reporting_long_cold, EBBMALLOC_COLD_MS=8000), so that
// the idle time (4 s) is far from what is asserted.
TEST(Reporting, TransferBatchesOfAMassFreeGoBackBeforeTheIdleTime) {
  if (!reporter_on()) GTEST_SKIP() << "reporter is off";
  const uint32_t cold = ebb_options()->cold_ms, delay = ebb_options()->delay_ms;
  if (cold < 6000 || delay > 500) GTEST_SKIP() << "needs COLD_MS >= 6000 and DELAY_MS <= 500";
  ebb_report_now();
  constexpr size_t kSizes[] = {256, 512, 1024, 2048, 4096, 8192};
  constexpr size_t kPerClass = kMiB;
  std::vector<void*> v;
  for (size_t size : kSizes)
    for (size_t sum = 0; sum < kPerClass; sum += size) {
      void* p = malloc(size);
      touch(p, size);
      v.push_back(p);
    }
  const uint64_t peak = rss_bytes();
  for (void* p : v) free(p);
  std::vector<void*>().swap(v);
  const uint64_t freed = sizeof(kSizes) / sizeof(kSizes[0]) * kPerClass;
  const uint64_t t0 = now_ms();
  uint64_t rss = peak;
  while (now_ms() - t0 < cold / 2 - 1000) {
    sleep_ms(50);
    rss = rss_bytes();
    if (rss < peak && peak - rss >= freed / 2) break;
  }
  printf("peak %.1f MiB -> %.1f MiB after %llu ms (delay %u ms, idle time %u ms)\n", peak / 1048576.0,
         rss / 1048576.0, static_cast<unsigned long long>(now_ms() - t0), delay, cold / 2);
  ASSERT_LT(rss, peak);
  EXPECT_GE(peak - rss, freed / 2) << "half of the free is back well before the idle time";
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// Steady churn keeps its warm fragments: no madvise once the working set is
// built (what the return curve's slack is for).
TEST(Reporting, SteadyChurnDoesNotMadvise) {
  if (!reporter_on()) GTEST_SKIP() << "reporter is off";
  ebb_report_now();  // nothing left over from the tests before
  constexpr size_t kSlots = 4096;
  std::vector<void*> slot(kSlots, nullptr);
  std::mt19937_64 rng(7);
  auto replace = [&] {
    const size_t i = rng() % kSlots;
    free(slot[i]);
    const size_t n = size_t{16} << (rng() % 13);  // 16 B .. 64 KiB
    slot[i] = malloc(n);
    static_cast<char*>(slot[i])[0] = 1;
    static_cast<char*>(slot[i])[n - 1] = 2;
  };
  const uint64_t t0 = now_ms();
  while (now_ms() - t0 < 1500) for (int k = 0; k < 1000; ++k) replace();  // the working set forms
  const ebb_stats_t before = stats();
  const uint64_t t1 = now_ms();
  uint64_t ops = 0;
  while (now_ms() - t1 < 2000) {
    for (int k = 0; k < 1000; ++k) replace();
    ops += 1000;
  }
  const ebb_stats_t after = stats();
  printf("%llu replacements in 2 s: %llu madvise calls, %llu passes\n", static_cast<unsigned long long>(ops),
         static_cast<unsigned long long>(after.madvise_calls - before.madvise_calls),
         static_cast<unsigned long long>(after.reporter_passes - before.reporter_passes));
  EXPECT_EQ(after.madvise_calls - before.madvise_calls, 0u);
  for (void* p : slot) free(p);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// Blocks of 5-25 MiB replaced at random (mimalloc-bench malloc-large's
// shape): free memory split across buddy blocks is used as runs, and what
// does not fit the next request is given back before the heap grows, so the
// process stays near what it holds (it was 1.6x before).
TEST(Reporting, LargeBlocksOfChangingSizesDoNotGrowTheProcess) {
  ebb_report_now();
  constexpr unsigned kSlots = 16;
  void* slot[kSlots] = {};
  size_t size[kSlots] = {};
  std::mt19937_64 rng(3);
  size_t live = 0, live_peak = 0;
  uint64_t rss_peak = 0;
  const uint64_t base = rss_bytes();
  for (unsigned op = 0; op < 300; ++op) {
    const unsigned i = static_cast<unsigned>(rng() % kSlots);
    free(slot[i]);
    live -= size[i];
    size[i] = 5 * kMiB + rng() % (20 * kMiB);
    slot[i] = malloc(size[i]);
    ASSERT_NE(slot[i], nullptr);
    for (size_t k = 0; k < size[i]; k += 4096) static_cast<char*>(slot[i])[k] = static_cast<char>(k);
    live += size[i];
    if (live > live_peak) live_peak = live;
    const uint64_t r = rss_bytes();
    if (r > rss_peak) rss_peak = r;
  }
  printf("live at most %.1f MiB, RSS at most %.1f MiB above the start\n", live_peak / 1048576.0,
         (rss_peak - base) / 1048576.0);
  ASSERT_GT(rss_peak, base);
  EXPECT_LE(rss_peak - base, live_peak + live_peak / 4) << "at most a quarter over what is live";
  for (void* p : slot) free(p);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Reporting, FreePagesOfSlabsStillInUseAreGivenBack) {
  if (!reporter_on()) GTEST_SKIP() << "reporter is off";
  // 128 MiB of 8 KiB and 16 KiB objects (alternating); one in eight of each
  // size survives, so every slab (8 objects) stays in use: only pages
  // inside slabs can go back.
  constexpr size_t kSlabbed = 128 * kMiB;
  ebb_report_now();  // what the tests before left free is not counted as this test's
  std::vector<char*> v;
  size_t sum = 0;
  for (unsigned i = 0; sum < kSlabbed; ++i) {
    const size_t n = i % 2 ? 8192 : 16384;
    char* p = static_cast<char*>(malloc(n));
    touch(p, n, static_cast<unsigned char>(i));
    v.push_back(p);
    sum += n;
  }
  const ebb_stats_t s0 = stats();
  const uint64_t peak = rss_bytes();
  auto survives = [](size_t i) { return (i / 2) % 8 == 0; };
  for (size_t i = 0; i < v.size(); ++i)
    if (!survives(i)) free(v[i]);
  EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes);
  const uint64_t t0 = now_ms();
  uint64_t rss = peak;
  // (Both: the RSS may fall by that much a pass before the last slab pages
  // are counted, when slabs that kept no survivor went back whole.)
  while (now_ms() - t0 < 10000) {
    sleep_ms(100);
    rss = rss_bytes();
    if (rss < peak && peak - rss >= kSlabbed * 3 / 4 && stats().slab_reported_bytes >= kSlabbed * 3 / 4) break;
  }
  const ebb_stats_t s = stats();
  printf("peak %.1f MiB -> %.1f MiB after %llu ms; %llu slab pages reported\n", peak / 1048576.0,
         rss / 1048576.0, static_cast<unsigned long long>(now_ms() - t0),
         static_cast<unsigned long long>(s.slab_pages_reported_total));
  EXPECT_GE(peak - rss, kSlabbed * 3 / 4) << "7/8 of the slabbed memory was freed";
  EXPECT_GE(s.slab_reported_bytes, kSlabbed * 3 / 4);
  // The survivors kept their contents.
  for (size_t i = 0; i < v.size(); ++i) {
    if (!survives(i)) continue;
    const size_t n = i % 2 ? 8192 : 16384;
    for (size_t k = 0; k < n; k += 512) ASSERT_EQ(static_cast<unsigned char>(v[i][k]), static_cast<unsigned char>(i));
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (size_t i = 0; i < v.size(); ++i)
    if (survives(i)) free(v[i]);
}

TEST(Reporting, ReportNowGivesBackAtOnceAndReportedMemoryIsZero) {
  const size_t n = 16 * kMiB;  // a buddy block (up to 32 MiB), not a mapping of its own
  auto* p = static_cast<unsigned char*>(malloc(n));
  touch(p, n, 0x5A);
  const uint64_t before = rss_bytes();
  free(p);
  EXPECT_GT(ebb_report_now(), n / 2);
  EXPECT_LT(rss_bytes() + n * 9 / 10, before + 4 * kMiB);
  // calloc of reported memory: zero (faulted in writable by the kernel, not
  // memset: see large_alloc), and counted as a fallback.
  const ebb_stats_t s0 = stats();
  auto* q = static_cast<unsigned char*>(calloc(1, n));
  ASSERT_NE(q, nullptr);
  const ebb_stats_t s1 = stats();
  EXPECT_GT(s1.reported_fallbacks, s0.reported_fallbacks);
  for (size_t i = 0; i < n; i += 1024)
    if (q[i] != 0) FAIL() << "byte " << i;
  free(q);
  // A huge calloc (its own mapping) is zero and left untouched: a sparse
  // table costs only the pages the program uses.
  const uint64_t before_huge = rss_bytes();
  auto* h = static_cast<unsigned char*>(calloc(1, 64 * kMiB));
  ASSERT_NE(h, nullptr);
  EXPECT_LT(rss_bytes(), before_huge + 8 * kMiB) << "a huge calloc must not touch its pages";
  for (size_t i = 0; i < 64 * kMiB; i += 64 * 1024)
    if (h[i] != 0) FAIL() << "byte " << i;
  free(h);
}

// Four blocks of 4 MiB; returns two that are not buddies, keeping the others
// (their buddies) allocated so nothing merges.
struct Pair {
  void* a;
  void* b;
  std::vector<void*> keep;
};
Pair non_buddies(size_t sz) {
  Pair r{};
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) {
    blocks.push_back(malloc(sz));
    touch(blocks.back(), sz);
  }
  for (size_t i = 0; i < blocks.size() && !r.b; ++i)
    for (size_t j = i + 1; j < blocks.size() && !r.b; ++j) {
      const uintptr_t x = reinterpret_cast<uintptr_t>(blocks[i]) ^ reinterpret_cast<uintptr_t>(blocks[j]);
      if (x != sz) {
        r.a = blocks[i];
        r.b = blocks[j];
      }
    }
  for (void* p : blocks)
    if (p != r.a && p != r.b) r.keep.push_back(p);
  return r;
}

TEST(Reporting, WarmBlocksAreHandedOutBeforeReportedOnes) {
  const size_t sz = 4 * kMiB;
  Pair pr = non_buddies(sz);
  free(pr.a);
  ebb_report_now();  // a is reported now
  free(pr.b);        // b is warm
  const ebb_stats_t s0 = stats();
  void* q = malloc(sz);
  const ebb_stats_t s1 = stats();
  EXPECT_EQ(q, pr.b) << "the warm block must be reused first";
  EXPECT_EQ(s1.reported_fallbacks, s0.reported_fallbacks);
  free(q);
  for (void* p : pr.keep) free(p);
}

TEST(Reporting, MergedReportedAndWarmBlockIsReReportedOnlyWhereResident) {
  const size_t sz = 4 * kMiB;
  std::vector<void*> blocks;
  void *a = nullptr, *buddy = nullptr;
  for (int i = 0; i < 16 && !buddy; ++i) {
    void* p = malloc(sz);
    touch(p, sz);
    for (void* o : blocks)
      if ((reinterpret_cast<uintptr_t>(o) ^ reinterpret_cast<uintptr_t>(p)) == sz) {
        a = o;
        buddy = p;
      }
    blocks.push_back(p);
  }
  ASSERT_TRUE(buddy) << "no buddy pair found";
  free(a);
  ebb_report_now();
  const uint64_t rss_before = rss_bytes();
  free(buddy);  // merges with the reported a into one warm 8 MiB block
  const ebb_stats_t s0 = stats();
  ebb_report_now();
  const ebb_stats_t s1 = stats();
  // Only the resident half is madvised again.
  // (Other memory this test process freed may be reported too, but the
  // already reported half must not be madvised again.)
  EXPECT_GE(s1.reported_bytes_total - s0.reported_bytes_total, sz);
  EXPECT_LT(s1.reported_bytes_total - s0.reported_bytes_total, 2 * sz);
  EXPECT_LT(rss_bytes(), rss_before - sz * 9 / 10);
  for (void* p : blocks)
    if (p != a && p != buddy) free(p);
}

TEST(ReporterOff, RssStaysWhenTheReporterIsOff) {
  if (reporter_on()) GTEST_SKIP() << "run with EBBMALLOC_REPORTER=0";
  std::vector<void*> v = allocate_mixed(kTotal / 2);
  const uint64_t peak = rss_bytes();
  for (void* p : v) free(p);
  sleep_ms(2500);
  const uint64_t rss = rss_bytes();
  EXPECT_GT(rss + 8 * kMiB, peak) << "without the reporter nothing is given back";
  EXPECT_EQ(stats().reporter_thread_running, 0u);
  EXPECT_EQ(stats().madvise_calls, 0u);
}

}  // namespace
