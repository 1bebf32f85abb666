// tinythreads: a tiny 2-thread program in the shape of mimalloc-bench's
// `glibc-thread` (glibc's bench-malloc-thread; not that program): each
// thread replaces small objects in a small working set in a tight loop, for
// a fixed number of operations (not for a fixed time, so runs compare).
//
// --threads threads (default 2), each with 350 slots of its own (filled
// first) holding objects of 16..512 B (octave-uniform, mean ~149 B: ~52 KiB
// per thread, ~104 KiB live with 2 threads). Each of 5 M x scale operations
// per thread (at least 2000) checks and frees the object of a random slot
// and allocates one of a random size there. No object crosses threads.
// 5/8 malloc, 2/8 operator new (sized delete), 1/8 calloc, by object id.
//
// What to read: peak and final RSS against the ~104 KiB the program holds;
// time (the loop is all malloc/free and pattern writes of ~150 B).
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Tiny threaded program (shape of glibc-thread): 2 threads replace 16..512 B objects\n"
    "in 350 slots each (~104 KiB live), 5 M operations per thread.";

constexpr size_t kSlots = 350;
constexpr double kOperations = 5e6;

using Slot = wl::Object;

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "tinythreads", kDescription);
  const unsigned T = opt.threads;
  const uint64_t ops = wl::scaled(kOperations, opt.scale, 2000);
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Slot> slots(kSlots);
    uint64_t counter = 0;
    auto make = [&](Slot& s) {
      s.id = wl::make_id(t, counter++);
      s.size = wl::octave_uniform(r, 4, 9);
      s.p = wl::obj_alloc(s.id, s.size);
      st.live_bytes += s.size;
      ++st.allocs;
    };
    auto drop = [&](Slot& s) {
      st.checksum += wl::obj_free(s.p, s.id, s.size);
      st.live_bytes -= s.size;
      ++st.frees;
    };
    bar.arrive_and_wait();
    for (Slot& s : slots) make(s);
    for (uint64_t op = 0; op < ops; ++op) {
      Slot& s = slots[r.below(kSlots)];
      drop(s);
      make(s);
    }
    for (Slot& s : slots) drop(s);
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);
  wl::mark("start threads=%u slots/thread=%zu ops/thread=%llu scale=%g seed=%llu", T, kSlots,
           (unsigned long long)ops, opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "churn");
  wl::mark("churn done live=0.0KiB");
  for (auto& th : threads) th.join();
  return wl::verify_and_finish(stats, T * (kSlots + ops), /*check_live=*/true);
}
