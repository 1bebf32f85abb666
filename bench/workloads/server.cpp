// server: larson-style producer/consumer churn with cross-thread frees.
//
// Each of the T threads owns a slot array.  At each step a thread
//   1. frees the object in a random slot of its array (after checking it),
//   2. allocates a replacement of random size 16 B .. 4 KiB (octave-uniform,
//      mean ~765 B),
//   3. hands the new object to the next thread (t+1 mod T) through that
//      thread's mailbox, a bounded single-producer/single-consumer lock-free
//      ring, and refills its slot with an object taken from its own mailbox,
//      which thread t-1 allocated.
// So the object freed in step 1 was normally allocated by another thread:
// with equal-speed threads nearly all frees are cross-thread (the fraction is
// logged).  If the next thread's mailbox is full the new object stays local;
// if the own mailbox is empty the slot is left empty for a while.
//
// Which object ends up where depends on thread timing, but the set of objects
// allocated does not (each thread's ids and sizes come from its own PRNG),
// and every object is checked exactly once when it is freed, so the checksum
// (a sum over objects) is deterministic.
//
// Volume: ~32 MiB of slots in total x scale; 10 M steps x scale in total.
#include <memory>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kDescription =
    "Larson-style server: T threads replace objects (16 B .. 4 KiB) in random slots;\n"
    "new objects are handed to the next thread through lock-free mailboxes, so most\n"
    "frees are cross-thread.";

constexpr double kWorkingSet = 32.0 * wl::MiB;
constexpr double kSteps = 10e6;
constexpr double kMeanSize = 765.0;  // of octave_uniform(4, 12)

struct Obj {
  void* p = nullptr;
  uint64_t id = 0;
  uint32_t size = 0;
  uint32_t owner = 0;  // allocating thread
};

// Bounded single-producer/single-consumer ring of Obj.
class Mailbox {
 public:
  explicit Mailbox(size_t capacity_pow2)
      : mask_(capacity_pow2 - 1), buf_(new Obj[capacity_pow2]) {}
  bool push(const Obj& o) {  // producer only
    uint64_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) > mask_) return false;  // full
    buf_[h & mask_] = o;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  bool pop(Obj& o) {  // consumer only
    uint64_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_.load(std::memory_order_acquire)) return false;  // empty
    o = buf_[t & mask_];
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

 private:
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) const uint64_t mask_;
  std::unique_ptr<Obj[]> buf_;
};

}  // namespace

int main(int argc, char** argv) {
  const wl::Options opt = wl::parse_args(argc, argv, "server", kDescription);
  const unsigned T = opt.threads;
  const uint64_t slots_per_thread = wl::scaled(kWorkingSet / kMeanSize / T, opt.scale, 16);
  const uint64_t steps_per_thread = wl::scaled(kSteps / T, opt.scale, 1000);
  // Mailbox: a quarter of the slot count (power of two, 16 .. 4096), half
  // pre-filled so the hand-off starts in steady state.
  size_t ring = 16;
  while (ring < 4096 && ring * 4 < slots_per_thread) ring *= 2;
  const size_t prefill = ring / 2;

  // All bookkeeping is allocated up front.
  std::vector<std::vector<Obj>> slots(T, std::vector<Obj>(slots_per_thread));
  std::vector<std::unique_ptr<Mailbox>> mailbox;
  for (unsigned t = 0; t < T; ++t) mailbox.push_back(std::make_unique<Mailbox>(ring));
  std::vector<wl::ThreadStats> stats(T);
  wl::Barrier bar(T + 1);

  auto worker = [&](unsigned t) {
    wl::ThreadStats& st = stats[t];
    wl::Rng r(opt.seed, t);
    std::vector<Obj>& my = slots[t];
    Mailbox& inbox = *mailbox[t];
    Mailbox& outbox = *mailbox[(t + 1) % T];
    uint64_t counter = 0;
    auto make = [&]() {
      Obj o;
      o.id = wl::make_id(t, counter++);
      o.size = uint32_t(wl::octave_uniform(r, 4, 12));  // 16 B .. 4 KiB
      o.owner = t;
      o.p = wl::obj_alloc(o.id, o.size);
      ++st.allocs;
      return o;
    };
    auto drop = [&](Obj& o) {
      st.checksum += wl::obj_free(o.p, o.id, o.size);
      st.cross_frees += (o.owner != t);
      ++st.frees;
      o.p = nullptr;
    };

    // Fill: own slots, and half of the next thread's mailbox.
    bar.arrive_and_wait();
    for (Obj& o : my) o = make();
    for (size_t i = 0; i < prefill; ++i)
      if (!outbox.push(make())) wl::fail("mailbox rejected prefill");
    bar.arrive_and_wait();

    bar.arrive_and_wait();  // run
    for (uint64_t step = 0; step < steps_per_thread; ++step) {
      Obj& s = my[r.below(my.size())];
      if (s.p) drop(s);
      Obj fresh = make();
      if (outbox.push(fresh)) {
        if (!inbox.pop(s)) s = Obj{};  // nothing handed to us right now
      } else {
        s = fresh;  // next thread is behind: keep it
      }
      if (t == 0 && (step + 1) % (steps_per_thread / 4 + 1) == 0)
        wl::mark("run %llu%%", (unsigned long long)((step + 1) * 100 / steps_per_thread));
    }
    bar.arrive_and_wait();

    // Drain: after the barrier nobody pushes any more.
    bar.arrive_and_wait();
    for (Obj& o : my)
      if (o.p) drop(o);
    for (Obj o; inbox.pop(o);) drop(o);
    bar.arrive_and_wait();
  };

  std::vector<std::thread> threads;
  threads.reserve(T);
  for (unsigned t = 0; t < T; ++t) threads.emplace_back(worker, t);

  wl::mark("start threads=%u slots/thread=%llu steps/thread=%llu mailbox=%zu scale=%g seed=%llu",
           T, (unsigned long long)slots_per_thread, (unsigned long long)steps_per_thread, ring,
           opt.scale, (unsigned long long)opt.seed);
  wl::run_phase(bar, "fill");
  wl::run_phase(bar, "run");
  {
    uint64_t frees = wl::sum(stats, &wl::ThreadStats::frees), cross = wl::sum(stats, &wl::ThreadStats::cross_frees);
    wl::mark("run done frees=%llu cross-thread=%llu (%.1f%%)", (unsigned long long)frees,
             (unsigned long long)cross, frees ? 100.0 * double(cross) / double(frees) : 0.0);
  }
  wl::run_phase(bar, "drain");
  wl::mark("drain done");
  for (auto& th : threads) th.join();

  const uint64_t expected = T * (slots_per_thread + prefill + steps_per_thread);
  return wl::verify_and_finish(stats, expected, /*check_live=*/false);
}
