// tinyshort: a tiny single-threaded program in the shape of mimalloc-bench's
// `cfrac` (not that program: no arithmetic is done): very many small,
// short-lived objects and a few hundred KiB live.
//
// 4 M x scale operations (at least 2000), one thread (--threads is accepted
// and ignored). A live set of 6000 slots (filled first) holds objects of
// 16..128 B (octave-uniform, mean ~56 B: ~330 KiB live). Each operation:
//     50%  a temporary: allocate 16..128 B, write it, check it, free it
//          at once (1 in 4 of them with a second temporary allocated and
//          freed while the first is live, as nested temporaries are)
//     50%  replace a random live slot: check and free the object, allocate
//          a new one of a random size there
// Everything left is checked and freed at the end. 5/8 malloc, 2/8 operator
// new (sized delete), 1/8 calloc, by object id.
//
// What to read: peak and final RSS against the ~330 KiB the program holds
// (per-thread caches and partly used slabs dominate a program this small).
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Tiny program (shape of cfrac): one thread, ~4 M small short-lived objects,\n"
    "~330 KiB live.";

constexpr size_t kSlots = 6000;
constexpr double kOperations = 4e6;

using Slot = wl::Object;

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "tinyshort", kDescription);
  const uint64_t ops = wl::scaled(kOperations, opt.scale, 2000);
  std::vector<Slot> slots(kSlots);
  std::vector<wl::ThreadStats> stats(1);
  wl::ThreadStats& st = stats[0];
  wl::Rng r(opt.seed, 0);
  uint64_t counter = 0;
  auto size = [&] { return wl::octave_uniform(r, 4, 7); };
  auto make = [&](Slot& s) {
    s.id = counter++;
    s.size = size();
    s.p = wl::obj_alloc(s.id, s.size);
    st.live_bytes += s.size;
    ++st.allocs;
  };
  auto drop = [&](Slot& s) {
    st.checksum += wl::obj_free(s.p, s.id, s.size);
    st.live_bytes -= s.size;
    ++st.frees;
    s.p = nullptr;
  };

  wl::mark("start slots=%zu ops=%llu scale=%g seed=%llu", kSlots, (unsigned long long)ops, opt.scale,
           (unsigned long long)opt.seed);
  wl::mark("fill start");
  for (Slot& s : slots) make(s);
  wl::mark("fill done live=%.1fKiB", double(st.live_bytes) / double(wl::KiB));
  wl::mark("churn start");
  for (uint64_t op = 0; op < ops; ++op) {
    if (r.below(2) == 0) {
      Slot a, b;
      make(a);
      if (r.below(4) == 0) {
        make(b);
        drop(b);
      }
      drop(a);
    } else {
      Slot& s = slots[r.below(kSlots)];
      drop(s);
      make(s);
    }
  }
  wl::mark("churn done live=%.1fKiB", double(st.live_bytes) / double(wl::KiB));
  for (Slot& s : slots) drop(s);
  wl::mark("free-all done live=0.0KiB");
  return wl::verify_and_finish(stats, 0, /*check_live=*/true);
}
