// micro — Google Benchmark micro benchmarks of the malloc API.
//
// Plain malloc/calloc/realloc/free: this program does NOT link ebbmalloc, so
// whichever allocator is LD_PRELOADed is the one measured (bench/compare runs
// it under each of them and tabulates the JSON output).
//
// Every benchmark sets items processed = allocator operations it timed (one
// malloc+free pair, one realloc, ...), so ns/op = 1e9 / items_per_second.
// Multi-threaded ones (->Threads(N), real time) report the aggregate rate;
// the per-thread cost is N × that (bench/compare prints it).
//
// Built with -fno-builtin-malloc & co. and every pointer goes through
// benchmark::DoNotOptimize, so no malloc/free pair can be elided.
#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPage = 4096;

// Touches the first byte so the allocation is used, not just made.
inline void touch(void* p) {
  benchmark::DoNotOptimize(p);
  *static_cast<volatile char*>(p) = 1;
}

// ---------------------------------------------------------------------------
// malloc/free pairs per size, 16 B .. 4 MiB
// ---------------------------------------------------------------------------

void BM_MallocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = malloc(size);
    touch(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MallocFree)->RangeMultiplier(4)->Range(16, 4 << 20);

// ---------------------------------------------------------------------------
// A batch allocated, then freed in LIFO or random order
// ---------------------------------------------------------------------------

constexpr size_t kBatch = 1000;

void batch(benchmark::State& state, bool random_order) {
  const size_t size = static_cast<size_t>(state.range(0));
  std::vector<void*> ptrs(kBatch);
  std::vector<size_t> order(kBatch);
  std::iota(order.begin(), order.end(), size_t{0});
  if (random_order) std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  else std::reverse(order.begin(), order.end());
  for (auto _ : state) {
    for (auto& p : ptrs) {
      p = malloc(size);
      touch(p);
    }
    for (size_t i : order) free(ptrs[i]);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatch));
}
void BM_BatchLifo(benchmark::State& state) { batch(state, false); }
void BM_BatchRandom(benchmark::State& state) { batch(state, true); }
BENCHMARK(BM_BatchLifo)->Arg(32)->Arg(512)->Arg(8192);
BENCHMARK(BM_BatchRandom)->Arg(32)->Arg(512)->Arg(8192);

// ---------------------------------------------------------------------------
// realloc growth: 16 B grown by 1/4 at a time to range(0) bytes
// ---------------------------------------------------------------------------

void BM_ReallocGrow(benchmark::State& state) {
  const size_t limit = static_cast<size_t>(state.range(0));
  int64_t ops = 0;
  for (auto _ : state) {
    size_t size = 16;
    void* p = malloc(size);
    touch(p);
    while (size < limit) {
      size += size / 4;
      p = realloc(p, size);
      static_cast<volatile char*>(p)[size - 1] = 1;
      ++ops;
    }
    free(p);
  }
  state.SetItemsProcessed(ops);
}
BENCHMARK(BM_ReallocGrow)->Arg(64 << 10)->Arg(16 << 20);

// ---------------------------------------------------------------------------
// calloc of large blocks: warm (just freed) and reported (given back first)
// ---------------------------------------------------------------------------

// How this allocator is asked to give its free memory back to the OS, looked
// up at run time so the program works under any of them:
//   ebbmalloc  ebb_report_now()
//   jemalloc   mallctl("arena.4096.purge")  (4096 = MALLCTL_ARENAS_ALL)
//   mimalloc   mi_collect(true)
//   tcmalloc   MallocExtension_ReleaseFreeMemory()
//   glibc      malloc_trim(0)  (large blocks are mmapped there: munmapped at free anyway)
struct Release {
  const char* how = "malloc_trim(0)";
  void (*fn)() = [] { malloc_trim(0); };
};

Release find_release() {
  Release r;
  static void* ebb = dlsym(RTLD_DEFAULT, "ebb_report_now");
  static void* je = dlsym(RTLD_DEFAULT, "mallctl");
  static void* mi = dlsym(RTLD_DEFAULT, "mi_collect");
  static void* tc = dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
  if (ebb) {
    r = {"ebb_report_now()", [] { reinterpret_cast<size_t (*)()>(ebb)(); }};
  } else if (je) {
    r = {"mallctl(arena.4096.purge)", [] {
           reinterpret_cast<int (*)(const char*, void*, size_t*, void*, size_t)>(je)(
               "arena.4096.purge", nullptr, nullptr, nullptr, 0);
         }};
  } else if (mi) {
    r = {"mi_collect(true)", [] { reinterpret_cast<void (*)(bool)>(mi)(true); }};
  } else if (tc) {
    r = {"MallocExtension_ReleaseFreeMemory()", [] { reinterpret_cast<void (*)()>(tc)(); }};
  }
  return r;
}

