// xmalloc: producer/consumer (the shape of xmalloc-test in mimalloc-bench).
//
// Of the T threads, the first ceil(T/2) only allocate (producers) and the
// others only free (consumers); with T = 1 the one thread does both in
// turn. Producer p hands every object it allocates to consumer p mod C
// through its own bounded single-producer/single-consumer ring, published
// 64 objects at a time (so the ring's indices do not bounce between the
// cores on every object); the consumer waits for at least 2048 of them (so
// it does not chase the producer's cache lines one by one, and the objects
// pass in batches, as xmalloc-test hands over whole blocks), checks each
// object's pattern and frees it. So every free is cross-thread, and the objects a consumer frees
// must make their way back to the producer's allocations.
//
// Sizes: 16 B .. 256 B, octave-uniform (mean ~120 B), the small objects
// xmalloc-test uses. Volume: 12 M objects x scale in total; at most one
// ring (8192 objects, ~1 MiB) in flight per producer.
//
// The set of objects allocated is fixed by the arguments (each producer's ids
// and sizes come from its own PRNG) and each is checked once when freed, so
// the checksum does not depend on timing.
#include <memory>
#include <vector>

#include "lines.h"

namespace {

constexpr const char* kDescription =
    "Producer/consumer: half the threads allocate 16 B .. 256 B objects, the other half\n"
    "free them (every free cross-thread), handed over through lock-free rings.";

constexpr double kObjects = 12e6;
constexpr size_t kRing = 8192;   // objects per ring (power of two)
constexpr size_t kPublish = 64;  // objects per index update
constexpr size_t kTake = 2048;   // a consumer frees at least this many at a time

struct Obj {
  void* p;
  uint64_t id;
  uint64_t size;
};

// Bounded SPSC ring; the producer publishes in chunks.
struct alignas(64) Ring {
  alignas(64) std::atomic<uint64_t> head{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail{0};  // written by the consumer
  alignas(64) std::atomic<bool> done{false};  // the producer has finished
  Obj buf[kRing];
};

void backoff(unsigned& spins) {
  if (++spins < 64) __builtin_ia32_pause();
  else std::this_thread::yield();
}

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "xmalloc", kDescription);
  const unsigned T = opt.threads;
  const unsigned P = T == 1 ? 1 : (T + 1) / 2;  // producers
  const unsigned C = T == 1 ? 1 : T - P;        // consumers
  const uint64_t per_producer = wl::scaled(kObjects / P, opt.scale, 1000);

  std::vector<std::unique_ptr<Ring>> rings;
  for (unsigned p = 0; p < P; ++p) rings.push_back(std::make_unique<Ring>());
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  // Producer p: allocates per_producer objects into its ring.
  auto produce = [&](unsigned p, wl::ThreadStats& st, uint64_t limit, uint64_t& counter, wl::Rng& r) {
    Ring& ring = *rings[p];
    uint64_t h = ring.head.load(std::memory_order_relaxed);
    uint64_t published = h;
    unsigned spins = 0;
    while (counter < limit) {
      if (h - ring.tail.load(std::memory_order_acquire) >= kRing) {
        if (published != h) ring.head.store(published = h, std::memory_order_release);
        if (T == 1) return;  // single thread: go and consume
        backoff(spins);
        continue;
      }
      spins = 0;
      Obj& o = ring.buf[h & (kRing - 1)];
      o.id = wl::make_id(p, counter++);
      o.size = wl::octave_uniform(r, 4, 8);
      o.p = wl::obj_alloc_lines(o.id, o.size);
      ++st.allocs;
      if (++h - published >= kPublish) ring.head.store(published = h, std::memory_order_release);
    }
    ring.head.store(h, std::memory_order_release);
  };
  // Frees everything published in ring p, once there are at least kTake
  // objects (or `all`); returns how many.
  auto consume = [&](unsigned p, wl::ThreadStats& st, unsigned self, bool all) {
    Ring& ring = *rings[p];
    const uint64_t t0 = ring.tail.load(std::memory_order_relaxed);
    const uint64_t h = ring.head.load(std::memory_order_acquire);
    if (!all && h - t0 < kTake) return uint64_t{0};
    for (uint64_t t = t0; t < h; ++t) {
      Obj& o = ring.buf[t & (kRing - 1)];
      st.checksum += wl::obj_free_lines(o.p, o.id, o.size);
      ++st.frees;
      st.cross_frees += self != p;
      // Hand the room back every kPublish objects too.
      if ((t + 1 - t0) % kPublish == 0) ring.tail.store(t + 1, std::memory_order_release);
    }
    ring.tail.store(h, std::memory_order_release);
    return h - t0;
  };

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    bar.arrive_and_wait();  // run
    if (T == 1) {
      wl::Rng r(opt.seed, 0);
      uint64_t counter = 0;
      while (counter < per_producer) {
        produce(0, st, per_producer, counter, r);
        consume(0, st, 0, true);
      }
      consume(0, st, 0, true);
    } else if (t < P) {
      wl::Rng r(opt.seed, t);
      uint64_t counter = 0;
      produce(t, st, per_producer, counter, r);
      rings[t]->done.store(true, std::memory_order_release);
      if (t == 0) wl::mark("producer 0 done");
    } else {
      const unsigned c = t - P;
      unsigned spins = 0;
      for (;;) {
        bool all_done = true;
        uint64_t got = 0;
        for (unsigned p = c; p < P; p += C) {
          const bool done = rings[p]->done.load(std::memory_order_acquire);
          got += consume(p, st, t, done);
          all_done &= done;  // done was read before the last consume
        }
        if (all_done) break;
        if (got) spins = 0;
        else backoff(spins);
      }
    }
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u producers=%u consumers=%u objects/producer=%llu scale=%g seed=%llu", T, P, C,
           (unsigned long long)per_producer, opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "run");
  {
    const uint64_t frees = wl::sum(stats, &wl::ThreadStats::frees), cross = wl::sum(stats, &wl::ThreadStats::cross_frees);
    wl::mark("run done frees=%llu cross-thread=%llu (%.1f%%)", (unsigned long long)frees, (unsigned long long)cross,
             frees ? 100.0 * double(cross) / double(frees) : 0.0);
  }
  for (auto& th : threads) th.join();
  return wl::verify_and_finish(stats, uint64_t{P} * per_producer, /*check_live=*/false);
}
