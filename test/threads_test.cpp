// Threads: cross-thread frees, caches returned at thread exit, idle caches
// drained, and fork while other threads allocate.
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace ebbtest;

namespace {

struct Obj {
  uint64_t tag;
  size_t size;
};

TEST(Threads, CrossThreadFreesKeepContents) {
  constexpr int kProducers = 4, kPerThread = 50000;
  std::vector<std::vector<Obj*>> queues(kProducers);
  std::vector<std::mutex> locks(kProducers);
  std::atomic<int> done{0};
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kProducers; ++t)
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        size_t n = sizeof(Obj) + rng() % 3000;
        auto* o = static_cast<Obj*>(malloc(n));
        o->tag = (uint64_t(t) << 32) | uint64_t(i);
        o->size = n;
        memset(reinterpret_cast<char*>(o) + sizeof(Obj), static_cast<int>(o->tag & 0xff), n - sizeof(Obj));
        std::lock_guard<std::mutex> g(locks[(t + 1) % kProducers]);
        queues[(t + 1) % kProducers].push_back(o);
      }
      done++;
    });
  // Consumers free what the neighbouring producer made.
  std::vector<std::thread> cs;
  for (int t = 0; t < kProducers; ++t)
    cs.emplace_back([&, t] {
      for (;;) {
        std::vector<Obj*> batch;
        {
          std::lock_guard<std::mutex> g(locks[t]);
          batch.swap(queues[t]);
        }
        for (Obj* o : batch) {
          auto* b = reinterpret_cast<unsigned char*>(o) + sizeof(Obj);
          for (size_t k = 0; k < o->size - sizeof(Obj); k += 97)
            if (b[k] != (o->tag & 0xff)) bad++;
          free(o);
        }
        if (batch.empty() && done.load() == kProducers) {
          std::lock_guard<std::mutex> g(locks[t]);
          if (queues[t].empty()) return;
        }
      }
    });
  for (auto& t : ts) t.join();
  for (auto& t : cs) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Threads, ThreadExitReturnsItsCache) {
  const uint64_t caches_before = stats().thread_caches;
  for (int round = 0; round < 10; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
      ts.emplace_back([] {
        std::vector<void*> v;
        for (int i = 0; i < 2000; ++i) v.push_back(malloc(16 + i % 2000));
        for (void* p : v) free(p);  // these stay in the thread's cache...
      });
    for (auto& t : ts) t.join();
  }
  // ...until the thread exits.
  const ebb_stats_t s = stats();
  EXPECT_EQ(s.thread_caches, caches_before);
}

// Whether the reporter drains a thread cache (any) within `ms` from now.
bool a_cache_is_drained_within(uint64_t ms) {
  const uint64_t drains0 = stats().cache_drains, t0 = now_ms();
  while (now_ms() - t0 < ms) {
    sleep_ms(100);
    if (stats().cache_drains > drains0) return true;
  }
  return false;
}

TEST(Threads, IdleThreadCacheIsDrainedByTheReporter) {
  if (!ebb_options()->reporter) GTEST_SKIP();
  if (ebb_options()->harden) GTEST_SKIP() << "the hardened mode keeps nothing in thread caches";
  std::atomic<bool> stop{false};
  std::atomic<bool> filled{false};
  std::thread idle([&] {
    std::vector<void*> v;
    for (int i = 0; i < 200; ++i) v.push_back(malloc(8192));
    for (void* p : v) free(p);  // ~1 MiB cached in this thread
    filled = true;
    while (!stop) sleep_ms(10);  // idle: no allocator calls
  });
  while (!filled) sleep_ms(1);
  const bool drained = a_cache_is_drained_within(8000);
  stop = true;
  idle.join();
  EXPECT_TRUE(drained) << "an idle thread's cache must be drained within a bounded time";
}

TEST(Threads, ForkWhileOtherThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<void*> v(64, nullptr);
      while (!stop) {
        size_t k = rng() % v.size();
        free(v[k]);
        v[k] = malloc(rng() % 2 ? rng() % 512 : rng() % 200000);
      }
      for (void* p : v) free(p);
    });
  int failures = 0;
  for (int i = 0; i < 40; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);  // a deadlock in the child fails the test instead of hanging it
      std::vector<void*> v;
      for (int k = 0; k < 1000; ++k) v.push_back(malloc(16 + k * 37 % 100000));
      for (void* p : v) free(p);
      void* big = malloc(8 << 20);
      touch(big, 8 << 20);
      free(big);
      const size_t given = ebb_report_now();
      if (ebb_check_heap() != 0) _exit(3);
      _exit(given > 0 ? 0 : 2);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      ++failures;
      fprintf(stderr, "fork child %d: %s %d\n", i, WIFEXITED(st) ? "exit" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures, 0);
}