// calloc(size), write one byte per page (the program uses the memory), free.
void calloc_large(benchmark::State& state, bool reported) {
  const size_t size = static_cast<size_t>(state.range(0));
  const Release release = find_release();
  for (auto _ : state) {
    if (reported) {
      state.PauseTiming();
      release.fn();
      state.ResumeTiming();
    }
    char* p = static_cast<char*>(calloc(1, size));
    benchmark::DoNotOptimize(p);
    for (size_t off = 0; off < size; off += kPage) p[off] = 1;
    benchmark::ClobberMemory();
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
  if (reported) state.SetLabel(release.how);
}
void BM_CallocWarm(benchmark::State& state) { calloc_large(state, false); }
void BM_CallocReported(benchmark::State& state) { calloc_large(state, true); }
BENCHMARK(BM_CallocWarm)->Arg(1 << 20)->Arg(16 << 20);
BENCHMARK(BM_CallocReported)->Arg(1 << 20)->Arg(16 << 20);

// ---------------------------------------------------------------------------
// Producer-consumer: objects malloc'd here are freed by another thread
// ---------------------------------------------------------------------------

// Single-producer single-consumer ring of pointers.
class Ring {
 public:
  bool push(void* p) {
    const size_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) == kSize) return false;
    slots_[h % kSize] = p;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  bool pop(void*& p) {
    const size_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_.load(std::memory_order_acquire)) return false;
    p = slots_[t % kSize];
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

 private:
  static constexpr size_t kSize = 4096;
  void* slots_[kSize];
  alignas(64) std::atomic<size_t> head_{0};
  alignas(64) std::atomic<size_t> tail_{0};
};

void BM_ProducerConsumer(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  auto ring = std::make_unique<Ring>();
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    void* p;
    for (;;) {
      if (ring->pop(p)) free(p);
      else if (done.load(std::memory_order_acquire)) break;
      else std::this_thread::yield();
    }
    while (ring->pop(p)) free(p);
  });
  for (auto _ : state) {
    void* p = malloc(size);
    touch(p);
    while (!ring->push(p)) std::this_thread::yield();
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ProducerConsumer)->Arg(64)->Arg(4096)->UseRealTime();

// ---------------------------------------------------------------------------
// Batches handed between threads, and random lifetimes
// ---------------------------------------------------------------------------

