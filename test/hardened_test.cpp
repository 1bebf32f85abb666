// The hardened mode (EBBMALLOC_HARDEN=1, set by ctest for this suite) keeps
// the malloc contract while it checks: sizes, alignment, contents across
// realloc, zeroed calloc, threads; freed objects wait in a quarantine that
// the reporter drains once they are cold (so their memory can be given
// back); freed memory reads as zero; zero-size allocations are unique.
// What it detects is in misuse_probes.cpp.
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace ebbtest;

namespace {

class Hardened : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ebb_options()->harden) GTEST_SKIP() << "run with EBBMALLOC_HARDEN=1";
  }
};

TEST_F(Hardened, UsableSizeIsTheRequestedSize) {
  for (size_t n : {size_t{1}, size_t{20}, size_t{64}, size_t{1000}, size_t{32760}, size_t{32761}, size_t{100000},
                   size_t{5} << 20, size_t{40} << 20}) {
    char* p = static_cast<char*>(malloc(n));
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(malloc_usable_size(p), n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    memset(p, 0x5A, n);  // every byte the program asked for is usable
    free(p);
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST_F(Hardened, AlignedAllocationsAreAlignedAndChecked) {
  for (size_t a : {size_t{32}, size_t{64}, size_t{4096}, size_t{65536}, size_t{1} << 20})
    for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{200000}}) {
      void* p = nullptr;
      ASSERT_EQ(posix_memalign(&p, a, n), 0) << a << " " << n;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % a, 0u) << a << " " << n;
      EXPECT_EQ(malloc_usable_size(p), n);
      memset(p, 0x33, n);
      free(p);
    }
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST_F(Hardened, ReallocKeepsContentsAcrossEveryKindOfBlock) {
  char* p = static_cast<char*>(malloc(10));
  for (size_t i = 0; i < 10; ++i) p[i] = static_cast<char>(i);
  size_t have = 10;
  for (size_t n : {size_t{100}, size_t{40000}, size_t{3} << 20, size_t{40} << 20, size_t{50}, size_t{0x1000}}) {
    char* q = static_cast<char*>(realloc(p, n));
    ASSERT_NE(q, nullptr) << n;
    EXPECT_NE(q, p) << "the hardened realloc always moves (the old block goes to the quarantine)";
    for (size_t i = 0; i < (have < n ? have : n); ++i) ASSERT_EQ(q[i], static_cast<char>(i)) << n << " at " << i;
    for (size_t i = 0; i < n; ++i) q[i] = static_cast<char>(i);
    p = q;
    have = n;
    EXPECT_EQ(malloc_usable_size(p), n);
  }
  EXPECT_EQ(realloc(p, 0), nullptr);  // frees, like glibc
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST_F(Hardened, CallocIsZeroAndFreedMemoryReadsAsZero) {
  for (size_t n : {size_t{24}, size_t{4000}, size_t{100000}}) {
    char* p = static_cast<char*>(calloc(1, n));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(p[i], 0) << n << " at " << i;
    memset(p, 0x77, n);
    free(p);
  }
  // A small object is zeroed when it is freed, so what it held cannot leak
  // into the next owner: the next malloc of its size reads zero.
  char* p = static_cast<char*>(malloc(48));
  memset(p, 0x77, 48);
  free(p);
  for (int i = 0; i < 64; ++i) {
    char* q = static_cast<char*>(malloc(48));
    for (size_t k = 0; k < 48; ++k) ASSERT_EQ(q[k], 0);
    free(q);
  }
}

TEST_F(Hardened, FreedObjectsAreNotReusedAtOnce) {
  // The quarantine delays reuse: the same slot does not come back for the
  // next allocations of its class (the slot choice is random too).
  void* p = malloc(200);
  free(p);
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) {
    v.push_back(malloc(200));
    EXPECT_NE(v.back(), p) << "reused after " << i << " allocations";
  }
  for (void* q : v) free(q);
}

TEST_F(Hardened, ZeroSizeAllocationsAreUniqueAndFreeable) {
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(malloc_usable_size(p), 0u);
    v.push_back(p);
  }
  std::vector<void*> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "two zero-size allocations share an address";
  char* grown = static_cast<char*>(realloc(v[0], 10));
  ASSERT_NE(grown, nullptr);
  memset(grown, 1, 10);
  v[0] = grown;
  for (void* p : v) free(p);
  void* c = calloc(0, 8);
  ASSERT_NE(c, nullptr);
  free(c);
}

