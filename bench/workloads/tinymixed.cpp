// tinymixed: a tiny single-threaded program in the shape of mimalloc-bench's
// `espresso` (not that program: no logic minimisation is done): mixed small
// sizes, realloc, about 1 MiB live.
//
// 3 M x scale operations (at least 2000), one thread (--threads is accepted
// and ignored). A live set of 2000 slots (filled first) holds objects of
// (octave-uniform) 60% 16..128 B, 30% 128 B..1 KiB, 10% 1..8 KiB: mean
// ~530 B: ~1 MiB live after the fill, ~0.85 MiB during the churn (some
// slots are empty). Each operation:
//     60%  replace a random slot: check and free its object (if any),
//          allocate a new one of a random size
//     30%  realloc a random slot to a new random size (the kept prefix is
//          checked, the grown tail written)
//     10%  free a random slot (left empty until a replace fills it)
// Everything left is checked and freed at the end. 7/8 malloc, 1/8 calloc
// (zero-checked), all freed with free() (realloc'd objects cannot go to a
// sized delete).
//
// What to read: peak and final RSS against the ~1 MiB the program holds.
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Tiny program (shape of espresso): one thread, mixed small sizes with realloc,\n"
    "~0.85-1 MiB live.";

constexpr size_t kSlots = 2000;
constexpr double kOperations = 3e6;

struct Slot {
  void* p = nullptr;
  uint64_t id = 0;
  uint64_t key = 0;  // size at creation: the pattern key, kept across realloc
  uint64_t len = 0;
};

uint64_t object_size(wl::Rng& r) {
  uint64_t pick = r.below(10);
  if (pick < 6) return wl::octave_uniform(r, 4, 7);   // 16 .. 128 B
  if (pick < 9) return wl::octave_uniform(r, 7, 10);  // 128 B .. 1 KiB
  return wl::octave_uniform(r, 10, 13);               // 1 .. 8 KiB
}

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "tinymixed", kDescription);
  const uint64_t ops = wl::scaled(kOperations, opt.scale, 2000);
  std::vector<Slot> slots(kSlots);
  std::vector<wl::ThreadStats> stats(1);
  wl::ThreadStats& st = stats[0];
  wl::Rng r(opt.seed, 0);
  uint64_t counter = 0, reallocs = 0;
  auto make = [&](Slot& s) {
    s.id = counter++;
    s.key = s.len = object_size(r);
    const bool zero = (wl::mix64(s.id ^ 0xE5u) & 7) == 0;
    s.p = zero ? calloc(1, s.len) : malloc(s.len);
    wl::check_pointer(s.p, s.len, zero ? "calloc" : "malloc");
    if (zero) wl::check_zero_sampled(s.p, s.len, "calloc");
    wl::fill_range(s.p, 0, s.len, s.id, s.key);
    st.live_bytes += s.len;
    ++st.allocs;
  };
  auto drop = [&](Slot& s) {
    if (!s.p) return;
    const uint64_t sum = wl::check_range(s.p, 0, s.len, s.id, s.key, "check before free");
    free(s.p);
    st.checksum += wl::object_digest(s.id, s.len, sum);
    st.live_bytes -= s.len;
    ++st.frees;
    s.p = nullptr;
  };
  auto resize = [&](Slot& s) {
    const uint64_t len = object_size(r);
    const uint64_t keep = len < s.len ? len : s.len;
    st.checksum += wl::check_range(s.p, 0, keep, s.id, s.key, "check before realloc");
    void* q = realloc(s.p, len);
    wl::check_pointer(q, len, "realloc");
    wl::check_range(q, 0, keep, s.id, s.key, "check after realloc");
    if (len > s.len) wl::fill_range(q, s.len, len, s.id, s.key);
    st.live_bytes += len;
    st.live_bytes -= s.len;
    s.p = q;
    s.len = len;
    ++reallocs;
  };

  wl::mark("start slots=%zu ops=%llu scale=%g seed=%llu", kSlots, (unsigned long long)ops, opt.scale,
           (unsigned long long)opt.seed);
  wl::mark("fill start");
  for (Slot& s : slots) make(s);
  wl::mark("fill done live=%.1fKiB", double(st.live_bytes) / double(wl::KiB));
  wl::mark("churn start");
  for (uint64_t op = 0; op < ops; ++op) {
    Slot& s = slots[r.below(kSlots)];
    const uint64_t pick = r.below(10);
    if (pick < 6) {
      drop(s);
      make(s);
    } else if (pick < 9) {
      if (s.p) resize(s);
      else make(s);
    } else {
      drop(s);
    }
  }
  wl::mark("churn done live=%.1fKiB reallocs=%llu", double(st.live_bytes) / double(wl::KiB),
           (unsigned long long)reallocs);
  for (Slot& s : slots) drop(s);
  wl::mark("free-all done live=0.0KiB");
  return wl::verify_and_finish(stats, 0, /*check_live=*/true, reallocs);
}
