// alloctest: random lifetimes, mixed sizes, many live objects (the shape of
// alloc-test in mimalloc-bench, run with one thread).
//
// Each thread owns an array of slots, half of them filled at the start. An
// operation picks a random slot: a filled one is checked and freed, an empty
// one gets a new object. So about half the slots stay live, every object's
// lifetime is random (geometric), and frees land all over the slabs of every
// size class in use. Threads never touch each other's objects; compare runs
// it with --threads 1.
//
// Sizes (object_size()): 75% 16 B .. 128 B, 25% 128 B .. 8 KiB, octave-
// uniform within each range (mean ~590 B). Slots: 131,072 per thread x scale
// (~38 MiB live at scale 1); operations: 16 M x scale per thread.
#include <vector>

#include "lines.h"

namespace {

constexpr const char* kDescription =
    "Random lifetimes: one thread (per --threads) frees or allocates a random slot of\n"
    "~131k (16 B .. 8 KiB, mostly small), about half of them live.";

constexpr double kSlots = 131072;
constexpr double kOperations = 16e6;

uint64_t object_size(wl::Rng& r) {
  if (r.below(4) < 3) return wl::octave_uniform(r, 4, 7);  // 16 B .. 128 B
  return wl::octave_uniform(r, 7, 13);                     // 128 B .. 8 KiB
}

using Slot = wl::Object;

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "alloctest", kDescription);
  const unsigned T = opt.threads;
  const uint64_t nslots = wl::scaled(kSlots, opt.scale, 64);
  const uint64_t ops = wl::scaled(kOperations, opt.scale, 1000);

  std::vector<std::vector<Slot>> slots(T, std::vector<Slot>(nslots));
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Slot>& my = slots[t];
    uint64_t counter = 0;
    auto make = [&](Slot& s) {
      s.id = wl::make_id(t, counter++);
      s.size = object_size(r);
      s.p = wl::obj_alloc_lines(s.id, s.size);
      ++st.allocs;
      st.live_bytes += s.size;
      if (st.live_bytes > st.peak_bytes) st.peak_bytes = st.live_bytes;
    };
    auto drop = [&](Slot& s) {
      st.checksum += wl::obj_free_lines(s.p, s.id, s.size);
      ++st.frees;
      st.live_bytes -= s.size;
      s.p = nullptr;
    };

    bar.arrive_and_wait();
    for (uint64_t i = 0; i < nslots; i += 2) make(my[i]);
    bar.arrive_and_wait();

    bar.arrive_and_wait();  // run
    for (uint64_t op = 0; op < ops; ++op) {
      Slot& s = my[r.below(nslots)];
      if (s.p) drop(s);
      else make(s);
      if (t == 0 && (op + 1) % (ops / 4 + 1) == 0) wl::mark("run %llu%%", (unsigned long long)((op + 1) * 100 / ops));
    }
    bar.arrive_and_wait();

    bar.arrive_and_wait();  // free the rest
    for (Slot& s : my)
      if (s.p) drop(s);
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u slots/thread=%llu ops/thread=%llu scale=%g seed=%llu", T, (unsigned long long)nslots,
           (unsigned long long)ops, opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "fill");
  wl::mark("fill done live=%.1fMiB", wl::mib(wl::sum(stats, &wl::ThreadStats::live_bytes)));
  wl::run_phase(bar, "run");
  wl::mark("run done peak=%.1fMiB", wl::mib(wl::sum(stats, &wl::ThreadStats::peak_bytes)));
  wl::run_phase(bar, "free");
  for (auto& th : threads) th.join();
  return wl::verify_and_finish(stats, 0, /*check_live=*/true);
}
