// The malloc family and C++ operators behave as the C library and the C++
// standard say, served by ebbmalloc (linked into this test).
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <new>
#include <random>
#include <thread>
#include <vector>

#include "test_util.h"

extern "C" void free_sized(void*, size_t);
extern "C" void free_aligned_sized(void*, size_t, size_t);

using namespace ebbtest;

namespace {

bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

void fill(void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>((seed * 131 + i * 7) >> 3);
}
bool check(const void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<unsigned char>((seed * 131 + i * 7) >> 3)) return false;
  return true;
}

TEST(Api, ServedByEbbmalloc) {
  void* p = malloc(20);
  ASSERT_NE(p, nullptr);
  // glibc would say 24; ebbmalloc rounds to its 32-byte class.
  EXPECT_EQ(malloc_usable_size(p), 32u);
  EXPECT_GT(stats().mapped_bytes, 0u);
  free(p);
}

TEST(Api, MallocSizesAlignmentAndUsableSize) {
  std::vector<std::pair<void*, size_t>> live;
  for (size_t n : {size_t{0}, size_t{1}, size_t{8}, size_t{16}, size_t{17}, size_t{100}, size_t{1000},
                   size_t{4096}, size_t{5000}, size_t{32768}, size_t{32769}, size_t{100000},
                   size_t{1} << 20, (size_t{3} << 20) + 5, size_t{40} << 20}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, 16)) << n;
    EXPECT_GE(malloc_usable_size(p), n);
    // Waste stays below one page for large objects.
    if (n > 32768) {
      EXPECT_LT(malloc_usable_size(p) - n, 4096u) << n;
    }
    fill(p, n, n);
    live.emplace_back(p, n);
  }
  for (auto& [p, n] : live) {
    EXPECT_TRUE(check(p, n, n)) << n;
    free(p);
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Api, MallocZeroIsUniqueAndFreeNullIsANoOp) {
  void* a = malloc(0);
  void* b = malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  free(a);
  free(b);
  free(nullptr);
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
}

