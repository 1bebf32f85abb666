// phase: a service-like life cycle with a clear RSS shape.
//
//   1 grow       threads allocate ~1 GiB (x scale) in total, filling every object
//   2 free90     90% of all objects are freed in random order; each thread frees
//                a random share of everybody's objects (so ~(T-1)/T of these
//                frees are cross-thread); 10% survive, scattered over the heap
//   3 idle       --idle-ms of sleep with NO allocator calls from any thread
//                (workers are parked on a condition-variable barrier)
//   4 regrow     the freed 90% are re-allocated with the same multiset of sizes
//                shuffled over the slots (so each slot gets a different size but
//                the total returns exactly to the phase-1 peak)
//   5 free-all   everything is checked and freed; each thread frees the objects
//                of its original range, most of which another thread allocated
//   6 tail-idle  --tail-idle-ms of sleep so a sampler sees the final RSS
//
// Size distribution (see object_size()): a mix of three octave-uniform
// (~log-uniform) ranges
//     90% of objects   16 B .. 1 KiB    (mean ~252 B)
//      5% of objects    1 KiB .. 4 KiB  (mean ~2.3 KiB)
//      5% of objects    4 KiB .. 256 KiB (mean ~63 KiB)
// i.e. mean ~3.5 KiB, ~300k objects per GiB; 90% of the objects are <= 1 KiB
// but ~90% of the bytes are in 4 KiB..256 KiB objects (~6% in small ones).
//
// All bookkeeping (object table, free order) is allocated and sized before
// phase 1, so the program's own bookkeeping does not allocate during phases.
#include <algorithm>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Service-like life: grow to ~1 GiB, free 90% (cross-thread, random order), idle,\n"
    "grow again, free everything, idle.  Phase markers on stderr.";

uint64_t object_size(wl::Rng& r) {
  uint64_t pick = r.below(100);
  if (pick < 90) return wl::octave_uniform(r, 4, 10);   // 16 B .. 1 KiB
  if (pick < 95) return wl::octave_uniform(r, 10, 12);  // 1 KiB .. 4 KiB
  return wl::octave_uniform(r, 12, 18);                 // 4 KiB .. 256 KiB
}

