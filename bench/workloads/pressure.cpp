// pressure: a batch service whose live memory stays below a memory limit L
// (a container's memory.high), to see whether its allocator's RSS does too
// (issue 15).
//
// L = max(16, round(--limit-mb x --scale)) MiB: 256 MiB at scale 1. The
// service holds one batch at a time (the limit holds one) and hands each
// batch to the next of its --threads workers in turn, as a pool whose
// workers take jobs from a queue does. Twelve batches (phases) of three
// kinds, in turn:
//   small   32 B .. 2 KiB objects (octave-uniform, mean ~504 B): records
//   mid     4 KiB .. 256 KiB (mean ~63 KiB): buffers
//   large   2^b .. 2^(b+3) B, b = max(17, floor(log2 L) - 8): 1 .. 8 MiB at
//           L = 256 MiB (mean ~3.5 MiB): whole documents, images
// Phase j (0..11, kind j mod 3) runs on worker j mod T:
//   1 build    allocate objects of its kind (sizes from the PRNG stream
//              (seed, j)), each written with the sparse pattern of lines.h,
//              until the next one would bring the live memory above the
//              bound B = 0.8 L
//   2 release  check and free the batch in a scattered order (index times a
//              stride coprime to the count), all but every 256th object in
//              allocation order: the survivors, the batch's results, kept
//              for three more phases and scattered over its memory (one per
//              ~128 KiB of a small batch)
//   3 retire   check and free the survivors of phase j-3 (with two workers:
//              the other worker's objects, so these frees are cross-thread)
// and the next phase starts at once: no pause anywhere, so an allocator that
// gives memory back after a decay period (jemalloc: 10 s) does not get to.
// At the end the last three phases' survivors are freed.
//
// The bound, by construction: the live memory -- every object plus the
// program's own tables (object table, survivor slots, thread bookkeeping:
// allocated before phase 0 and counted from the start) -- is at most
// B = 0.8 L at every moment; it is checked before every allocation. Each
// batch holds B minus the tables (~2.5% of L) and the survivors of the three
// phases before (~1-2%, the large batch's one survivor being a whole block):
// ~0.77 L. The phase markers' live= is that same figure; --report-live
// prints its peak (and B and L, in bytes) on stderr at the end.
//
// The survivors are sparse so that the resident floor (pages holding a live
// byte) stays near the bound, ~0.82 L: an allocator that gives back all the
// rest can stay below L. (One survivor per 32 KiB would pin 1/8 of a small
// batch's pages, ~0.1 L, for the three phases it lives.)
//
// An allocator that reuses a released batch's memory for the next batch (of
// another kind, on another thread) or gives it back at once needs ~0.8 L;
// one that keeps it for the thread or the size class that freed it (per-
// thread arenas or heaps, free pages given back only after a decay period
// or when that thread allocates again) holds two or three batches, 1.5-2.5 L:
// above the limit, although the program never is. Peak RSS and the time
// spent above L are the figures of interest (ebbrun --limit-mb,
// bench/compare).
//
// With --threads 1 every batch runs on the one thread: only the change of
// kind is left (glibc, mimalloc and jemalloc still went to 1.6-1.7 L).
#include <algorithm>
#include <vector>

#include "lines.h"