TEST_F(Hardened, TheQuarantineIsDrainedOnceCold) {
  if (!ebb_options()->reporter) GTEST_SKIP() << "needs the reporter thread";
  // 500 objects of one class (fewer than its quarantine holds: 256 KiB of
  // 320-byte slots) stay quarantined, counted as live, right after they are
  // freed; then the reporter moves them to their slabs.
  const uint64_t live0 = stats().live_bytes;
  std::vector<void*> v;
  for (int i = 0; i < 500; ++i) v.push_back(malloc(300));
  for (void* p : v) free(p);
  const uint64_t held = stats().live_bytes;
  EXPECT_GE(held, live0 + 500 * 300) << "freed objects wait in the quarantine";
  const uint64_t t0 = now_ms();
  uint64_t live = held;
  while (now_ms() - t0 < 20000 && live >= live0 + 500 * 300) {
    sleep_ms(100);
    live = stats().live_bytes;
  }
  EXPECT_LT(live, live0 + 500 * 300) << "the quarantine was not drained (" << live << " live bytes)";
  printf("hardened: %llu bytes quarantined, drained after %llu ms\n", static_cast<unsigned long long>(held - live0),
         static_cast<unsigned long long>(now_ms() - t0));
}

TEST_F(Hardened, ReportNowDrainsTheQuarantineAndGivesMemoryBack) {
  // 64 MiB of 2 KiB objects, freed: most go to their slabs at once (the
  // quarantine holds 256 KiB per class); ebb_report_now drains the rest.
  std::vector<char*> v;
  for (int i = 0; i < 32768; ++i) {
    v.push_back(static_cast<char*>(malloc(2000)));
    touch(v.back(), 2000);
  }
  const uint64_t peak = rss_bytes();
  for (char* p : v) free(p);
  ebb_report_now();
  const uint64_t after = rss_bytes();
  printf("hardened: peak %.1f MiB -> %.1f MiB after ebb_report_now\n", peak / 1048576.0, after / 1048576.0);
  EXPECT_LT(after + (48 << 20), peak);
}

TEST_F(Hardened, ThreadsFreeEachOthersBlocks) {
  std::vector<void*> blocks(20000);
  std::thread producer([&] {
    std::mt19937 rng(7);
    for (auto& b : blocks) {
      const size_t n = rng() % 4 == 0 ? 40000 + rng() % 100000 : 1 + rng() % 3000;
      b = malloc(n);
      memset(b, 0x11, n);
    }
  });
  producer.join();
  std::thread a([&] {
    for (size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);
  });
  std::thread b([&] {
    for (size_t i = 1; i < blocks.size(); i += 2) free(blocks[i]);
  });
  a.join();
  b.join();
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST_F(Hardened, RandomSequenceKeepsHeapConsistent) {
  std::mt19937_64 rng(2024);
  std::vector<std::pair<char*, size_t>> live;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      const size_t n = rng() % 8 == 0 ? rng() % (1 << 20) : rng() % 2048;
      char* p = static_cast<char*>(rng() % 4 ? malloc(n) : calloc(1, n));
      ASSERT_NE(p, nullptr);
      if (n) p[0] = p[n - 1] = static_cast<char>(n);
      live.emplace_back(p, n);
    } else {
      const size_t k = rng() % live.size();
      auto [p, n] = live[k];
      if (n) {
        ASSERT_EQ(p[0], static_cast<char>(n));
        ASSERT_EQ(p[n - 1], static_cast<char>(n));
      }
      if (rng() % 4 == 0) {
        const size_t m = rng() % 70000;
        char* q = static_cast<char*>(realloc(p, m));
        ASSERT_TRUE(q || m == 0);
        if (q && m) {
          if (n && m >= n) {
            ASSERT_EQ(q[n - 1], static_cast<char>(n));
          }
          q[0] = q[m - 1] = static_cast<char>(m);
          live[k] = {q, m};
          continue;
        }
      } else {
        free(p);
      }
      live[k] = live.back();
      live.pop_back();
    }
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (auto& [p, n] : live) free(p);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

}  // namespace