TEST(Api, HugeSizesFailWithEnomem) {
  errno = 0;
  EXPECT_EQ(malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(malloc(SIZE_MAX / 2 + 1), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(reallocarray(nullptr, SIZE_MAX / 4, 8), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* p = malloc(10);
  errno = 0;
  EXPECT_EQ(realloc(p, SIZE_MAX - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  free(p);  // still valid after the failed realloc
  errno = 0;
  // More than the machine could ever map: the mapping fails, not the math.
  EXPECT_EQ(malloc(size_t{1} << 46), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Api, CallocIsZeroForEverySize) {
  for (size_t n : {size_t{1}, size_t{24}, size_t{4000}, size_t{32768}, size_t{70000}, size_t{5} << 20,
                   size_t{48} << 20}) {
    // Dirty memory of that size first, so calloc gets recycled memory.
    void* d = malloc(n);
    memset(d, 0xEE, n);
    free(d);
    auto* p = static_cast<unsigned char*>(calloc(1, n));
    ASSERT_NE(p, nullptr);
    for (size_t i = 0; i < n; ++i)
      if (p[i] != 0) FAIL() << "calloc(" << n << ") byte " << i << " is " << int(p[i]);
    free(p);
  }
}

TEST(Api, ReallocPreservesContents) {
  std::mt19937_64 rng(7);
  void* p = nullptr;
  size_t n = 0;
  for (int i = 0; i < 300; ++i) {
    size_t m = 1 + rng() % (i % 10 == 0 ? (size_t{6} << 20) : 70000);
    void* q = realloc(p, m);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(check(q, std::min(n, m), 99)) << "at step " << i;
    fill(q, m, 99);
    p = q;
    n = m;
  }
  // Into and out of the huge range (own mapping, grown with mremap).
  p = realloc(p, size_t{64} << 20);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(check(p, n, 99));
  fill(p, size_t{64} << 20, 3);
  p = realloc(p, size_t{96} << 20);
  EXPECT_TRUE(check(p, size_t{64} << 20, 3));
  p = realloc(p, 100);
  EXPECT_TRUE(check(p, 100, 3));
  free(p);
  // realloc(NULL, n) mallocs; realloc(p, 0) frees and returns NULL (glibc).
  p = realloc(nullptr, 10);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(realloc(p, 0), nullptr);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Api, ReallocShrinksLargeInPlace) {
  void* p = malloc(1 << 20);
  fill(p, 1 << 20, 5);
  void* q = realloc(p, 300000);
  EXPECT_EQ(q, p);
  EXPECT_TRUE(check(q, 300000, 5));
  EXPECT_LT(malloc_usable_size(q), 300000u + 4096u);
  free(q);
}

TEST(Api, ReallocGrowsLargeInPlaceIntoFreePagesAfterIt) {
  // A 5 MiB block (past the thread's cache of large blocks) is taken from
  // an 8 MiB buddy block or a run; grown by 64 KiB it stays where it is
  // when the pages after it are free, as the rest of such a block is (unless
  // another thread took them meanwhile: a few tries).
  constexpr size_t kSize = size_t{5} << 20, kMore = size_t{64} << 10;
  std::vector<void*> keep;
  int in_place = 0;
  for (int i = 0; i < 8; ++i) {
    char* a = static_cast<char*>(malloc(kSize));
    ASSERT_NE(a, nullptr);
    fill(a, kSize, 11 + i);
    void* q = realloc(a, kSize + kMore);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(check(q, kSize, 11 + i));
    EXPECT_GE(malloc_usable_size(q), kSize + kMore);
    in_place += q == a;
    keep.push_back(q);
  }
  EXPECT_GE(in_place, 4) << "grown in place";
  // Past what is free after it: moved, contents kept.
  fill(keep[0], kSize + kMore, 3);
  void* r = realloc(keep[0], size_t{24} << 20);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(check(r, kSize + kMore, 3));
  keep[0] = r;
  for (void* s : keep) free(s);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Api, AlignedAllocationFamily) {
  for (size_t a = 8; a <= (size_t{64} << 20); a <<= 1) {
    for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, size_t{40000}}) {
      void* p = nullptr;
      ASSERT_EQ(posix_memalign(&p, a, n), 0) << a << " " << n;
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      fill(p, n, a);
      void* q = aligned_alloc(a, n);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(aligned(q, a));
      void* r = memalign(a, n);
      ASSERT_NE(r, nullptr);
      EXPECT_TRUE(aligned(r, a));
      EXPECT_TRUE(check(p, n, a));
      free(p);
      free(q);
      free(r);
    }
  }
  void* v = valloc(10);
  EXPECT_TRUE(aligned(v, 4096));
  free(v);
  void* pv = pvalloc(10);
  EXPECT_TRUE(aligned(pv, 4096));
  EXPECT_GE(malloc_usable_size(pv), 4096u);
  free(pv);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Api, BadAlignmentsGetEinval) {
  void* p = reinterpret_cast<void*>(1);
  EXPECT_EQ(posix_memalign(&p, 3, 10), EINVAL);
  EXPECT_EQ(posix_memalign(&p, 4, 10), EINVAL);  // not a multiple of sizeof(void*)
  EXPECT_EQ(posix_memalign(&p, 0, 10), EINVAL);
  EXPECT_EQ(p, reinterpret_cast<void*>(1));
  errno = 0;
  EXPECT_EQ(aligned_alloc(24, 48), nullptr);
  EXPECT_EQ(errno, EINVAL);
  // memalign rounds a non-power-of-two alignment up, as glibc does.
  void* m = memalign(24, 48);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(aligned(m, 32));
  free(m);
  EXPECT_EQ(posix_memalign(&p, 64, SIZE_MAX - 100), ENOMEM);
}

TEST(Api, SizedFreesAndReallocarray) {
  void* p = malloc(100);
  free_sized(p, 100);
  void* q = aligned_alloc(256, 1000);
  free_aligned_sized(q, 256, 1000);
  auto* r = static_cast<int*>(reallocarray(nullptr, 100, sizeof(int)));
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 100; ++i) r[i] = i;
  r = static_cast<int*>(reallocarray(r, 10000, sizeof(int)));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(r[i], i);
  free(r);
}

TEST(Api, MallinfoAndTrimAreMeaningful) {
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) {
    v.push_back(malloc(100000));
    touch(v.back(), 100000);
  }
  struct mallinfo2 mi = mallinfo2();
  EXPECT_GE(mi.uordblks, 200u * 100000u);
  EXPECT_GE(mi.arena, mi.uordblks);
  for (void* p : v) free(p);
  EXPECT_EQ(malloc_trim(0), 1);  // the freed 20 MB are given back now
  mi = mallinfo2();
  EXPECT_GE(mi.keepcost, 18u * kMiB);
  struct mallinfo m1 = mallinfo();
  EXPECT_GT(m1.arena, 0);
  EXPECT_EQ(malloc_trim(0), 0);  // nothing left to give back
}

TEST(Api, CppOperators) {
  int* a = new int(5);
  EXPECT_EQ(*a, 5);
  delete a;
  int* arr = new int[1000];
  arr[999] = 1;
  delete[] arr;
  struct alignas(256) Big {
    char c[512];
  };
  Big* b = new Big;
  EXPECT_TRUE(aligned(b, 256));
  delete b;
  Big* bs = new Big[3];
  EXPECT_TRUE(aligned(bs, 256));
  delete[] bs;
  void* n = ::operator new(100, std::nothrow);
  ASSERT_NE(n, nullptr);
  ::operator delete(n, 100);
  void* al = ::operator new(100, std::align_val_t(4096));
  EXPECT_TRUE(aligned(al, 4096));
  ::operator delete(al, 100, std::align_val_t(4096));
}

TEST(Api, NewThrowsBadAllocAndNothrowReturnsNull) {
  EXPECT_THROW((void)::operator new(SIZE_MAX / 2), std::bad_alloc);
  EXPECT_THROW((void)::operator new[](SIZE_MAX / 2, std::align_val_t(64)), std::bad_alloc);
  EXPECT_EQ(::operator new(SIZE_MAX / 2, std::nothrow), nullptr);
}

int g_handler_calls = 0;
void release_reserve() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);
}

