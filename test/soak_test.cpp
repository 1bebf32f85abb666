// Stress and soak: threads x mixed sizes x cross-thread frees x fork while
// allocating x thread create/exit churn, with every block's contents
// verified; RSS bounded over many thread lifetimes; no deadlock in many
// forks from a busy multi-threaded process.
//
// Built twice: soak_test links libebbmalloc (the process's malloc), and
// core_stress_test (EBB_SOAK_CORE) calls the internal layers directly, so
// that ThreadSanitizer can instrument the allocator without interposing it.
//
// Bounds from the environment (defaults are the short CI run):
//   EBB_SOAK_SECONDS  mixed stress duration (2)
//   EBB_SOAK_CYCLES   thread create/exit cycles (10000)
//   EBB_SOAK_FORKS    forks from the busy process (1000)
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "ebbmalloc.h"
#include "pattern.h"
#include "test_util.h"

#ifdef EBB_SOAK_CORE
#include "api/malloc_api.h"
#endif

#if defined(__SANITIZE_THREAD__)
#define EBB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EBB_TSAN 1
#endif
#endif

namespace {

// ---- the allocator under test --------------------------------------------------

#ifdef EBB_SOAK_CORE
void* a_malloc(size_t n) { return ebb::do_malloc(n); }
void a_free(void* p) { ebb::do_free(p); }
void* a_realloc(void* p, size_t n) { return ebb::realloc_impl(p, n); }
void* a_memalign(size_t a, size_t n) { return ebb::aligned_path(a, n); }
#else
void* a_malloc(size_t n) { return malloc(n); }
void a_free(void* p) { free(p); }
void* a_realloc(void* p, size_t n) { return realloc(p, n); }
void* a_memalign(size_t a, size_t n) { return aligned_alloc(a, n); }
#endif

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  return v && *v ? strtoull(v, nullptr, 10) : dflt;
}

// ---- blocks --------------------------------------------------------------------

struct Block {
  void* p = nullptr;
  size_t n = 0;
  uint32_t seed = 0;
};

std::atomic<uint32_t> g_seed{1};
std::atomic<uint64_t> g_corrupt{0};
std::atomic<uint64_t> g_ops{0};
// Largest block the mixed sizes include; the fork and churn tests lower it
// (their cost is then in forks and thread lifetimes, not in filling bytes).
size_t g_max_size = size_t{34} << 20;

size_t pick_size(std::mt19937_64& rng) {
  const unsigned k = rng() % 1000;
  if (k < 700) return rng() % 1024;
  if (k < 900) return rng() % 32768;
  if (k < 990) return 32769 + rng() % (1 << 20);
  size_t n = k < 999 ? (size_t{1} << 20) + rng() % (size_t{3} << 20)
                     : (size_t{33} << 20) + rng() % (size_t{1} << 20);  // own mapping
  return n < g_max_size ? n : rng() % g_max_size;
}

Block make(std::mt19937_64& rng) {
  Block b;
  b.n = pick_size(rng);
  b.seed = g_seed.fetch_add(1, std::memory_order_relaxed);
  b.p = rng() % 16 == 0 ? a_memalign(size_t{64} << (rng() % 8), b.n) : a_malloc(b.n);
  if (!b.p) {
    g_corrupt.fetch_add(1);  // nothing here should run out of memory
    b.n = 0;
    return b;
  }
  ebbtest::pattern_fill(b.p, b.seed, 0, b.n);
  return b;
}

void drop(Block& b) {
  if (!b.p) return;
  if (!ebbtest::pattern_ok(b.p, b.seed, b.n)) g_corrupt.fetch_add(1);
  a_free(b.p);
  b = Block{};
}

void grow(Block& b, std::mt19937_64& rng) {
  if (!b.p) return;
  const size_t n = pick_size(rng);
  if (!ebbtest::pattern_ok(b.p, b.seed, b.n)) g_corrupt.fetch_add(1);
  void* q = a_realloc(b.p, n);
  if (!q) {
    if (n) g_corrupt.fetch_add(1);
    else b = Block{};  // realloc(p, 0) freed it
    return;
  }
  const size_t keep = b.n < n ? b.n : n;
  if (!ebbtest::pattern_ok(q, b.seed, keep)) g_corrupt.fetch_add(1);
  ebbtest::pattern_fill(q, b.seed, keep, n);
  b.p = q;
  b.n = n;
}

// Blocks handed between threads: whoever takes one verifies and frees it.
struct Exchange {
  static constexpr unsigned kShards = 16, kPerShard = 64;
  struct Shard {
    std::mutex m;
    Block slots[kPerShard];
  } shards[kShards];

  // Puts b in a random slot and takes out what was there.
  Block swap(Block b, std::mt19937_64& rng) {
    Shard& s = shards[rng() % kShards];
    std::lock_guard<std::mutex> l(s.m);
    Block& slot = s.slots[rng() % kPerShard];
    Block out = slot;
    slot = b;
    return out;
  }
  void drain() {
    for (Shard& s : shards) {
      std::lock_guard<std::mutex> l(s.m);
      for (Block& b : s.slots) drop(b);
    }
  }
};

