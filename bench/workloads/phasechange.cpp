// phasechange: a program that changes its object size at once, leaving a
// few survivors of the first phase scattered over the memory it used.
//
//   1 small      one thread allocates 256 B objects until 304 MiB x scale are
//                live (1,245,184 objects at scale 1), each written in full
//   2 thin       every object is freed (checked first) except one of every
//                64 in allocation order: one 256 B survivor per 16 KiB of the
//                first phase's memory (~4.75 MiB live, 19,456 objects)
//   3 big        at once, with no pause, 3000 B objects are allocated until as
//                many bytes are live as in phase 1 (104,595 objects,
//                ~299 MiB), so at most 304 MiB is ever live
//   4 free-all   everything is checked and freed, survivors first
//
// An allocator that keeps the 256 B survivors' pages for 256 B objects only
// (a non-moving, size-segregated heap that cannot give the free rest of
// those pages to 3000 B objects, and gives nothing back before phase 3)
// peaks near 600 MiB; one that reuses or returns the thinned memory stays
// near 304 MiB. Peak RSS is the figure of interest.
//
// The shape is single-threaded: --threads is accepted and ignored.
// The object table is allocated before phase 1.
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Phase change: 304 MiB of 256 B objects, all freed but one per 16 KiB, then at\n"
    "once as many bytes of 3000 B objects; peak RSS shows whether the thinned memory\n"
    "is reused.";

constexpr double kVolume = 304.0 * wl::MiB;
constexpr uint64_t kSmall = 256;
constexpr uint64_t kBig = 3000;
constexpr uint64_t kKeepEvery = 16 * wl::KiB / kSmall;  // 64

struct Obj {
  void* p;
  uint64_t id;
  uint64_t size;
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "phasechange", kDescription);
  const uint64_t volume = wl::scaled(kVolume, opt.scale, 64 * 16 * wl::KiB);
  const uint64_t n_small = volume / kSmall;
  const uint64_t n_kept = n_small / kKeepEvery;
  // Phase 3 brings the live bytes back to phase 1's.
  const uint64_t n_big = (volume - n_kept * kSmall) / kBig;
  std::vector<Obj> small(n_small), big(n_big);
  std::vector<wl::ThreadStats> stats(1);
  wl::ThreadStats& st = stats[0];
  auto make = [&](Obj& o, uint64_t id, uint64_t size) {
    o.id = id;
    o.size = size;
    o.p = wl::obj_alloc(id, size);
    st.live_bytes += size;
    ++st.allocs;
    if (st.live_bytes > st.peak_bytes) st.peak_bytes = st.live_bytes;
  };
  auto drop = [&](Obj& o) {
    st.checksum += wl::obj_free(o.p, o.id, o.size);
    st.live_bytes -= o.size;
    ++st.frees;
    o.p = nullptr;
  };

  wl::mark("start small=%llu big=%llu scale=%g seed=%llu", (unsigned long long)n_small,
           (unsigned long long)n_big, opt.scale, (unsigned long long)opt.seed);
  wl::mark("small start");
  for (uint64_t i = 0; i < n_small; ++i) make(small[i], i, kSmall);
  wl::mark("small done live=%.1fMiB", wl::mib(st.live_bytes));
  wl::mark("thin start");
  for (uint64_t i = 0; i < n_small; ++i)
    if (i % kKeepEvery != kKeepEvery - 1) drop(small[i]);
  wl::mark("thin done live=%.1fMiB", wl::mib(st.live_bytes));
  wl::mark("big start");
  for (uint64_t i = 0; i < n_big; ++i) make(big[i], n_small + i, kBig);
  wl::mark("big done live=%.1fMiB peak-live=%.1fMiB", wl::mib(st.live_bytes), wl::mib(st.peak_bytes));
  wl::mark("free-all start");
  for (Obj& o : small)
    if (o.p) drop(o);
  for (Obj& o : big) drop(o);
  wl::mark("free-all done live=0.0MiB");
  // Sizes and order are fixed: the seed only enters the checksum, which the
  // conventions say changes with --seed.
  return wl::verify_and_finish(stats, n_small + n_big, /*check_live=*/true, opt.seed);
}