// Single-producer single-consumer ring of batches of pointers.
constexpr size_t kBatchObjects = 256;
struct BatchRing {
  static constexpr size_t kSize = 16;
  struct Batch {
    void* p[kBatchObjects];
  };
  alignas(64) std::atomic<size_t> head{0};
  alignas(64) std::atomic<size_t> tail{0};
  Batch buf[kSize];
  Batch* slot_to_fill() {  // producer: nullptr when full
    const size_t h = head.load(std::memory_order_relaxed);
    return h - tail.load(std::memory_order_acquire) == kSize ? nullptr : &buf[h % kSize];
  }
  void publish() { head.store(head.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  Batch* slot_to_drain() {  // consumer: nullptr when empty
    const size_t t = tail.load(std::memory_order_relaxed);
    return t == head.load(std::memory_order_acquire) ? nullptr : &buf[t % kSize];
  }
  void release() { tail.store(tail.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
};

// xmalloc-test's shape: this thread mallocs batches of 256 objects of S
// bytes (each touched), another thread frees them; per object, real time.
void BM_XmallocBatch(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  auto ring = std::make_unique<BatchRing>();
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    for (;;) {
      if (BatchRing::Batch* b = ring->slot_to_drain()) {
        for (void* p : b->p) free(p);
        ring->release();
      } else if (done.load(std::memory_order_acquire)) {
        if (!ring->slot_to_drain()) break;
      } else {
        std::this_thread::yield();
      }
    }
  });
  for (auto _ : state) {
    BatchRing::Batch* b;
    while (!(b = ring->slot_to_fill())) std::this_thread::yield();
    for (void*& p : b->p) {
      p = malloc(size);
      touch(p);
    }
    ring->publish();
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchObjects));
}
BENCHMARK(BM_XmallocBatch)->Arg(64)->Arg(512)->UseRealTime();

// rptest's shape: two threads each allocate 256 objects of random sizes
// (3/4 16 B .. 512 B, 1/4 up to 16 KiB) per iteration, hand them to the
// other thread and free one batch the other one handed over (a full ring:
// freed here). Per object allocated by this thread, real time. One batch per
// round, not all there are: a drain that ran until the ring was empty never
// ended while the other thread refilled it as fast (its frees of objects the
// drain had just touched are cheaper than the drain's own), so an iteration
// measured the race between the two threads — 5 µs to 420 ms on one build.
void BM_RemoteFree(benchmark::State& state) {
  auto to_peer = std::make_unique<BatchRing>(), from_peer = std::make_unique<BatchRing>();
  std::atomic<bool> done{false};
  auto sizes = [](std::mt19937& rng) {
    std::vector<size_t> v(4096);
    for (auto& s : v) s = (rng() % 4) ? 16 + rng() % 497 : 512 + rng() % 15873;
    return v;
  };
  auto round = [](BatchRing& out, BatchRing& in, const std::vector<size_t>& sz, size_t& k) {
    BatchRing::Batch* b = out.slot_to_fill();
    void* local[kBatchObjects];
    for (size_t i = 0; i < kBatchObjects; ++i) {
      void* p = malloc(sz[k++ % sz.size()]);
      touch(p);
      (b ? b->p : local)[i] = p;
    }
    if (b) out.publish();
    else
      for (void* p : local) free(p);
    if (BatchRing::Batch* r = in.slot_to_drain()) {
      for (void* p : r->p) free(p);
      in.release();
    }
  };
  std::thread peer([&] {
    std::mt19937 rng(2);
    const std::vector<size_t> sz = sizes(rng);
    size_t k = 0;
    while (!done.load(std::memory_order_acquire)) round(*from_peer, *to_peer, sz, k);
  });
  std::mt19937 rng(1);
  const std::vector<size_t> sz = sizes(rng);
  size_t k = 0;
  for (auto _ : state) round(*to_peer, *from_peer, sz, k);
  done.store(true, std::memory_order_release);
  peer.join();
  for (BatchRing* r : {to_peer.get(), from_peer.get()})
    while (BatchRing::Batch* b = r->slot_to_drain()) {
      for (void* p : b->p) free(p);
      r->release();
    }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchObjects));
}
BENCHMARK(BM_RemoteFree)->UseRealTime();

// alloc-test's shape: one thread, 65536 slots, each step frees the object in
// a random slot or allocates one there (3/4 16 B .. 128 B, 1/4 up to 8 KiB),
// about half of them live; per step.
void BM_RandomLifetime(benchmark::State& state) {
  constexpr size_t kSlots = 65536;
  std::vector<void*> slots(kSlots, nullptr);
  std::mt19937_64 rng(7);
  std::vector<uint32_t> steps(1 << 20);
  for (auto& x : steps) {
    const uint64_t r = rng();
    const uint32_t size = (r >> 62) ? 16 + (r >> 32) % 113 : 128 + (r >> 32) % 8065;
    x = static_cast<uint32_t>(r % kSlots) | (size << 16);  // slot in the low 16 bits
  }
  for (size_t i = 0; i < kSlots; i += 2) slots[i] = malloc(64);
  size_t k = 0;
  for (auto _ : state) {
    const uint32_t x = steps[k++ & (steps.size() - 1)];
    void*& s = slots[x & 0xffff];
    if (s) {
      free(s);
      s = nullptr;
    } else {
      s = malloc(x >> 16);
      touch(s);
    }
  }
  for (void* p : slots) free(p);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RandomLifetime);

// ---------------------------------------------------------------------------
// N threads, each allocating and freeing privately
// ---------------------------------------------------------------------------

// Per iteration: 64 objects of 16 B .. 2 KiB (fixed per-thread sequence),
// then freed in the same order.
void BM_ThreadPrivate(benchmark::State& state) {
  constexpr size_t kN = 64;
  size_t sizes[kN];
  std::mt19937 rng(static_cast<unsigned>(state.thread_index()) + 1);
  for (auto& s : sizes) s = 16u << (rng() % 8);
  void* ptrs[kN];
  for (auto _ : state) {
    for (size_t i = 0; i < kN; ++i) {
      ptrs[i] = malloc(sizes[i]);
      touch(ptrs[i]);
    }
    for (size_t i = 0; i < kN; ++i) free(ptrs[i]);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kN));
}
BENCHMARK(BM_ThreadPrivate)->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