// One step of a worker: allocate, free, realloc or hand a block across.
void step(std::vector<Block>& mine, Exchange& ex, std::mt19937_64& rng) {
  const unsigned k = rng() % 10;
  if (mine.size() < 64 && k < 4) {
    mine.push_back(make(rng));
  } else if (!mine.empty() && k < 6) {
    const size_t i = rng() % mine.size();
    drop(mine[i]);
    mine[i] = mine.back();
    mine.pop_back();
  } else if (!mine.empty() && k < 7) {
    grow(mine[rng() % mine.size()], rng);
  } else if (k < 9) {
    Block give;
    if (mine.empty() || rng() % 2) {
      give = make(rng);
    } else {
      give = mine.back();
      mine.pop_back();
    }
    Block got = ex.swap(give, rng);
    drop(got);
  }
  g_ops.fetch_add(1, std::memory_order_relaxed);
}

#ifndef EBB_TSAN  // (no fork under TSan)
// A child of a fork: its own inherited blocks are intact, the allocator
// works (small, large, huge, threads) and the heap is consistent.
int child_main(std::vector<Block>& inherited) {
  alarm(60);  // a deadlocked child dies of SIGALRM and the parent sees it
  for (Block& b : inherited)
    if (b.p && !ebbtest::pattern_ok(b.p, b.seed, b.n)) return 3;
  std::mt19937_64 rng(getpid());
  std::vector<Block> v;
  for (int i = 0; i < 32; ++i) v.push_back(make(rng));
  for (Block& b : v) drop(b);
  for (Block& b : inherited) drop(b);
  if (g_corrupt.load()) return 4;
  if (ebb_check_heap() != 0) return 5;
  return 0;
}
#endif

// ---- tests ---------------------------------------------------------------------

TEST(Soak, ThreadsMixedSizesCrossFreesForksAndChurn) {
  const uint64_t seconds = env_u64("EBB_SOAK_SECONDS", 2);
  const unsigned nthreads = 4;
  Exchange ex;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> forks{0}, churned{0}, bad_children{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < nthreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      std::vector<Block> mine;
      while (!stop.load(std::memory_order_relaxed)) step(mine, ex, rng);
      for (Block& b : mine) drop(b);
    });
  }
  // Thread churn: short-lived threads that allocate, swap and exit with
  // blocks still in the exchange (freed later by others).
  workers.emplace_back([&] {
    std::mt19937_64 rng(7);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t s = rng();
      std::thread([&ex, s] {
        std::mt19937_64 r(s);
        std::vector<Block> mine;
        for (int i = 0; i < 200; ++i) step(mine, ex, r);
        for (Block& b : mine) drop(b);
      }).join();
      churned.fetch_add(1);
    }
  });
#ifndef EBB_TSAN
  // Fork while the others allocate.
  workers.emplace_back([&] {
    std::mt19937_64 rng(9);
    std::vector<Block> mine;
    while (!stop.load(std::memory_order_relaxed)) {
      while (mine.size() < 32) mine.push_back(make(rng));
      const pid_t pid = fork();
      if (pid == 0) _exit(child_main(mine));
      int st = 0;
      if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad_children.fetch_add(1);
      forks.fetch_add(1);
      drop(mine[rng() % mine.size()]);
      mine.erase(std::remove_if(mine.begin(), mine.end(), [](const Block& b) { return !b.p; }), mine.end());
      usleep(20000);
    }
    for (Block& b : mine) drop(b);
  });
#endif
  // Forced reporter passes now and then, so reported memory is reused
  // under the workers' feet.
  const uint64_t end = ebbtest::now_ms() + seconds * 1000;
  while (ebbtest::now_ms() < end) {
    ebbtest::sleep_ms(200);
    ebb_report_now();
  }
  stop = true;
  for (std::thread& w : workers) w.join();
  ex.drain();
  EXPECT_EQ(g_corrupt.load(), 0u) << "blocks lost bytes or allocation failed";
  EXPECT_EQ(bad_children.load(), 0u) << "of " << forks.load() << " forks";
  EXPECT_EQ(ebb_check_heap(), 0u);
  EXPECT_GT(churned.load(), 0u);
  printf("soak: %llu s, %llu operations, %llu threads churned, %llu forks\n",
         static_cast<unsigned long long>(seconds), static_cast<unsigned long long>(g_ops.load()),
         static_cast<unsigned long long>(churned.load()), static_cast<unsigned long long>(forks.load()));
}

