// Fault injection: commit (growing the heap's mappings), map (mmap) and madvise failures are
// injected through os::g_hooks. Allocation must then fail cleanly (NULL,
// ENOMEM), the heap must stay consistent, every live byte must survive, and
// allocation must work again once memory is back; the reporter must survive
// madvise errors, count them and carry on.
//
// Links the internal layers (ebb_core_for_tests): the hooks are reachable and
// the test's own allocations (GoogleTest, vectors) go to the system
// allocator, so only ebbmalloc's calls see the faults.
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "api/malloc_api.h"
#include "ebbmalloc.h"
#include "front/globals.h"
#include "os/os.h"
#include "pattern.h"

namespace {

std::atomic<bool> g_fail_commit{false}, g_fail_map{false}, g_fail_advise{false};
std::atomic<uint64_t> g_injected{0};  // faults injected, all kinds
std::atomic<uint64_t> g_commit_faults{0}, g_map_faults{0}, g_advise_faults{0};

// For docs/RELIABILITY.md: how many faults a run injected.
__attribute__((destructor)) void print_faults() {
  printf("fault_injection: %llu faults injected (commit %llu, map %llu, madvise %llu)\n",
         static_cast<unsigned long long>(g_injected.load()), static_cast<unsigned long long>(g_commit_faults.load()),
         static_cast<unsigned long long>(g_map_faults.load()), static_cast<unsigned long long>(g_advise_faults.load()));
}

int commit_hook(void* p, size_t size) {
  if (g_fail_commit.load()) {
    g_injected.fetch_add(1);
    g_commit_faults.fetch_add(1);
    return ENOMEM;
  }
  // What os::commit does: fresh memory at exactly p, never over a mapping.
  void* q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                 -1, 0);
  if (q == MAP_FAILED) return errno;
  if (q != p) {
    munmap(q, size);
    return EEXIST;
  }
  return 0;
}
void* map_hook(size_t size) {
  if (g_fail_map.load()) {
    g_injected.fetch_add(1);
    g_map_faults.fetch_add(1);
    return nullptr;
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
int advise_hook(void* p, size_t size, bool lazy) {
  if (g_fail_advise.load()) {
    g_injected.fetch_add(1);
    g_advise_faults.fetch_add(1);
    return EAGAIN;
  }
  return madvise(p, size, lazy ? MADV_FREE : MADV_DONTNEED) == 0 ? 0 : errno;
}

// After the allocator's own constructor (101), before any test thread.
__attribute__((constructor(102))) void install_hooks() {
  ebb::os::g_hooks.commit = &commit_hook;
  ebb::os::g_hooks.map = &map_hook;
  ebb::os::g_hooks.advise = &advise_hook;
}

struct Faults {  // clears every fault on scope exit, even on a failed ASSERT
  ~Faults() {
    g_fail_commit = false;
    g_fail_map = false;
    g_fail_advise = false;
  }
};

// A live block whose every byte is a function of (seed, offset).
struct Block {
  unsigned char* p;
  size_t n;
  uint32_t seed;
};
Block make(size_t n, uint32_t seed) {
  auto* p = static_cast<unsigned char*>(ebb::do_malloc(n));
  if (p) ebbtest::pattern_fill(p, seed, 0, n);
  return Block{p, n, seed};
}
bool intact(const Block& b) { return ebbtest::pattern_ok(b.p, b.seed, b.n); }
void free_all(std::vector<Block>* v) {
  for (const Block& b : *v) ebb::do_free(b.p);
  v->clear();
}

uint64_t madvise_failures() {
  ebb_stats_t s;
  ebb_stats(&s);
  return s.madvise_failures;
}
uint64_t reported_bytes() {
  ebb_stats_t s;
  ebb_stats(&s);
  return s.reported_bytes_total;
}

// Live blocks of every kind, to be checked after each fault.
std::vector<Block> witnesses() {
  std::vector<Block> v;
  uint32_t seed = 1;
  for (size_t n : {size_t{1}, size_t{24}, size_t{100}, size_t{4000}, size_t{32768}, size_t{40000},
                   size_t{1} << 20, size_t{33} << 20})
    v.push_back(make(n, seed++));
  for (const Block& b : v) EXPECT_NE(b.p, nullptr);
  return v;
}

TEST(FaultInjection, CommitAndMapFailuresGiveEnomemThenRecover) {
  Faults f;
  std::vector<Block> live = witnesses();
  const uint64_t injected = g_injected.load();
  g_fail_commit = true;
  g_fail_map = true;
  // Each size class on its own: allocate until the memory the heap already
  // holds runs out. Bounded: the heap cannot grow, so every loop must end.
  for (size_t size : {size_t{16}, size_t{8192}, size_t{65536}, size_t{3} << 20, size_t{40} << 20}) {
    std::vector<Block> got;
    void* p = nullptr;
    for (int i = 0; i < 2000000; ++i) {
      errno = 0;
      p = ebb::do_malloc(size);
      if (!p) break;
      got.push_back(Block{static_cast<unsigned char*>(p), 0, 0});
      static_cast<unsigned char*>(p)[0] = 1;
    }
    ASSERT_EQ(p, nullptr) << "size " << size << ": allocation never failed";
    EXPECT_EQ(errno, ENOMEM) << "size " << size;
    // Every other entry point fails the same way.
    errno = 0;
    EXPECT_EQ(ebb::calloc_impl(1, size), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(ebb::aligned_path(size_t{1} << 21, size), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    // realloc that must move fails and leaves the block alone.
    errno = 0;
    EXPECT_EQ(ebb::realloc_impl(live[3].p, size_t{64} << 20), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(ebb_check_heap(), 0u);
    for (const Block& b : got) ebb::do_free(b.p);
    for (const Block& b : live) EXPECT_TRUE(intact(b)) << "block of " << b.n;
  }
  EXPECT_GT(g_injected.load(), injected);
  // Memory is back: everything works again, at every size.
  g_fail_commit = false;
  g_fail_map = false;
  std::vector<Block> again;
  uint32_t seed = 100;
  for (size_t n : {size_t{16}, size_t{8192}, size_t{65536}, size_t{3} << 20, size_t{40} << 20, size_t{96} << 20}) {
    again.push_back(make(n, seed++));
    ASSERT_NE(again.back().p, nullptr) << n;
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (const Block& b : again) EXPECT_TRUE(intact(b));
  for (const Block& b : live) EXPECT_TRUE(intact(b));
  free_all(&again);
  free_all(&live);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(FaultInjection, GrowingHeapFailsPartWayAndRecovers) {
  // Commit fails only: large blocks fall back to their own mappings, small
  // ones fail once the committed heap is used up.
  Faults f;
  std::vector<Block> live = witnesses();
  g_fail_commit = true;
  std::vector<Block> big;
  for (int i = 0; i < 64; ++i) {
    big.push_back(make(size_t{2} << 20, 500 + i));
    ASSERT_NE(big.back().p, nullptr) << "large allocations fall back to mappings";
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
  g_fail_commit = false;
  for (const Block& b : big) EXPECT_TRUE(intact(b));
  for (const Block& b : live) EXPECT_TRUE(intact(b));
  free_all(&big);
  free_all(&live);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// Many warm blocks of one order (more than a reporter batch): every other
// 64 KiB block stays live so the freed ones cannot merge.
void make_warm_blocks(std::vector<Block>* keep, unsigned n, uint32_t seed) {
  std::vector<Block> all;
  for (unsigned i = 0; i < 2 * n; ++i) all.push_back(make(65536, seed + i));
  for (unsigned i = 0; i < all.size(); ++i) {
    ASSERT_NE(all[i].p, nullptr);
    if (i % 2) ebb::do_free(all[i].p);
    else keep->push_back(all[i]);
  }
}

TEST(FaultInjection, ReportNowSurvivesMadviseFailures) {
  Faults f;
  std::vector<Block> live = witnesses();
  make_warm_blocks(&live, 200, 1000);
  ebb::thread_cache_flush_mine();
  const uint64_t before = madvise_failures();
  g_fail_advise = true;
  // Must return (a pass that retried failed blocks at once would spin for
  // ever with more than one batch of them) and give nothing back.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ebb_report_now(), 0u);
  const uint64_t given_before = reported_bytes();  // (nothing goes back while madvise fails)
  g_fail_advise = false;
  // The reporter thread may be in a round of its own that still saw the
  // failing hook (under valgrind the test outlasts the cold time): taking
  // the batch lock waits for that round, so the count below is final.
  { ebb::LockGuard round(ebb::g.reporter.batch_lock()); }
  const uint64_t failed = madvise_failures() - before;
  EXPECT_GE(failed, 5u);
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (const Block& b : live) EXPECT_TRUE(intact(b));
  // The failed blocks are still warm, usable and reportable: by this call,
  // or by the reporter thread since the failures stopped (it follows a mass
  // free every DELAY_MS / 4; under TSan the test outlasts that).
  ebb_report_now();
  EXPECT_GE(reported_bytes() - given_before, uint64_t{200} * 65536);
  EXPECT_EQ(madvise_failures() - before, failed);
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (const Block& b : live) EXPECT_TRUE(intact(b));
  free_all(&live);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(FaultInjection, ReporterThreadSurvivesMadviseFailures) {
  // Run with EBBMALLOC_COLD_MS=0 EBBMALLOC_DELAY_MS=5 (see CMakeLists.txt):
  // the background thread reports what is freed almost at once.
  Faults f;
  if (!ebb_options()->reporter || ebb_options()->cold_ms > 100) GTEST_SKIP() << "needs a fast reporter";
  std::vector<Block> live = witnesses();
  const uint64_t before = madvise_failures();
  g_fail_advise = true;
  // Liveness bounds only (the test waits for an event, it never times one).
  // The thread keeps retrying while madvise keeps failing.
  for (int round = 0; round < 6000 && madvise_failures() < before + 20; ++round) {
    make_warm_blocks(&live, 40, 2000 + round);
    ebb::thread_cache_flush_mine();
    usleep(5000);
  }
  ASSERT_GE(madvise_failures(), before + 20) << "the reporter stopped retrying";
  EXPECT_EQ(ebb_check_heap(), 0u);
  g_fail_advise = false;
  ebb_stats_t s0;
  ebb_stats(&s0);
  ebb_stats_t s = s0;
  for (int round = 0; round < 6000 && s.reported_bytes_total == s0.reported_bytes_total; ++round) {
    make_warm_blocks(&live, 40, 9000 + round);
    ebb::thread_cache_flush_mine();
    usleep(5000);
    ebb_stats(&s);
  }
  EXPECT_GT(s.reported_bytes_total, s0.reported_bytes_total) << "the reporter stopped after the errors";
  EXPECT_EQ(s.reporter_thread_running, 1u);
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (const Block& b : live) EXPECT_TRUE(intact(b));
  free_all(&live);
}

}  // namespace
