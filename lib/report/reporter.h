// Free page reporting, user-space edition (after mm/page_reporting.c).
//
// The buddy's free path calls request() when warm free memory of reportable
// order passes the mark. The reporter thread ("ebb-reporter") then wakes,
// and in batches pulls the coldest warm blocks off their lists (heap lock
// held), madvises them with the heap lock dropped, and puts them back behind
// the boundaries as reported. Blocks that are not cold yet set a deadline
// when the thread wakes again; with nothing left to do it sleeps on a futex
// with no timeout, so an idle process sees no wake-ups.
//
// The thread exists only while there is memory to give back: a program that
// never has any keeps the one thread it started with (unshare(CLONE_NEWUSER),
// signal-handler forks and __libc_single_threaded depend on that). With no
// thread, a request starts one only if the WorthHook sees at least the mark
// of free memory (heap, slabs, the caller's cache); the thread is created by
// the next maybe_start_thread(), where no allocator lock is held. A thread
// that has been idle for `linger_ms` (nothing to report, no deadline) exits.
//
// State machine (one atomic word, also the futex):
//   NO_THREAD -> no thread; request() moves to START if the hook says so
//   START     -> a thread is wanted; maybe_start_thread() creates it
//   IDLE      -> sleeping without deadline; request() moves to REQUESTED +
//                wake; after linger_ms the thread moves to NO_THREAD, exits
//   REQUESTED -> a pass is wanted; the thread waits `delay` then goes ACTIVE
//   ACTIVE    -> running a pass; request() moves to REQUESTED (pass again)
//   ARMED     -> sleeping until a deadline that already covers every warm
//                block; request() needs to do nothing
//
// With a publisher set (live statistics, EBBMALLOC_LIVE_STATS=1) the thread
// also calls it every `publish_ms` and after each pass, so its sleeps are
// bounded by that period; it then runs even with reporting switched off, and
// never exits.
#pragma once
#include <atomic>
#include <cstdint>

#include "buddy/page_heap.h"
#include "common/lock.h"
#include "common/options.h"
#include "os/os.h"
#include "report/pressure.h"
#include "report/return_curve.h"

namespace ebb {

struct ReporterStats {
  std::atomic<uint64_t> passes{0};
  std::atomic<uint64_t> blocks{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> madvise_calls{0};
  std::atomic<uint64_t> madvise_failures{0};
  std::atomic<uint64_t> wakeups{0};
  std::atomic<uint64_t> cache_drains{0};
  std::atomic<uint64_t> slab_pages{0};  // pages of slabs in use given back
};

class Reporter {
 public:
  // Drains thread caches that have been idle for cold_ms (all if `force`);
  // returns the time the caches need looking at again (UINT64_MAX: never).
  using CacheHook = uint64_t (*)(uint64_t now, uint64_t cold_ms, bool force);
  // Reports the free pages of slabs still in use that have been free for
  // page_cold_ms (the front end's half of a pass, run in rounds under
  // batch_lock() with advise_ranges()), moves transfer batches unused for
  // batch_cold_ms (as long as an idle cache waits) and objects quarantined
  // for cold_ms to their slabs; returns the next deadline.
  using SlabHook = uint64_t (*)(uint64_t cold_ms, uint64_t batch_cold_ms, uint64_t page_cold_ms,
                                uint64_t* released);
  // With no thread: is there enough free memory to be worth starting one?
  using WorthHook = bool (*)();

  void init(PageHeap* heap, const Options* opts);
  void set_cache_hook(CacheHook h) { cache_hook_ = h; }
  void set_slab_hook(SlabHook h) { slab_hook_ = h; }
  void set_worth_hook(WorthHook h) { worth_hook_ = h; }

  // For the slab hook: gives the n ranges back (no lock held; in as few
  // system calls as os::advise_free_ranges can), counting calls, failures
  // and the bytes that went back; ok[i] for range i.
  void advise_ranges(const os::Range* r, unsigned n, bool* ok, uint64_t* released);
  // Held for a whole isolate/madvise/putback round, so that fork never
  // sees memory taken off its lists.
  Mutex& batch_lock() { return batch_lock_; }
  // Called by the reporter thread with no allocator lock held.
  using PublishHook = void (*)();
  // Before the thread starts (or in a fork child): a non-null hook asks for
  // the thread; null removes the publisher.
  void set_publisher(PublishHook h, uint32_t every_ms) {
    publish_hook_ = h;
    publish_ms_ = every_ms ? every_ms : 1;
    if (h) {
      uint32_t s = kNoThread;
      state_.compare_exchange_strong(s, kStart, std::memory_order_relaxed);
    }
  }

