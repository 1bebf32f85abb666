// Memory pressure: the limit the process runs under, and what the allocator
// does near it.
//
// The limit is EBBMALLOC_LIMIT_MB when set (the usage is then the process's
// RSS), else its cgroup's (report/mem_limit.h; the usage is the cgroup's,
// less its inactive file pages), looked up when the heap first reaches
// 16 MiB or the reporter first wakes. `0` switches limits off. The mark is
// EBBMALLOC_PRESSURE_PCT percent of the limit.
//
//   - Each reporter pass samples the usage (and re-reads a cgroup's limit at
//     most once a second: limits change at run time).
//   - The return curve never keeps more warm free memory than the headroom
//     to the mark: nearing the limit, the cushions shrink.
//   - At or over the mark a pass is a pressure pass: every thread cache is
//     drained, every free page of slabs goes back, and warm free blocks of
//     any age, largest first, until the usage is down to the target (below
//     the mark by half its distance to the limit); the reporter looks again
//     after DELAY_MS, until the usage is under the mark.
//   - Between samples the page heap keeps an estimate (buddy/page_heap.h,
//     Headroom): the last sample plus what it faulted in since. A heap about
//     to fault in memory past the mark reads the usage itself and, still
//     past it, gives back warm free memory down to the target first,
//     synchronously.
// Nothing of this is on the malloc/free fast paths, and without a limit
// none of it runs.
#pragma once
#include <atomic>
#include <cstdint>

#include "buddy/page_heap.h"
#include "common/options.h"
#include "report/mem_limit.h"

namespace ebb {

struct PressureSnapshot {
  uint64_t limit_bytes;   // 0: no limit
  uint64_t mark_bytes;    // the usage that is pressure
  uint64_t usage_bytes;   // at the last sample
  uint64_t passes;        // pressure passes of the reporter
  uint64_t reliefs;       // front/pressure_relief.h
  uint64_t relief_bytes;
  LimitSource source;
  char path[kCgroupPathMax];  // the cgroup directory whose limit it is ("" for the option)
};

class Pressure {
 public:
  // At start-up (the library constructor): takes EBBMALLOC_LIMIT_MB, or
  // arranges for the cgroup's to be looked up by discover().
  void init(const Options* opts, PageHeap* heap);
  // Once: finds the cgroup and its limit, and samples the usage so that the
  // heap's estimate starts true. Called by the heap when it first reaches
  // 16 MiB (Headroom::discover, heap lock held) or by the reporter thread's
  // first pass, whichever comes first; a no-op after that or with the option.
  void discover();
  bool discovery_pending() const { return pending_.load(std::memory_order_relaxed); }
  bool active() const { return limit_.load(std::memory_order_relaxed) != 0; }
  // A limit, or a memory cgroup whose limit may be set later: sample() each pass.
  bool watching() const { return watching_.load(std::memory_order_acquire); }
  uint64_t mark_bytes() const { return heap_ ? heap_->headroom().mark.load(std::memory_order_relaxed) : 0; }
  // What a pressure pass, or a heap about to fault in past the mark, brings
  // the usage down to (Headroom::target).
  uint64_t target_bytes() const { return heap_ ? heap_->headroom().target.load(std::memory_order_relaxed) : 0; }
  // Reporter thread: re-reads a cgroup's limit (at most once a second) and
  // returns the usage now (0 if unreadable or without a limit); the heap's
  // estimate starts again from it.
  uint64_t sample(uint64_t now);
  // The heap's estimate says the mark is reached (a pass should not wait).
  bool urgent() const { return heap_ && heap_->pressure_urgent(); }
  // The reporter gave `bytes` back: the estimate falls with it.
  void note_released(uint64_t bytes) { heap_->headroom_release(bytes); }
  void count_pass() { passes_.fetch_add(1, std::memory_order_relaxed); }
  // An allocating thread gave back `bytes` of free slab pages itself
  // (front/pressure_relief.h).
  void note_relief(uint64_t bytes) {
    reliefs_.fetch_add(1, std::memory_order_relaxed);
    relief_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  // Any thread, no lock: the usage read now.
  uint64_t usage_now() const;
  void snapshot(PressureSnapshot* out) const;

 private:
  void set_limit(uint64_t limit, LimitSource source);
  void start_estimate();

  const Options* opts_ = nullptr;
  PageHeap* heap_ = nullptr;
  std::atomic<bool> watching_{false};
  std::atomic<bool> pending_{false};  // discover() has yet to run
  std::atomic<uint64_t> limit_{0};
  std::atomic<uint32_t> source_{0};
  std::atomic<uint64_t> usage_{0};
  std::atomic<uint64_t> passes_{0};
  std::atomic<uint64_t> reliefs_{0};
  std::atomic<uint64_t> relief_bytes_{0};
  // The cgroup: rewritten only when its limiting directory changes (the
  // reporter writes the buffer not in use, then publishes it), so readers
  // on other threads (usage_now, snapshot) never see a half-written path.
  CgroupLimit cg_[2];
  std::atomic<const CgroupLimit*> cur_{nullptr};
  uint64_t reread_at_ = 0;  // reporter thread only
};

}  // namespace ebb