namespace {

constexpr const char* kDescription =
    "Memory pressure: one batch at a time, each on the next worker, live memory at most\n"
    "0.8 L (--limit-mb L); batches of small, mid-size and large objects in turn, each\n"
    "freed but for a few survivors before the next one is built.";

constexpr unsigned kPhases = 12;
constexpr unsigned kKinds = 3;
constexpr const char* kKindName[kKinds] = {"small", "mid", "large"};
constexpr uint64_t kMinLimitMiB = 16;
constexpr uint64_t kKeepEvery = 256;     // one survivor per this many objects
constexpr unsigned kSurvivorPhases = 3;  // a survivor lives through this many more phases

struct Slot {
  void* p;
  uint64_t size;
};

unsigned floor_log2(uint64_t v) { return 63u - unsigned(__builtin_clzll(v)); }

// The size of the next object of a batch of kind `kind`.
uint64_t object_size(wl::Rng& r, unsigned kind, unsigned large_bits) {
  switch (kind) {
    case 0:
      return wl::octave_uniform(r, 5, 11);  // 32 B .. 2 KiB
    case 1:
      return wl::octave_uniform(r, 12, 18);  // 4 KiB .. 256 KiB
    default:
      return wl::octave_uniform(r, large_bits, large_bits + 3);
  }
}

// A stride coprime to n near n / golden ratio: i * stride mod n visits every
// index once, far from the last one (the free order of a batch).
uint64_t scatter_stride(uint64_t n) {
  if (n <= 2) return 1;
  uint64_t s = n * 618 / 1000;
  auto gcd = [](uint64_t a, uint64_t b) {
    while (b) a %= b, std::swap(a, b);
    return a;
  };
  while (gcd(s, n) != 1) ++s;
  return s;
}

uint64_t object_id(unsigned phase, uint64_t index) { return (uint64_t(phase) << 40) | index; }

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "pressure", kDescription);
  const unsigned T = opt.threads;
  const uint64_t limit = wl::scaled(double(opt.limit_mb), opt.scale, kMinLimitMiB) * wl::MiB;
  const uint64_t bound = limit / 10 * 8;
  const unsigned large_bits = std::max(17u, floor_log2(limit) - 8);

  // The object table is sized for the largest batch: the number of objects
  // of the phase's stream that fit in the bound with nothing else live (the
  // real batch stops at the same stream's first object that does not fit in
  // what is left, so it is never longer).
  uint64_t capacity = 0;
  for (unsigned j = 0; j < kPhases; ++j) {
    wl::Rng r(opt.seed, j);
    uint64_t n = 0, bytes = 0;
    for (;;) {
      const uint64_t s = object_size(r, j % kKinds, large_bits);
      if (bytes + s > bound) break;
      bytes += s;
      ++n;
    }
    capacity = std::max(capacity, n);
  }
  std::vector<Slot> table(capacity);
  // survivors[j % 3]: the survivors of phase j until phase j + 3 retires them.
  std::vector<std::vector<Slot>> survivors(kSurvivorPhases);
  std::vector<uint64_t> survivor_phase(kSurvivorPhases, 0);
  for (auto& s : survivors) s.reserve(capacity / kKeepEvery + 1);
  std::vector<wl::ThreadStats> stats(T);
  std::vector<std::thread> threads;
  threads.reserve(T);

  // Live memory. Only one worker runs at a time and the barrier hands over
  // between them, so plain counters do.
  uint64_t live =
      table.capacity() * sizeof(Slot) + survivors.capacity() * sizeof(std::vector<Slot>) +
      survivor_phase.capacity() * sizeof(uint64_t) + stats.capacity() * sizeof(wl::ThreadStats) +
      threads.capacity() * sizeof(std::thread);
  for (const auto& s : survivors) live += s.capacity() * sizeof(Slot);
  const uint64_t tables = live;
  uint64_t peak = live;
  if (live >= bound)
    wl::fail("the object table alone (%llu bytes) exceeds the bound", (unsigned long long)live);

  auto drop = [&](wl::ThreadStats& st, const Slot& o, uint64_t id) {
    st.checksum += wl::obj_free_lines(o.p, id, o.size);
    ++st.frees;
    live -= o.size;
  };
  // Worker t retires the survivors of the phase in slot k.
  auto retire = [&](unsigned t, unsigned k) {
    wl::ThreadStats& st = stats[t];
    const unsigned phase = unsigned(survivor_phase[k]);
    for (size_t x = 0; x < survivors[k].size(); ++x) {
      // Survivors keep their batch's allocation order: the x-th one is
      // object x * kKeepEvery of its phase.
      drop(st, survivors[k][x], object_id(phase, x * kKeepEvery));
      st.cross_frees += phase % T != t;
    }
    survivors[k].clear();
  };

  // Phase j on worker t.
  auto batch = [&](unsigned j, unsigned t) {
    wl::ThreadStats& st = stats[t];
    const unsigned kind = j % kKinds;
    const unsigned k = j % kSurvivorPhases;
    // 1 build
    wl::Rng r(opt.seed, j);
    uint64_t n = 0;
    for (;;) {
      const uint64_t s = object_size(r, kind, large_bits);
      if (live + s > bound) break;
      if (n == capacity) wl::fail("phase %u: object table full", j);
      table[n] = Slot{wl::obj_alloc_lines(object_id(j, n), s), s};
      live += s;
      ++st.allocs;
      ++n;
    }
    peak = std::max(peak, live);
    const uint64_t built = live;
    // 2 release (the survivors go to their slot after the retire below)
    const uint64_t stride = scatter_stride(n);
    for (uint64_t x = 0; x < n; ++x) {
      const uint64_t i = x * stride % n;
      if (i % kKeepEvery != 0) drop(st, table[i], object_id(j, i));
    }
    // 3 retire
    retire(t, k);
    for (uint64_t i = 0; i < n; i += kKeepEvery) survivors[k].push_back(table[i]);
    survivor_phase[k] = j;
    wl::mark("phase %u %s done worker=%u objects=%llu built-live=%.1fMiB live=%.1fMiB", j,
             kKindName[kind], j % T, (unsigned long long)n, wl::mib(built), wl::mib(live));
  };

  // Main + T workers: every phase is bracketed by two barrier waits; the
  // workers whose turn it is not pass both without touching the allocator.
  wl::Barrier bar(T + 1);
  auto worker = [&](unsigned t) {
    for (unsigned j = 0; j <= kPhases; ++j) {
      bar.arrive_and_wait();
      if (j % T == t) {
        if (j < kPhases)
          batch(j, t);
        else
          for (unsigned k = 0; k < kSurvivorPhases; ++k) retire(t, k);
      }
      bar.arrive_and_wait();
    }
  };
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u limit=%.1fMiB bound=%.1fMiB scale=%g seed=%llu", T, wl::mib(limit),
           wl::mib(bound), opt.scale, (unsigned long long)opt.seed);
  for (unsigned j = 0; j < kPhases; ++j) {
    char name[32];
    snprintf(name, sizeof name, "phase %u %s", j, kKindName[j % kKinds]);
    wl::run_phase(bar, name);
  }
  wl::run_phase(bar, "free-all");
  for (auto& th : threads) th.join();

  if (live != tables)
    wl::fail("bookkeeping: %llu bytes live at the end", (unsigned long long)(live - tables));
  wl::mark("free-all done live=%.1fMiB frees=%llu cross-thread=%llu", wl::mib(live),
           (unsigned long long)(wl::sum(stats, &wl::ThreadStats::frees)),
           (unsigned long long)wl::sum(stats, &wl::ThreadStats::cross_frees));
  if (opt.report_live)
    wl::mark("live peak=%llu bytes (%.1fMiB) bound=%llu limit=%llu", (unsigned long long)peak,
             wl::mib(peak), (unsigned long long)bound, (unsigned long long)limit);
  // Which worker ran a batch does not change the objects: --threads enters
  // the checksum as the conventions say it must.
  return wl::verify_and_finish(stats, 0, /*check_live=*/false, T);
}