  // Cheap; may be called with the heap lock held.
  void request() {
    if (!enabled_) return;
    uint32_t s = state_.load(std::memory_order_relaxed);
    if (s == kIdle || s == kActive || s == kNoThread) request_slow(s);
  }
  // Warm heap memory passed the (moving) mark: as request(), and also wakes a
  // thread sleeping towards a deadline (ARMED), since a mass free may put
  // memory beyond what the return curve keeps long before that deadline.
  void request_now() {
    if (!enabled_) return;
    uint32_t s = state_.load(std::memory_order_relaxed);
    if (s == kArmed) {
      if (state_.compare_exchange_strong(s, kRequested, std::memory_order_acq_rel)) os::futex_wake(&state_, 1);
      return;
    }
    if (s == kIdle || s == kActive || s == kNoThread) request_slow(s);
  }
  // The heap reached a memory limit's mark (Headroom::urge): as
  // request_now(), unless the last pressure pass found almost nothing to
  // give back and its wait is not over (usage over the mark that is the
  // program's own does not get a pass every DELAY_MS).
  void request_pressure() {
    if (os::now_ms() < pressure_quiet_until_.load(std::memory_order_relaxed)) return;
    request_now();
  }
  // A thread cache took or returned memory: make sure the reporter will look
  // at caches later (wakes an idle reporter; with no thread, asks the worth
  // hook, which costs a walk: callers look at state() first and sample).
  void note_activity() {
    if (!enabled_) return;
    const uint32_t s = state_.load(std::memory_order_relaxed);
    if (s == kIdle || s == kNoThread) request_slow(s);
  }
  // Objects freed into the central bins. With no thread, slabs that are
  // dirty already do not ask again; so every `mark` bytes freed there ask
  // the worth hook once (its walk is then paid once per mark bytes freed).
  void note_freed(uint64_t bytes) {
    if (__builtin_expect(state_.load(std::memory_order_relaxed) != kNoThread, 1) || !enabled_) return;
    if (freed_since_.fetch_add(bytes, std::memory_order_relaxed) + bytes < mark_bytes_) return;
    freed_since_.store(0, std::memory_order_relaxed);
    request_slow(kNoThread);
  }
  // Call only where no allocator lock is held: starts the thread if a
  // request is waiting for one.
  void maybe_start_thread() {
    if (__builtin_expect(state_.load(std::memory_order_relaxed) == kStart, 0)) start_thread();
  }
  // Reports every free page now, whatever its order or age (malloc_trim).
  // Returns the bytes given back.
  uint64_t report_all();

  // In a fork child (whose only thread held every allocator lock): the
  // thread does not exist there; one is started again when needed.
  void postfork_child();
  // In the child of a fork that interrupted the allocator (api/fork.cpp):
  // only atomic stores, nothing that takes a lock.
  void postfork_child_interrupted();
  void allow_thread_start() { can_start_.store(true, std::memory_order_release); }

  // The memory limit (report/pressure.h); init() it at start-up.
  Pressure& pressure() { return pressure_; }
  const Pressure& pressure() const { return pressure_; }

  const ReporterStats& stats() const { return stats_; }
  ReporterStats& stats_mut() { return stats_; }
  bool thread_running() const { return state_.load(std::memory_order_relaxed) >= kIdle; }
  uint32_t state() const { return state_.load(std::memory_order_relaxed); }
  uint64_t last_keep_pages() const { return last_keep_pages_.load(std::memory_order_relaxed); }

  static constexpr uint32_t kNoThread = 0, kStart = 1, kIdle = 2, kRequested = 3, kActive = 4, kArmed = 5;
  static constexpr uint64_t kNever = ~uint64_t{0};

