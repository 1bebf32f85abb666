// threadchurn: the shape of mimalloc-bench's `mstress` (not that program):
// threads are created and joined over and over; objects of mixed sizes are
// freed by other threads, also by threads of later generations, through a
// pool of shared slots.
//
// 25 x scale generations (at least 3); each creates --threads threads and
// joins them all before the next starts. A thread keeps 5000 local slots
// (empty at its start) and runs 40,000 x scale operations (at least 200):
//     70%  replace a random local slot: free what it holds (if anything),
//          allocate a new object there
//     15%  swap a random local slot with a random slot of the shared pool
//          (one atomic exchange): the object that comes back, allocated by
//          another thread maybe generations ago, is freed later by this one
//     15%  free a random local slot (left empty)
// At its end a thread frees its even slots and swaps its odd ones into the
// pool, freeing what comes back; so objects outlive their thread. The pool
// has 500 slots per thread; main frees what is left in it at the end.
//
// Sizes (octave-uniform): 80% 16..256 B, 18% 256 B..4 KiB, 2% 4..64 KiB;
// mean ~790 B, so a thread holds up to ~4 MiB and the pool ~0.8 MiB per
// thread (a few MiB live in all). 5/8 malloc, 2/8 operator new (sized
// delete), 1/8 calloc, by object id.
//
// Objects carry their id and size in their first 16 bytes (any thread must
// be able to check and free them); the pattern covers the rest and is
// checked before every free.
#include <atomic>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Thread churn (shape of mimalloc-bench mstress): generations of threads created and\n"
    "joined, mixed sizes, objects freed by other and later threads through shared slots.";

constexpr double kGenerations = 25;
constexpr double kOpsPerThread = 40000;
constexpr size_t kLocalSlots = 5000;
constexpr size_t kPoolPerThread = 500;

uint64_t object_size(wl::Rng& r) {
  uint64_t pick = r.below(100);
  if (pick < 80) return wl::octave_uniform(r, 4, 8);   // 16 B .. 256 B
  if (pick < 98) return wl::octave_uniform(r, 8, 12);  // 256 B .. 4 KiB
  return wl::octave_uniform(r, 12, 16);                // 4 KiB .. 64 KiB
}

struct Header {
  uint64_t id;
  uint64_t size;
};

void* make(uint64_t id, uint64_t size) {
  void* p = nullptr;
  switch (wl::api_for(id)) {
    case wl::Api::Malloc:
      p = malloc(size);
      wl::check_pointer(p, size, "malloc");
      break;
    case wl::Api::New:
      p = ::operator new(size, std::nothrow);
      wl::check_pointer(p, size, "operator new");
      break;
    case wl::Api::Calloc:
      p = calloc(1, size);
      wl::check_pointer(p, size, "calloc");
      wl::check_zero_sampled(p, size, "calloc");
      break;
  }
  Header h{id, size};
  memcpy(p, &h, sizeof h);
  wl::fill_range(p, sizeof h, size, id, size);
  return p;
}

// Checks and frees an object made by make(); returns its digest.
uint64_t drop(void* p) {
  Header h;
  memcpy(&h, p, sizeof h);
  if (h.size < sizeof h || h.size > 64 * wl::KiB)
    wl::fail("object %p: header holds size %llu (overwritten?)", p, (unsigned long long)h.size);
  const uint64_t sum = wl::check_range(p, sizeof h, h.size, h.id, h.size, "check before free");
  if (wl::api_for(h.id) == wl::Api::New)
    ::operator delete(p, h.size);
  else
    free(p);
  return wl::object_digest(h.id, h.size, sum + h.id);
}

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "threadchurn", kDescription);
  const unsigned T = opt.threads;
  const uint64_t generations = wl::scaled(kGenerations, opt.scale, 3);
  const uint64_t ops = wl::scaled(kOpsPerThread, opt.scale, 200);
  std::vector<std::atomic<void*>> pool(kPoolPerThread * T);
  for (auto& s : pool) s.store(nullptr, std::memory_order_relaxed);
  // stats[t]: the threads of index t, one generation after the other;
  // stats[T]: main's frees of the pool at the end.
  std::vector<wl::ThreadStats> stats(T + 1);

  auto worker = [&](uint64_t gen, unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, gen * T + t);
    const unsigned who = unsigned(gen * T + t);
    uint64_t counter = 0;
    std::vector<void*> local(kLocalSlots, nullptr);
    auto release = [&](void* p) {
      if (!p) return;
      st.checksum += drop(p);
      ++st.frees;
    };
    auto swap_with_pool = [&](void*& slot) {
      void* back = pool[r.below(pool.size())].exchange(slot, std::memory_order_acq_rel);
      slot = back;
    };
    for (uint64_t op = 0; op < ops; ++op) {
      void*& slot = local[r.below(kLocalSlots)];
      const uint64_t pick = r.below(100);
      if (pick < 70) {
        release(slot);
        slot = make(wl::make_id(who, counter++), object_size(r));
        ++st.allocs;
      } else if (pick < 85) {
        swap_with_pool(slot);
      } else {
        release(slot);
        slot = nullptr;
      }
    }
    for (size_t i = 0; i < kLocalSlots; ++i) {
      if (i % 2 == 1) swap_with_pool(local[i]);
      release(local[i]);
    }
  };

  wl::mark("start threads=%u generations=%llu ops/thread=%llu scale=%g seed=%llu", T,
           (unsigned long long)generations, (unsigned long long)ops, opt.scale, (unsigned long long)opt.seed);
  for (uint64_t gen = 0; gen < generations; ++gen) {
    std::vector<std::thread> threads;
    threads.reserve(T);
    for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, gen, t);
    for (auto& th : threads) th.join();
    if ((gen + 1) % (generations / 4 + 1) == 0)
      wl::mark("generation %llu done", (unsigned long long)(gen + 1));
  }
  wl::mark("generations done");
  wl::mark("free-pool start");
  for (auto& s : pool) {
    if (void* p = s.exchange(nullptr)) {
      stats[T].checksum += drop(p);
      ++stats[T].frees;
    }
  }
  wl::mark("free-pool done live=0.0MiB");
  // How many objects were made depends on the random choices only (0: the
  // count is not known in advance; every one must have been freed once).
  return wl::verify_and_finish(stats, 0, /*check_live=*/false);
}