TEST(Soak, RssBoundedOverThreadCreateExitCycles) {
  const uint64_t cycles = env_u64("EBB_SOAK_CYCLES", 10000);
  const unsigned width = 4;  // threads alive at once
  g_max_size = size_t{256} << 10;
  Exchange ex;
  uint64_t warm_rss = 0, max_after_warm = 0, done = 0;
  ebb_stats_t s0 = ebbtest::stats();
  while (done < cycles) {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < width; ++i) {
      const uint64_t seed = done + i;
      ts.emplace_back([&ex, seed] {
        std::mt19937_64 rng(seed);
        std::vector<Block> mine;
        // Fill several size classes of this thread's cache, hand some blocks
        // to the exchange, exit with a non-empty cache.
        for (int k = 0; k < 64; ++k) mine.push_back(make(rng));
        for (int k = 0; k < 8; ++k) {
          Block got = ex.swap(mine[k], rng);
          mine[k] = Block{};
          drop(got);
        }
        for (size_t k = 8; k < mine.size(); ++k) drop(mine[k]);
      });
    }
    for (std::thread& t : ts) t.join();
    done += width;
    if (done % 1000 == 0) {
      ebb_report_now();
      // What the allocator keeps beyond the bytes the program holds (the
      // exchange's content varies with the random sizes).
      const ebb_stats_t st = ebbtest::stats();
      const uint64_t rss = ebbtest::rss_bytes();
      const uint64_t overhead = rss > st.live_bytes ? rss - st.live_bytes : 0;
      if (done == 1000) warm_rss = overhead;
      if (done > 1000 && overhead > max_after_warm) max_after_warm = overhead;
      printf("cycles %llu rss %llu KiB live %llu cached %llu warm %llu meta %llu resident %llu caches %llu\n",
             (unsigned long long)done, (unsigned long long)rss >> 10, (unsigned long long)st.live_bytes >> 10,
             (unsigned long long)st.cached_bytes >> 10, (unsigned long long)st.free_warm_bytes >> 10,
             (unsigned long long)st.metadata_bytes >> 10, (unsigned long long)st.resident_bytes >> 10,
             (unsigned long long)st.thread_caches);
    }
  }
  ex.drain();
  EXPECT_EQ(g_corrupt.load(), 0u);
  EXPECT_EQ(ebb_check_heap(), 0u);
  // Caches of exited threads are returned: no growth with the cycle count.
  const ebb_stats_t s1 = ebbtest::stats();
  EXPECT_LE(s1.thread_caches, s0.thread_caches + 1);
  // (Under TSan the RSS is mostly its shadow memory, which says nothing of
  // the allocator.)
#ifdef EBB_TSAN
  if (false) {
#else
  if (cycles >= 2000) {
#endif
    EXPECT_LE(max_after_warm, warm_rss + 16 * ebbtest::kMiB)
        << "RSS - live after 1000 cycles " << warm_rss << ", at most " << max_after_warm << " later";
  }
  printf("churn: %llu thread create/exit cycles, RSS - live bytes after 1000: %llu KiB, max after: %llu KiB\n",
         static_cast<unsigned long long>(done), static_cast<unsigned long long>(warm_rss >> 10),
         static_cast<unsigned long long>(max_after_warm >> 10));
}

#ifndef EBB_TSAN
TEST(Soak, ForksFromABusyProcessNeverDeadlock) {
  const uint64_t nforks = env_u64("EBB_SOAK_FORKS", 1000);
  // Small and large blocks (locks of every layer busy), few bytes to copy
  // on write after each fork.
  g_max_size = size_t{64} << 10;
  Exchange ex;
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (unsigned t = 0; t < 3; ++t) {
    busy.emplace_back([&, t] {
      std::mt19937_64 rng(50 + t);
      std::vector<Block> mine;
      while (!stop.load(std::memory_order_relaxed)) step(mine, ex, rng);
      for (Block& b : mine) drop(b);
    });
  }
  uint64_t ok = 0, bad = 0;
  std::mt19937_64 rng(77);
  std::vector<Block> mine;
  for (uint64_t i = 0; i < nforks; ++i) {
    while (mine.size() < 16) mine.push_back(make(rng));
    if (i % 50 == 0) ebb_report_now();
    const pid_t pid = fork();
    if (pid == 0) _exit(child_main(mine));
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      ++ok;
    } else {
      ++bad;
      if (bad <= 5)
        fprintf(stderr, "fork %llu: status %#x%s\n", static_cast<unsigned long long>(i), st,
                WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (deadlocked child)" : "");
    }
    drop(mine[i % mine.size()]);
    mine.erase(std::remove_if(mine.begin(), mine.end(), [](const Block& b) { return !b.p; }), mine.end());
  }
  stop = true;
  for (std::thread& t : busy) t.join();
  for (Block& b : mine) drop(b);
  ex.drain();
  EXPECT_EQ(ok, nforks);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(g_corrupt.load(), 0u);
  EXPECT_EQ(ebb_check_heap(), 0u);
  printf("forks: %llu from a process with 3 busy threads, %llu children clean\n",
         static_cast<unsigned long long>(nforks), static_cast<unsigned long long>(ok));
}
#endif

}  // namespace