 private:
  void request_slow(uint32_t s);
  void start_thread();
  static void* thread_main(void* arg);
  void run();
  // One pass: slabs (free pages older than slab_cold_ms), then the buddy
  // lists low to high (warm blocks stamped at or before `cutoff`, 0: none); returns
  // the slabs' next deadline. Re-arms the buddy's notify mark at its end.
  uint64_t pass(uint64_t cutoff, uint64_t slab_cold_ms, unsigned min_order, uint64_t* released);
  // After a pass: the buddy's notify mark = what is left warm + the mark.
  void rearm_notify();
  uint64_t mark_pages() const { return mark_bytes_ >> kPageShift ? mark_bytes_ >> kPageShift : 1; }
  uint64_t in_use_pages();  // takes the heap lock
  // Unused this long, a thread cache is drained and a transfer batch goes
  // to its slabs: COLD_MS / 2 (at least DELAY_MS, at most COLD_MS). (A
  // batch goes sooner when the free pages of slabs do: pass().)
  uint64_t idle_ms() const;
  // What the reporter moved out of use since `in_use_before` is not a fall
  // in demand: the return curve's history moves down with it.
  void discount_since(uint64_t in_use_before);
  // A pass of the return curve (return_curve.h), keeping at most `headroom`
  // pages warm (a memory limit's); returns the next deadline.
  uint64_t curve_pass(uint64_t headroom, uint64_t* released);
  // A memory limit's mark is reached (the heap's estimate, or the usage now).
  bool pressed(uint64_t now);
  // At or over a memory limit's mark (`usage`, sampled now): every cache
  // drained, every free page of slabs back, and warm free blocks, largest
  // first, until the usage is down to the pressure target; returns when to
  // look again.
  uint64_t pressure_pass(uint64_t usage, uint64_t* released);
  // Warm free blocks back, largest first (the most memory per madvise call),
  // until *released has grown by `bytes`, in rounds of up to 64 blocks
  // given back together; the last block only in part.
  void give_back_largest(uint64_t bytes, uint64_t* released);
  // The second half of a round (batch lock held, n <= kMaxBatch blocks
  // isolated): their resident pages back, at most `max_pages`, without the
  // heap lock (nobody else touches an isolated block), then back on their
  // lists; what stays resident keeps its free time (freed[k], or the time
  // they go back if freed is null), a block whose madvise failed is free
  // from now on (retried once cold again). Counts the round; *now is when
  // they went back. False if a madvise failed.
  bool give_back_isolated(const uint32_t* ids, const uint64_t* freed, unsigned n, uint64_t max_pages,
                          uint64_t* released, uint64_t* now);
  // Publishes if the period is over; returns when the next one is due
  // (kNever without a publisher).
  uint64_t publish_if_due(uint64_t now);
  // Sleeps `ms`, publishing on time meanwhile.
  void pause_ms(uint64_t ms);

  PageHeap* heap_ = nullptr;
  const Options* opts_ = nullptr;
  bool enabled_ = false;
  CacheHook cache_hook_ = nullptr;
  SlabHook slab_hook_ = nullptr;
  WorthHook worth_hook_ = nullptr;
  PublishHook publish_hook_ = nullptr;
  uint32_t publish_ms_ = 0;
  uint64_t next_publish_ = 0;  // reporter thread only
  std::atomic<uint32_t> state_{kNoThread};
  std::atomic<bool> starting_{false};
  std::atomic<bool> can_start_{false};
  std::atomic<uint64_t> retry_at_{0};  // a failed pthread_create is retried from then on
  std::atomic<uint64_t> freed_since_{0};  // bytes freed into the bins since the last worth check
  uint64_t mark_bytes_ = 0;
  Mutex batch_lock_;  // one isolate/madvise/putback round at a time
  ReporterStats stats_;
  ReturnCurve curve_;  // reporter thread only
  Pressure pressure_;
  uint64_t pressure_wait_ms_ = 0;  // reporter thread only: a pressure pass that found nothing waits longer
  std::atomic<uint64_t> pressure_quiet_until_{0};  // request_pressure() does nothing before then
  std::atomic<uint64_t> last_keep_pages_{0};  // what the last pass kept (statistics)
  // Reporter thread only: the least time between passes, and a request's
  // wait before one: DELAY_MS, or the plan's min_age_ms while it follows a
  // mass free (ReturnPlan::follow).
  uint64_t gap_ms_ = 0;
  uint64_t frontier_ = 0;         // the heap's at the last pass
};

}  // namespace ebb
