// fragment: long-lived objects interleaved with short-lived ones whose size
// keeps changing -- the pattern that strands memory in size-segregated heaps.
//
// 36 rounds; round r allocates sizes "around" 2^b with b = 4 + r % 12, i.e.
// uniform in [2^b, 2^(b+1)): 16..32 B in round 0, up to 32..64 KiB in round
// 11, then the cycle repeats (so later cycles can reuse what earlier ones
// left behind).  In every round each thread allocates ~64 MiB x scale / T:
//   * exactly one object out of each consecutive group of 16 (at a random
//     position in the group) is long-lived: it is kept until the very end;
//   * the others are short-lived: they go into a window of ~8 MiB x scale / T
//     bytes; whenever the window is over budget a random object in it is
//     freed, and the window is emptied at the end of the round.
// So long-lived objects end up scattered through memory that was mostly
// used by short-lived objects of a size that the next rounds do not ask for.
// Live bytes grow to ~1/16 of everything allocated (~144 MiB at scale 1);
// the interesting number is RSS compared to that.  At the end the long-lived
// objects are freed in random order.
//
// Each thread works on its own objects; rounds are synchronised by a barrier
// so the per-round stderr markers (with live bytes) line up with RSS.
#include <algorithm>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Fragmentation: 36 rounds of changing size classes (2^4..2^15 B, cycling); 1 in 16\n"
    "objects is kept until the end, the rest is freed soon after.";

constexpr unsigned kRounds = 36;
constexpr double kRoundBytes = 64.0 * wl::MiB;   // per round, all threads together
constexpr double kWindowBytes = 8.0 * wl::MiB;   // short-lived bytes in flight, all threads
constexpr unsigned kLongLivedEvery = 16;

unsigned round_bits(unsigned r) { return 4 + r % 12; }

struct Obj {
  void* p;
  uint64_t id;
  uint64_t size;
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "fragment", kDescription);
  const unsigned T = opt.threads;
  const uint64_t round_bytes = wl::scaled(kRoundBytes / T, opt.scale, 64 * wl::KiB);
  const uint64_t window_bytes = wl::scaled(kWindowBytes / T, opt.scale, 16 * wl::KiB);

  // Upper bounds for the bookkeeping, so nothing is resized during the run:
  // a round allocates at most round_bytes / 2^b + 1 objects.
  uint64_t max_objects = 0;
  for (unsigned r = 0; r < kRounds; ++r) max_objects += round_bytes / (uint64_t(1) << round_bits(r)) + 1;
  const uint64_t long_capacity = max_objects / kLongLivedEvery + kRounds + 1;
  const uint64_t window_capacity = window_bytes / 16 + 2;

  struct PerThread {
    std::vector<Obj> long_lived;
    std::vector<Obj> window;
  };
  std::vector<PerThread> per(T);
  for (auto& pt : per) {
    pt.long_lived.reserve(long_capacity);
    pt.window.reserve(window_capacity);
  }
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Obj>& keep = per[t].long_lived;
    std::vector<Obj>& window = per[t].window;
    uint64_t counter = 0, window_live = 0;

    auto evict = [&](size_t k) {  // frees window[k], swap-remove
      Obj o = window[k];
      st.checksum += wl::obj_free(o.p, o.id, o.size);
      ++st.frees;
      window_live -= o.size;
      st.live_bytes -= o.size;
      window[k] = window.back();
      window.pop_back();
    };

    for (unsigned round = 0; round < kRounds; ++round) {
      bar.arrive_and_wait();
      const unsigned b = round_bits(round);
      uint64_t allocated = 0;
      uint64_t long_pos = 0;
      for (uint64_t n = 0; allocated < round_bytes; ++n) {
        if (n % kLongLivedEvery == 0) long_pos = r.below(kLongLivedEvery);
        Obj o;
        o.id = wl::make_id(t, counter++);
        o.size = (uint64_t(1) << b) + r.below(uint64_t(1) << b);
        o.p = wl::obj_alloc(o.id, o.size);
        ++st.allocs;
        allocated += o.size;
        st.live_bytes += o.size;
        if (n % kLongLivedEvery == long_pos) {
          if (keep.size() == keep.capacity()) wl::fail("long-lived table overflow");
          keep.push_back(o);
        } else {
          if (window.size() == window.capacity()) wl::fail("window table overflow");
          window.push_back(o);
          window_live += o.size;
          while (window_live > window_bytes) evict(r.below(window.size()));
        }
        if (st.live_bytes > st.peak_bytes) st.peak_bytes = st.live_bytes;
      }
      while (!window.empty()) evict(r.below(window.size()));
      bar.arrive_and_wait();
    }

    // Final: free all long-lived objects in random order.
    bar.arrive_and_wait();
    for (size_t i = keep.size(); i > 1; --i) std::swap(keep[i - 1], keep[r.below(i)]);
    for (const Obj& o : keep) {
      st.checksum += wl::obj_free(o.p, o.id, o.size);
      ++st.frees;
      st.live_bytes -= o.size;
    }
    keep.clear();
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u rounds=%u round-bytes/thread=%llu window-bytes/thread=%llu scale=%g seed=%llu",
           T, kRounds, (unsigned long long)round_bytes, (unsigned long long)window_bytes, opt.scale,
           (unsigned long long)opt.seed);
  for (unsigned round = 0; round < kRounds; ++round) {
    bar.arrive_and_wait();
    bar.arrive_and_wait();
    wl::mark("round %u done sizes=%llu..%llu live=%.1fMiB allocs=%llu", round,
             (unsigned long long)(uint64_t(1) << round_bits(round)),
             (unsigned long long)((uint64_t(2) << round_bits(round)) - 1),
             wl::mib(wl::sum(stats, &wl::ThreadStats::live_bytes)),
             (unsigned long long)wl::sum(stats, &wl::ThreadStats::allocs));
  }
  wl::mark("free-all start");
  bar.arrive_and_wait();
  bar.arrive_and_wait();
  wl::mark("free-all done");
  for (auto& th : threads) th.join();

  return wl::verify_and_finish(stats, 0, /*check_live=*/true);
}
