// rptest: threads with random sizes that free objects of other threads, with
// short pauses (the shape of rpmalloc's benchmark, rptest in mimalloc-bench).
//
// Each of the T threads keeps a working set of slots and runs rounds. A
// round:
//   1. replaces 256 random slots (frees the object there after checking it,
//      allocates a new one of a random size);
//   2. hands 128 live objects, taken from a random run of its slots, to the
//      next thread (t+1 mod T) as one batch through that thread's mailbox (a
//      bounded lock-free ring of batches) and fills those slots anew;
//   3. frees every object of the batches waiting in its own mailbox (objects
//      the previous thread allocated: cross-thread frees).
// Every 16th round the thread pauses for 50 us (nanosleep), so that the
// frees of the other threads pile up meanwhile.
//
// Sizes (object_size()): 75% 16 B .. 512 B, 25% 512 B .. 16 KiB, octave-
// uniform within each range (mean ~880 B). Working set: 4096 slots per
// thread (~3.5 MiB); rounds: 10,000 x scale per thread, i.e. 512 frees per
// round, about a quarter of them cross-thread.
//
// A full mailbox makes the sender keep the batch and free it itself (counted
// as local frees), so timing changes which thread frees what, never the set
// of objects allocated: the checksum is deterministic.
#include <memory>
#include <vector>

#include <time.h>

#include "lines.h"

namespace {

constexpr const char* kDescription =
    "Remote frees with random sizes: T threads replace random slots (16 B .. 16 KiB), hand\n"
    "batches of live objects to the next thread, which frees them; short pauses.";

constexpr uint64_t kSlots = 4096;
constexpr unsigned kReplace = 256;  // per round
constexpr unsigned kBatch = 128;    // objects handed over per round
constexpr unsigned kMailbox = 8;    // batches in flight per thread (power of two)
constexpr unsigned kPauseEvery = 16;
constexpr long kPauseNs = 50000;
constexpr double kRounds = 10000;

uint64_t object_size(wl::Rng& r) {
  if (r.below(4) < 3) return wl::octave_uniform(r, 4, 9);  // 16 B .. 512 B
  return wl::octave_uniform(r, 9, 14);                     // 512 B .. 16 KiB
}

struct Obj {
  void* p = nullptr;
  uint64_t id = 0;
  uint64_t size = 0;
};

struct Batch {
  Obj o[kBatch];
};

// Bounded SPSC ring of batches (the slots' storage is the ring's own).
struct Mailbox {
  alignas(64) std::atomic<uint64_t> head{0};
  alignas(64) std::atomic<uint64_t> tail{0};
  Batch buf[kMailbox];
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "rptest", kDescription);
  const unsigned T = opt.threads;
  const uint64_t rounds = wl::scaled(kRounds, opt.scale, 20);

  std::vector<std::vector<Obj>> slots(T, std::vector<Obj>(kSlots));
  std::vector<std::unique_ptr<Mailbox>> mailbox;
  for (unsigned t = 0; t < T; ++t) mailbox.push_back(std::make_unique<Mailbox>());
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Obj>& my = slots[t];
    Mailbox& inbox = *mailbox[t];
    Mailbox& outbox = *mailbox[(t + 1) % T];
    uint64_t counter = 0;
    auto make = [&](Obj& o) {
      o.id = wl::make_id(t, counter++);
      o.size = object_size(r);
      o.p = wl::obj_alloc_lines(o.id, o.size);
      ++st.allocs;
    };
    auto drop = [&](Obj& o) {
      st.checksum += wl::obj_free_lines(o.p, o.id, o.size);
      st.cross_frees += (o.id >> 40) != t;
      ++st.frees;
      o.p = nullptr;
    };
    auto drain_inbox = [&] {
      const uint64_t h = inbox.head.load(std::memory_order_acquire);
      uint64_t tl = inbox.tail.load(std::memory_order_relaxed);
      for (; tl < h; ++tl) {
        Batch& b = inbox.buf[tl % kMailbox];
        for (Obj& o : b.o) drop(o);
        inbox.tail.store(tl + 1, std::memory_order_release);
      }
    };

    bar.arrive_and_wait();
    for (Obj& o : my) make(o);
    bar.arrive_and_wait();

    bar.arrive_and_wait();  // run
    for (uint64_t round = 0; round < rounds; ++round) {
      for (unsigned i = 0; i < kReplace; ++i) {
        Obj& s = my[r.below(kSlots)];
        drop(s);
        make(s);
      }
      const uint64_t first = r.below(kSlots - kBatch + 1);
      const uint64_t h = outbox.head.load(std::memory_order_relaxed);
      const bool room = T > 1 && h - outbox.tail.load(std::memory_order_acquire) < kMailbox;
      Batch* b = room ? &outbox.buf[h % kMailbox] : nullptr;
      for (unsigned i = 0; i < kBatch; ++i) {
        Obj& s = my[first + i];
        if (b) b->o[i] = s;
        else drop(s);  // the next thread is behind (or there is none)
        make(s);
      }
      if (b) outbox.head.store(h + 1, std::memory_order_release);
      drain_inbox();
      if ((round + 1) % kPauseEvery == 0) {
        timespec ts{0, kPauseNs};
        nanosleep(&ts, nullptr);
      }
      if (t == 0 && (round + 1) % (rounds / 4 + 1) == 0)
        wl::mark("run %llu%%", (unsigned long long)((round + 1) * 100 / rounds));
    }
    bar.arrive_and_wait();

    // Drain: after the barrier nobody sends any more.
    bar.arrive_and_wait();
    drain_inbox();
    for (Obj& o : my) drop(o);
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u slots/thread=%llu rounds/thread=%llu scale=%g seed=%llu", T,
           (unsigned long long)kSlots, (unsigned long long)rounds, opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "fill");
  wl::run_phase(bar, "run");
  {
    const uint64_t frees = wl::sum(stats, &wl::ThreadStats::frees), cross = wl::sum(stats, &wl::ThreadStats::cross_frees);
    wl::mark("run done frees=%llu cross-thread=%llu (%.1f%%)", (unsigned long long)frees, (unsigned long long)cross,
             frees ? 100.0 * double(cross) / double(frees) : 0.0);
  }
  wl::run_phase(bar, "drain");
  wl::mark("drain done");
  for (auto& th : threads) th.join();

  const uint64_t expected = T * (kSlots + rounds * (kReplace + kBatch));
  return wl::verify_and_finish(stats, expected, /*check_live=*/false);
}
