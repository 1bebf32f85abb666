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
  const uint64_t t0 = now_ms();
  uint64_t drains0 = stats().cache_drains;
  bool drained = false;
  while (now_ms() - t0 < 8000 && !drained) {
    sleep_ms(100);
    drained = stats().cache_drains > drains0;
  }
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

}  // namespace