struct Obj {
  void* p;
  uint64_t id;
  uint32_t size;
  uint32_t owner;  // thread that allocated the current object
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "phase", kDescription);
  const unsigned T = opt.threads;
  const uint64_t total_target = wl::scaled(double(wl::GiB), opt.scale, 64 * wl::KiB);

  // ---- Plan (before any phase): object sizes per thread, free order. ----
  // Thread t owns the contiguous table range [first[t], first[t+1]) and
  // allocates exactly those objects in phase 1; its sizes come from its own
  // PRNG stream so the plan depends only on (scale, threads, seed).
  std::vector<Obj> objs;
  objs.reserve(size_t(total_target / 3000) + 1024);
  std::vector<size_t> first(T + 1, 0);
  uint64_t grow_bytes = 0;
  for (unsigned t = 0; t < T; ++t) {
    wl::Rng r(opt.seed, t);
    uint64_t bytes = 0, target = total_target / T;
    while (bytes < target) {
      uint64_t s = object_size(r);
      objs.push_back(Obj{nullptr, uint64_t(objs.size()), uint32_t(s), t});
      bytes += s;
    }
    grow_bytes += bytes;
    first[t + 1] = objs.size();
  }
  const size_t N = objs.size();

  // A random permutation of all objects: the first 10% survive phase 2, the
  // rest is split into T chunks; thread t frees (phase 2) and re-allocates
  // (phase 4) the objects of chunk t, which belong to all threads.
  std::vector<uint32_t> order(N);
  for (size_t i = 0; i < N; ++i) order[i] = uint32_t(i);
  {
    wl::Rng r(opt.seed, 0xF2EEu);
    for (size_t i = N - 1; i > 0; --i) std::swap(order[i], order[r.below(i + 1)]);
  }
  const size_t n_survivors = N / 10;
  std::vector<size_t> chunk(T + 1);
  for (unsigned t = 0; t <= T; ++t) chunk[t] = n_survivors + (N - n_survivors) * t / T;
  uint64_t survivor_bytes = 0;
  for (size_t k = 0; k < n_survivors; ++k) survivor_bytes += objs[order[k]].size;
  // Phase-4 sizes: the sizes freed in phase 2, shuffled.  regrow_size[k] is
  // the new size of object order[k] (k >= n_survivors).
  std::vector<uint32_t> regrow_size(N, 0);
  {
    for (size_t k = n_survivors; k < N; ++k) regrow_size[k] = objs[order[k]].size;
    wl::Rng r(opt.seed, 0x5123u);
    for (size_t k = N - 1; k > n_survivors; --k)
      std::swap(regrow_size[k], regrow_size[n_survivors + r.below(k - n_survivors + 1)]);
  }

  std::vector<wl::ThreadStats> stats(T);
  // Main thread + T workers.  Each phase is bracketed by two barrier waits:
  // one to start it (after main logged the marker) and one when all are done.
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];

    // Phase 1: grow.
    bar.arrive_and_wait();
    for (size_t i = first[t]; i < first[t + 1]; ++i) {
      Obj& o = objs[i];
      o.p = wl::obj_alloc(o.id, o.size);
      ++st.allocs;
    }
    bar.arrive_and_wait();

    // Phase 2: free 90% in random order, mostly other threads' objects.
    bar.arrive_and_wait();
    for (size_t k = chunk[t]; k < chunk[t + 1]; ++k) {
      Obj& o = objs[order[k]];
      st.checksum += wl::obj_free(o.p, o.id, o.size);
      st.cross_frees += (o.owner != t);
      ++st.frees;
      o.p = nullptr;
    }
    bar.arrive_and_wait();

    // Phase 3: idle.  The worker is parked in the barrier below.

    // Phase 4: regrow the freed slots with new ids and shuffled sizes.
    bar.arrive_and_wait();
    for (size_t k = chunk[t]; k < chunk[t + 1]; ++k) {
      size_t i = order[k];
      Obj& o = objs[i];
      o.id = N + i;  // generation 2
      o.size = regrow_size[k];
      o.owner = t;
      o.p = wl::obj_alloc(o.id, o.size);
      st.live_bytes += o.size;
      ++st.allocs;
    }
    bar.arrive_and_wait();

    // Phase 5: free everything in this thread's original range.
    bar.arrive_and_wait();
    for (size_t i = first[t]; i < first[t + 1]; ++i) {
      Obj& o = objs[i];
      st.checksum += wl::obj_free(o.p, o.id, o.size);
      st.cross_frees += (o.owner != t);
      ++st.frees;
      o.p = nullptr;
    }
    bar.arrive_and_wait();

    // Phase 6: tail idle; parked until main releases everyone to exit.
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);


  wl::mark("start threads=%u objects=%zu scale=%g seed=%llu", T, N, opt.scale,
           (unsigned long long)opt.seed);
  wl::run_phase(bar, "grow");
  wl::mark("grow done live=%.1fMiB", wl::mib(grow_bytes));

  wl::run_phase(bar, "free90");
  wl::mark("free90 done live=%.1fMiB frees=%llu cross-thread=%llu", wl::mib(survivor_bytes),
           (unsigned long long)wl::sum(stats, &wl::ThreadStats::frees),
           (unsigned long long)wl::sum(stats, &wl::ThreadStats::cross_frees));

  wl::mark("idle start ms=%llu", (unsigned long long)opt.idle_ms);
  wl::sleep_ms(opt.idle_ms);
  wl::mark("idle done");

  wl::run_phase(bar, "regrow");
  wl::mark("regrow done live=%.1fMiB",
           wl::mib(survivor_bytes + wl::sum(stats, &wl::ThreadStats::live_bytes)));

  wl::run_phase(bar, "free-all");
  wl::mark("free-all done live=0.0MiB frees=%llu cross-thread=%llu",
           (unsigned long long)wl::sum(stats, &wl::ThreadStats::frees),
           (unsigned long long)wl::sum(stats, &wl::ThreadStats::cross_frees));

  wl::mark("tail-idle start ms=%llu", (unsigned long long)opt.tail_idle_ms);
  wl::sleep_ms(opt.tail_idle_ms);
  wl::mark("tail-idle done");
  bar.arrive_and_wait();  // release the workers
  for (auto& th : threads) th.join();

  // Every object ever allocated must have been checked and freed exactly once.
  const uint64_t expected = N + (N - n_survivors);
  for (const Obj& o : objs)
    if (o.p != nullptr) wl::fail("object id=%llu was never freed", (unsigned long long)o.id);
  return wl::verify_and_finish(stats, expected, /*check_live=*/false);
}