TEST(Api, NewCallsTheNewHandler) {
  g_handler_calls = 0;
  std::set_new_handler(&release_reserve);
  EXPECT_THROW((void)::operator new(SIZE_MAX / 2), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  std::set_new_handler(nullptr);
}

TEST(ApiDeathTest, DoubleFreeAborts) {
  EXPECT_DEATH(
      {
        void* p = malloc(64);
        free(p);
        free(p);
      },
      "double free");
  EXPECT_DEATH(
      {
        void* p = malloc(1 << 20);
        free(p);
        free(p);
      },
      "double free|invalid pointer");
}

TEST(ApiDeathTest, InvalidFreesAbort) {
  EXPECT_DEATH(
      {
        int x;
        free(&x);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        // Checked at the free itself (test/misuse_probes.cpp has every
        // kind of bad pointer).
        char* p = static_cast<char*>(malloc(64));
        free(p + 16);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(malloc(1 << 20));
        free(p + 4096);
      },
      "invalid pointer");
}

TEST(ApiDeathTest, DoubleFreeCaughtAtTheSlab) {
  // The second free of an object that already went back to its slab is
  // caught when the thread cache hands it back (here at malloc_trim).
  EXPECT_DEATH(
      {
        void* a = malloc(48);
        void* b = malloc(48);  // keeps the slab alive
        free(a);
        malloc_trim(0);
        free(a);
        malloc_trim(0);
        free(b);
      },
      "double free");
}

// Absurd alignments and sizes beyond the ones above: every entry point
// fails cleanly (NULL and errno, or the error code) and the heap is intact.
TEST(Api, AbsurdAlignmentsAndSizes) {
  void* p = reinterpret_cast<void*>(1);
  volatile size_t giant = size_t{1} << 62, all_ones = SIZE_MAX;
  EXPECT_EQ(posix_memalign(&p, giant, 1), ENOMEM);
  EXPECT_EQ(posix_memalign(&p, all_ones, 1), EINVAL);
  EXPECT_EQ(p, reinterpret_cast<void*>(1));
  errno = 0;
  EXPECT_EQ(aligned_alloc(giant, 1), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(aligned_alloc(0, 16), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(memalign(all_ones, 1), nullptr);  // rounds up past SIZE_MAX
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(valloc(all_ones), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(pvalloc(all_ones - 100), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(aligned_alloc(4096, all_ones - 4095), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(all_ones, all_ones), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // Zero-sized requests are real, distinct, freeable objects.
  void* z1 = calloc(all_ones, 0);
  void* z2 = reallocarray(nullptr, 0, all_ones);
  ASSERT_NE(z1, nullptr);
  ASSERT_NE(z2, nullptr);
  EXPECT_NE(z1, z2);
  free(z1);
  free(z2);
  EXPECT_EQ(::operator new(all_ones, std::nothrow), nullptr);
  EXPECT_EQ(::operator new(64, std::align_val_t(giant), std::nothrow), nullptr);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// Misuse that must abort with a message, each in a child process (death
// tests). Double frees and interior/stack frees of small and large blocks
// are above; these add huge blocks, foreign memory and realloc.
TEST(ApiDeathTest, FreesOfForeignAndHugePointersAbort) {
  static char global_buf[256];
  EXPECT_DEATH(free(global_buf + 16), "invalid pointer");
  EXPECT_DEATH(
      {
        void* m = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        free(m);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        char* h = static_cast<char*>(malloc(size_t{40} << 20));  // own mapping
        free(h + 4096);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        void* h = malloc(size_t{40} << 20);
        free(h);
        free(h);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        int x;
        (void)malloc_usable_size(&x);
      },
      "invalid pointer");
}

TEST(ApiDeathTest, ReallocOfFreedOrForeignPointerAborts) {
  EXPECT_DEATH(
      {
        void* p = malloc(1 << 20);
        free(p);
        p = realloc(p, 2 << 20);
      },
      "double free|invalid pointer");
  EXPECT_DEATH(
      {
        void* h = malloc(size_t{40} << 20);
        free(h);
        h = realloc(h, size_t{50} << 20);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        int x[4];
        void* q = realloc(x, 64);
        free(q);
      },
      "invalid pointer");
  EXPECT_DEATH(
      {
        // A freed small object still at the head of its thread cache.
        void* p = malloc(64);
        free(p);
        p = realloc(p, 100000);
      },
      "realloc\\(\\): pointer to freed memory");
}

TEST(ApiDeathTest, DoubleFreeOfALargeBlockInTheThreadCache) {
  EXPECT_DEATH(
      {
        void* p = malloc(100000);
        free(p);  // kept in this thread's large-block cache
        free(p);
      },
      "double free");
}

TEST(Api, LargeBlocksOfUpTo4MiBWaitInTheThreadCache) {
  if (ebb_options()->harden) GTEST_SKIP() << "the hardened mode keeps no large blocks in thread caches";
  // A freed 4 MiB block stays in this thread's cache (counted in cached_bytes,
  // not given to the heap) and is the next 4 MiB request's block.
  constexpr size_t k4 = size_t{4} << 20;
  char* p = static_cast<char*>(malloc(k4));
  ASSERT_NE(p, nullptr);
  fill(p, k4, 4);
  const uint64_t before = stats().cached_bytes;
  free(p);
  EXPECT_GE(stats().cached_bytes, before + k4);
  char* q = static_cast<char*>(malloc(k4));
  EXPECT_EQ(q, p);
  EXPECT_TRUE(check(q, k4, 4));  // the same block, not a fresh or zeroed one
  free(q);
  // Larger blocks go back to the heap: the cache holds 4 MiB at most.
  char* r = static_cast<char*>(malloc(k4 + (1 << 20)));
  ASSERT_NE(r, nullptr);
  const uint64_t held = stats().cached_bytes;
  free(r);
  EXPECT_LT(stats().cached_bytes, held + k4 + (1 << 20));
  free(malloc(k4));  // (leave the cache as it was: one 4 MiB block)
}

TEST(Api, LargeBlocksAreReusedFromTheThreadCacheAndStayCorrect) {
  // The same size again gets the same block back, without the heap.
  char* p = static_cast<char*>(malloc(100000));
  ASSERT_NE(p, nullptr);
  memset(p, 0x11, 100000);
  free(p);
  char* q = static_cast<char*>(malloc(100000));
  EXPECT_EQ(q, p);
  EXPECT_GE(malloc_usable_size(q), 100000u);
  // calloc of a cached (dirty) block is zeroed.
  free(q);
  char* z = static_cast<char*>(calloc(1, 100000));
  ASSERT_EQ(z, p);
  for (size_t i = 0; i < 100000; ++i) ASSERT_EQ(z[i], 0) << "at " << i;
  // A much smaller request does not take a much larger cached block.
  free(z);
  char* small = static_cast<char*>(malloc(40000));
  EXPECT_NE(small, p);
  EXPECT_LT(malloc_usable_size(small), 100000u);
  free(small);
  // Blocks freed by another thread are cached there, and go back to the
  // heap when that thread exits: nothing is lost.
  std::vector<char*> blocks;
  for (int i = 0; i < 32; ++i) blocks.push_back(static_cast<char*>(malloc(200000)));
  std::thread t([&] {
    for (char* b : blocks) free(b);
  });
  t.join();
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Api, OptionsAndVersion) {
  const ebb_options_t* o = ebb_options();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->batch, 32u);
  EXPECT_STREQ(ebb_version(), "ebbmalloc 0.1.0");
  ebb_stats_t s;
  EXPECT_EQ(ebb_stats(&s), 0);
  EXPECT_EQ(s.version, unsigned(EBB_STATS_VERSION));
  EXPECT_EQ(ebb_stats(nullptr), -1);
}

TEST(Api, RandomSequenceKeepsHeapConsistent) {
  std::mt19937_64 rng(2024);
  std::vector<std::pair<char*, size_t>> live;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      size_t n = rng() % 4 == 0 ? rng() % (1 << 20) : rng() % 2048;
      char* p = static_cast<char*>(malloc(n));
      ASSERT_NE(p, nullptr);
      if (n) p[0] = p[n - 1] = static_cast<char>(n);
      live.emplace_back(p, n);
    } else {
      size_t k = rng() % live.size();
      auto [p, n] = live[k];
      if (n) {
        ASSERT_EQ(p[0], static_cast<char>(n));
        ASSERT_EQ(p[n - 1], static_cast<char>(n));
      }
      free(p);
      live[k] = live.back();
      live.pop_back();
    }
  }
  EXPECT_EQ(ebb_check_heap(), 0u);
  for (auto& [p, n] : live) free(p);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

}  // namespace