// Objects of many classes handed in batches from producers to consumers
// (the transfer cache's path: a consumer's overflow is a producer's
// refill), with every object's contents checked; the heap checker (and in
// debug builds with EBBMALLOC_CHECK=1, the bin checker after every bin
// operation) must find nothing.
TEST(Threads, ProducerConsumerBatches) {
  constexpr int kPairs = 2, kBatches = 300, kBatch = 500;
  struct Queue {
    std::mutex m;
    std::vector<std::vector<Obj*>> batches;
    bool done = false;
  };
  std::vector<Queue> qs(kPairs);
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kPairs; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t + 100);
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Obj*> batch;
        batch.reserve(kBatch);
        for (int i = 0; i < kBatch; ++i) {
          const size_t n = sizeof(Obj) + (rng() % 8 ? rng() % 240 : rng() % 9000);
          auto* o = static_cast<Obj*>(malloc(n));
          o->tag = (uint64_t(t) << 40) | (uint64_t(b) << 16) | uint64_t(i);
          o->size = n;
          memset(o + 1, static_cast<int>(o->tag & 0xff), n - sizeof(Obj));
          batch.push_back(o);
        }
        std::lock_guard<std::mutex> g(qs[t].m);
        qs[t].batches.push_back(std::move(batch));
      }
      std::lock_guard<std::mutex> g(qs[t].m);
      qs[t].done = true;
    });
    ts.emplace_back([&, t] {
      for (;;) {
        std::vector<std::vector<Obj*>> got;
        bool done;
        {
          std::lock_guard<std::mutex> g(qs[t].m);
          got.swap(qs[t].batches);
          done = qs[t].done;
        }
        for (auto& batch : got)
          for (Obj* o : batch) {
            const auto* c = reinterpret_cast<const unsigned char*>(o + 1);
            for (size_t k = 0; k < o->size - sizeof(Obj); k += 61)
              if (c[k] != (o->tag & 0xff)) bad++;
            free(o);
          }
        if (got.empty() && done) return;
        if (got.empty()) std::this_thread::yield();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// Remote frees of objects whose allocating thread has exited, by threads
// that then exit themselves (their caches, holding the other threads'
// objects, are flushed at exit); then the memory is used again.
TEST(Threads, RemoteFreesAcrossThreadExits) {
  const uint64_t caches_before = stats().thread_caches;
  for (int round = 0; round < 6; ++round) {
    std::vector<Obj*> made(20000);
    std::thread producer([&] {
      std::mt19937_64 rng(round);
      for (size_t i = 0; i < made.size(); ++i) {
        const size_t n = sizeof(Obj) + rng() % 2000;
        made[i] = static_cast<Obj*>(malloc(n));
        made[i]->tag = i;
        made[i]->size = n;
      }
    });
    producer.join();  // the owner is gone before anything is freed
    std::atomic<uint64_t> bad{0};
    std::vector<std::thread> freers;
    for (int t = 0; t < 4; ++t)
      freers.emplace_back([&, t] {
        for (size_t i = t; i < made.size(); i += 4) {
          if (made[i]->tag != i) bad++;
          free(made[i]);
        }
      });
    for (auto& t : freers) t.join();
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(ebb_check_heap(), 0u);
  }
  EXPECT_EQ(stats().thread_caches, caches_before);
  std::vector<void*> again;
  for (int i = 0; i < 20000; ++i) again.push_back(malloc(16 + i % 2000));
  for (void* p : again) free(p);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// fork() while objects flow between threads: the child must get a working
// allocator whatever the other threads were doing with their caches and the
// transfer cache.
TEST(Threads, ForkDuringCrossThreadTraffic) {
  std::atomic<bool> stop{false};
  constexpr size_t kRing = 1024;
  std::vector<std::atomic<void*>> ring(kRing);
  for (auto& r : ring) r.store(nullptr);
  std::thread producer([&] {
    std::mt19937_64 rng(5);
    for (size_t i = 0; !stop; ++i) {
      void* p = malloc(16 + rng() % 3000);
      void* old = ring[i % kRing].exchange(p);
      free(old);  // usually the consumer took it already
    }
  });
  std::thread consumer([&] {
    for (size_t i = 0; !stop; ++i) free(ring[i % kRing].exchange(nullptr));
  });
  int failures = 0;
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);
      std::vector<void*> v;
      for (int k = 0; k < 3000; ++k) v.push_back(malloc(16 + k * 53 % 3000));
      for (void* p : v) free(p);
      _exit(ebb_check_heap() == 0 ? 0 : 3);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++failures;
  }
  stop = true;
  producer.join();
  consumer.join();
  for (auto& r : ring) free(r.exchange(nullptr));
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// The caches of threads that exit go to the transfer caches whole (the next
// thread's refills take them); what nobody takes must still be given back
// once cold, with no further allocator call.
TEST(Threads, ExitedThreadsCachesAreGivenBack) {
  if (!ebb_options()->reporter) GTEST_SKIP();
  if (ebb_options()->harden) GTEST_SKIP() << "the hardened mode keeps nothing in thread caches";
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([] {
      // Sizes of 1 KiB .. 16 KiB: each class's list grows to its capacity
      // (~128 KiB), so each thread exits holding ~2 MiB, touched.
      for (size_t size = 1024; size <= 16384; size += size / 4) {
        std::vector<void*> v;
        for (int i = 0; i < 256; ++i) {
          v.push_back(malloc(size));
          touch(v.back(), size);
        }
        for (void* p : v) free(p);
      }
    });
  for (auto& t : ts) t.join();
  const uint64_t rss0 = rss_bytes();
  const uint64_t t0 = now_ms();
  uint64_t rss = rss0;
  while (now_ms() - t0 < 8000 && rss + 4 * kMiB > rss0) {
    sleep_ms(100);
    rss = rss_bytes();
  }
  EXPECT_LE(rss + 4 * kMiB, rss0) << "RSS " << (rss0 >> 10) << " KiB -> " << (rss >> 10) << " KiB";
  EXPECT_EQ(ebb_check_heap(), 0u);
}

TEST(Threads, ForkChildGetsAReporterBack) {
  if (!ebb_options()->reporter) GTEST_SKIP();
  if (ebb_options()->harden) GTEST_SKIP() << "32 MiB and its guard pages are a mapping of their own there";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    void* p = malloc(32 << 20);
    touch(p, 32 << 20);
    const uint64_t peak = rss_bytes();
    free(p);
    for (int i = 0; i < 80; ++i) {
      sleep_ms(100);
      if (rss_bytes() + (28 << 20) < peak) _exit(stats().reporter_thread_running ? 0 : 4);
    }
    _exit(5);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

// A thread that frees objects another thread allocated, then allocates that
// class itself, takes its first objects from a refill, not the ones it
// freed: those share their cache lines with the other thread's objects,
// which it may be writing (passive false sharing, Hoard's cache-scratch:
// with the freed objects reused, two threads writing their own 16 B objects
// took 3-4x the time). (Whether a refill's objects share a line with
// another thread's depends on the heap's state -- the run of every test in
// one process has them scattered -- so the test asserts what the cache
// guarantees: not the freed objects.)
TEST(Threads, AThreadDoesNotReuseObjectsItWasHandedBeforeItAllocates) {
  if (ebb_options()->harden) GTEST_SKIP() << "the hardened mode places objects at random";
  constexpr int kN = 16;
  void* mine[kN];
  for (void*& p : mine) p = malloc(16);
  std::vector<void*> got;
  std::thread t([&] {
    for (int i = 0; i < kN; i += 2) free(mine[i]);  // the odd ones stay live here
    for (int k = 0; k < 8; ++k) got.push_back(malloc(16));
  });
  t.join();
  for (void* q : got)
    for (int i = 0; i < kN; i += 2) EXPECT_NE(q, mine[i]) << "the thread took back an object it was handed";
  for (void* q : got) free(q);
  for (int i = 1; i < kN; i += 2) free(mine[i]);
  EXPECT_EQ(ebb_check_heap(), 0u);
}

// What a thread frees of a class it does not allocate waits in its cache
// for less than a batch: an idle thread's is drained like its bins. (This
// thread's own cache is emptied first and left alone, so the drain counted
// is the consumer's.)
TEST(Threads, AnIdleConsumersObjectsAreDrained) {
  if (!ebb_options()->reporter) GTEST_SKIP();
  if (ebb_options()->harden) GTEST_SKIP() << "the hardened mode keeps nothing in thread caches";
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) v.push_back(malloc(256));
  std::atomic<bool> go{false}, stop{false}, freed{false};
  std::thread idle([&] {
    while (!go) sleep_ms(1);
    for (void* p : v) free(p);  // most pass on in batches, the rest wait in this cache
    freed = true;
    while (!stop) sleep_ms(10);  // idle: no allocator calls
  });
  // Free memory worth a reporter thread (the consumer's 22 KiB alone is not:
  // EBBMALLOC_REPORT_MARK_KB), in a block no thread cache keeps; the thread
  // started before this one's cache is emptied (its start allocates here).
  void* volatile big = malloc(8 << 20);
  free(big);
  for (uint64_t t = now_ms(); !stats().reporter_thread_running && now_ms() - t < 5000;) sleep_ms(1);
  ebb_report_now();
  go = true;
  while (!freed) sleep_ms(1);
  const bool drained = a_cache_is_drained_within(8000);
  stop = true;
  idle.join();
  EXPECT_TRUE(drained) << "the objects an idle thread holds for others must be drained within a bounded time";
}

TEST(ThreadsDeathTest, DoubleFreeOfAnObjectAThreadPassesOnAborts) {
  EXPECT_DEATH(
      {
        void* p = malloc(48);
        std::thread([p] {
          free(p);  // a class this thread does not allocate: kept to be passed on
          free(p);
        }).join();
      },
      "double free");
}

}  // namespace
