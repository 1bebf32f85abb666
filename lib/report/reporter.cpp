#include "report/reporter.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

#include "common/check.h"
#include "common/log.h"
#include "os/os.h"

namespace ebb {

namespace {
constexpr unsigned kMaxBatch = 1024;

void sleep_ms(uint64_t ms) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
  while (nanosleep(&ts, &ts) != 0) {
  }
}
}  // namespace

void Reporter::init(PageHeap* heap, const Options* opts) {
  heap_ = heap;
  opts_ = opts;
  enabled_ = opts->reporter;
  mark_bytes_ = uint64_t{opts->report_mark_kb} << 10;
  curve_.init(opts->cold_ms, opts->delay_ms, mark_bytes_ >> kPageShift);
  gap_ms_ = opts->delay_ms;
}

void Reporter::request_slow(uint32_t s) {
  if (s == kNoThread) {
    // Start a thread only for memory worth giving back; small programs
    // stay single-threaded.
    if (worth_hook_ && !worth_hook_()) return;
    state_.compare_exchange_strong(s, kStart, std::memory_order_acq_rel);
    return;
  }
  if (!state_.compare_exchange_strong(s, kRequested, std::memory_order_acq_rel)) return;
  if (s == kIdle) os::futex_wake(&state_, 1);  // ACTIVE: the running pass will go round again
}

void Reporter::start_thread() {
  if (!can_start_.load(std::memory_order_acquire)) return;
  // Not from inside a fork's handlers (a prepare handler that allocates):
  // the parent starts it afterwards.
  if (t_lock_depth & kForkOwner) return;
  bool expected = false;
  if (!starting_.compare_exchange_strong(expected, true)) return;
  uint32_t s = kStart;
  const uint64_t now = os::now_ms();
  if (now >= retry_at_.load(std::memory_order_relaxed) &&
      // (A thread that only publishes starts idle: no pass with reporting off.)
      state_.compare_exchange_strong(s, enabled_ ? kRequested : kIdle, std::memory_order_acq_rel)) {
    // The thread must never run a signal handler of the program: block
    // everything while creating it, so that it starts with all blocked.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    if (pthread_create(&t, &attr, &Reporter::thread_main, this) != 0) {
      // Nothing but this function leaves REQUESTED (or IDLE, for a thread
      // that only publishes) before the thread runs.
      if (opts_->verbose) log_line("could not start the reporter thread; will retry");
      retry_at_.store(now + (opts_->delay_ms > 100 ? opts_->delay_ms : 100), std::memory_order_relaxed);
      state_.store(kStart, std::memory_order_release);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  starting_.store(false);
}

void* Reporter::thread_main(void* arg) {
  prctl(PR_SET_NAME, "ebb-reporter", 0, 0, 0);
  static_cast<Reporter*>(arg)->run();
  return nullptr;
}

uint64_t Reporter::publish_if_due(uint64_t now) {
  if (!publish_hook_) return kNever;
  if (now >= next_publish_) {
    publish_hook_();
    next_publish_ = now + publish_ms_;
  }
  return next_publish_;
}

void Reporter::pause_ms(uint64_t ms) {
  if (!publish_hook_) return sleep_ms(ms);
  const uint64_t until = os::now_ms() + ms;
  for (uint64_t now; (now = os::now_ms()) < until;) {
    const uint64_t next = publish_if_due(now);
    sleep_ms((next < until ? next : until) - now);
  }
}

namespace {
// Milliseconds from now to t, for a futex timeout (-1: no timeout).
int64_t timeout_to(uint64_t t, uint64_t now) {
  if (t == Reporter::kNever) return -1;
  return t > now ? static_cast<int64_t>(t - now) : 0;
}
}  // namespace

void Reporter::run() {
  uint64_t deadline = kNever;
  uint64_t idle_since = kNever;
  for (;;) {
    uint64_t now = os::now_ms();
    const uint64_t publish_at = publish_if_due(now);
    uint32_t s = state_.load(std::memory_order_acquire);
    if (s == kIdle) {
      if (publish_hook_) {  // publishing keeps the thread
        os::futex_wait(&state_, kIdle, timeout_to(publish_at, now));
        continue;
      }
      // Nothing to do: linger a while (a program that frees in bursts keeps
      // its thread), then leave; a later request starts a new one.
      if (idle_since == kNever) idle_since = now;
      if (now >= idle_since + opts_->linger_ms) {
        if (state_.compare_exchange_strong(s, kNoThread, std::memory_order_acq_rel)) return;
        continue;  // requested meanwhile
      }
      os::futex_wait(&state_, kIdle, timeout_to(idle_since + opts_->linger_ms, now));
      continue;
    }
    idle_since = kNever;
    if (s == kArmed) {
      if (now < deadline) {
        const uint64_t until = publish_at < deadline ? publish_at : deadline;
        os::futex_wait(&state_, kArmed, timeout_to(until, now));
        continue;
      }
      if (!state_.compare_exchange_strong(s, kActive)) continue;
    } else if (s == kRequested) {
      // Let a burst of frees build up before the first pass; not at a
      // memory limit's mark (the heap's estimate says so, or the usage read
      // now: the estimate does not see frees, nor other processes), which is
      // looked at every 10 ms meanwhile: the program may reach it while the
      // reporter waits (and a request then has nothing to change).
      // (A request while a mass free is followed — the pass's own drains
      // free memory — waits no longer than the following does: gap_ms_.)
      if (!pressure_.mark_bytes()) {
        pause_ms(gap_ms_);
      } else {
        for (const uint64_t until = now + gap_ms_; !pressed(now) && now < until; now = os::now_ms())
          pause_ms(until - now < 10 ? until - now : 10);
      }
      if (!state_.compare_exchange_strong(s, kActive)) continue;
    }
    stats_.wakeups.fetch_add(1, std::memory_order_relaxed);
    if (pressure_.discovery_pending()) pressure_.discover();
    uint64_t released = 0, next;
    const uint64_t usage = pressure_.watching() ? pressure_.sample(now) : 0, mark = pressure_.mark_bytes();
    if (mark && usage >= mark) {
      next = pressure_pass(usage, &released);
    } else {
      pressure_wait_ms_ = 0;
      pressure_quiet_until_.store(0, std::memory_order_relaxed);
      // Idle caches first: what they held has been free since they went idle
      // (the drain stamps it so), so this same pass can report it.
      // (After COLD_MS / 2 without a call: with the return curve most of what
      // the heap holds is back by then, and a cache is small to refill.)
      const uint64_t in_use = in_use_pages();
      next = cache_hook_ ? cache_hook_(os::now_ms(), idle_ms(), false) : kNever;
      discount_since(in_use);
      // Under a limit the curve keeps no more than the headroom to its mark;
      // (and while near it, with free memory held, the usage is looked at
      // every COLD_MS: other processes of the cgroup fill it too).
      const uint64_t headroom = mark ? (mark - usage) >> kPageShift : ~uint64_t{0};
      const uint64_t p = curve_pass(headroom, &released);
      if (p < next) next = p;
      if (mark && released) pressure_.note_released(released);
      if (mark && usage >= mark / 2 && next == kNever && heap_->buddy().warm_reportable_pages_racy())
        next = os::now_ms() + opts_->cold_ms;
    }
    now = os::now_ms();
    if (publish_hook_) {
      // Show the pass's result at once.
      next_publish_ = now;
      publish_if_due(now);
    }
    if (next != kNever) {
      // Never pass more often than every gap_ms_ (DELAY_MS, or less while
      // the return curve follows a mass free).
      deadline = next > now + gap_ms_ ? next : now + gap_ms_;
      uint32_t a = kActive;
      state_.compare_exchange_strong(a, kArmed);  // fails if re-requested: loop
    } else {
      deadline = kNever;
      uint32_t a = kActive;
      state_.compare_exchange_strong(a, kIdle);  // fails if re-requested: loop
    }
  }
}

void Reporter::give_back_largest(uint64_t bytes, uint64_t* released) {
  const uint64_t goal = *released + bytes;
  uint32_t ids[os::kAdviseBatch];
  uint64_t freed[os::kAdviseBatch];
  while (*released < goal) {
    LockGuard round(batch_lock_);
    unsigned n;
    {
      LockGuard g(heap_->lock());
      n = heap_->isolate_for(goal - *released, os::kAdviseBatch, /*largest=*/true, os::now_ms(), ids, freed);
    }
    // (The last block only in part.)
    uint64_t now;
    if (n == 0 || !give_back_isolated(ids, freed, n, (goal - *released + kPageSize - 1) >> kPageShift, released, &now))
      break;
  }
}

bool Reporter::give_back_isolated(const uint32_t* ids, const uint64_t* freed, unsigned n, uint64_t max_pages,
                                  uint64_t* released, uint64_t* now) {
  bool ok[kMaxBatch];
  const uint64_t before = *released;
  uint64_t calls = 0;
  const bool all = heap_->advise_blocks(ids, n, ok, released, &calls, max_pages);
  stats_.madvise_calls.fetch_add(calls, std::memory_order_relaxed);
  {
    LockGuard g(heap_->lock());
    *now = os::now_ms();
    // (The bits say what went back.)
    for (unsigned k = 0; k < n; ++k) heap_->buddy().putback(ids[k], false, ok[k] && freed ? freed[k] : *now);
  }
  if (!all)
    for (unsigned k = 0; k < n; ++k) stats_.madvise_failures.fetch_add(ok[k] ? 0 : 1, std::memory_order_relaxed);
  stats_.blocks.fetch_add(n, std::memory_order_relaxed);
  stats_.bytes.fetch_add(*released - before, std::memory_order_relaxed);
  return all;
}

void Reporter::advise_ranges(const os::Range* r, unsigned n, bool* ok, uint64_t* released) {
  stats_.madvise_calls.fetch_add(os::advise_free_ranges(r, n, opts_->madv_free, ok), std::memory_order_relaxed);
  for (unsigned k = 0; k < n; ++k) {
    if (ok[k]) *released += r[k].size;
    else stats_.madvise_failures.fetch_add(1, std::memory_order_relaxed);
  }
}

uint64_t Reporter::idle_ms() const {
  const uint64_t half = opts_->cold_ms / 2 > opts_->delay_ms ? opts_->cold_ms / 2 : opts_->delay_ms;
  return half < opts_->cold_ms ? half : opts_->cold_ms;
}

uint64_t Reporter::in_use_pages() {
  LockGuard g(heap_->lock());
  return heap_->in_use_pages();
}

void Reporter::discount_since(uint64_t in_use_before) {
  uint64_t now;
  {
    LockGuard g(heap_->lock());
    now = heap_->in_use_pages();
    if (now < in_use_before) heap_->lower_in_use_peak(in_use_before - now);
  }
  if (now < in_use_before) curve_.discount(in_use_before - now);
}

bool Reporter::pressed(uint64_t now) {
  const uint64_t mark = pressure_.mark_bytes();
  return mark && (pressure_.urgent() || pressure_.sample(now) >= mark);
}

uint64_t Reporter::pressure_pass(uint64_t usage, uint64_t* released) {
  pressure_.count_pass();
  const uint64_t in_use = in_use_pages();
  if (cache_hook_) cache_hook_(os::now_ms(), 0, true);
  discount_since(in_use);
  // The free pages of slabs (and what the caches held) first: only their own
  // class can use them again. Then of the buddy's warm free memory only what
  // the usage is over by: the rest is what the program's next requests take
  // without growing the usage (a batch service's next batch: giving all of
  // it back at each pass made `pressure` fault in nearly every batch anew).
  pass(0, 0, 0, released);
  const uint64_t target = pressure_.target_bytes();
  if (usage > target + *released) give_back_largest(usage - target - *released, released);
  rearm_notify();
  pressure_.note_released(*released);
  // Usage that stays over the mark while nothing is free (the program's own
  // memory, or the cgroup's other processes') is not helped by draining the
  // caches every DELAY_MS: a pass that found less than the mark waits twice
  // as long each time, up to COLD_MS. (The heap still gives back before it
  // faults memory in, and a mass free wakes the reporter as ever.)
  const uint64_t delay = opts_->delay_ms ? opts_->delay_ms : 1;
  const uint64_t now = os::now_ms();
  if (*released >= mark_bytes_) {
    pressure_wait_ms_ = delay;
    pressure_quiet_until_.store(0, std::memory_order_relaxed);
  } else {
    pressure_wait_ms_ = pressure_wait_ms_ ? pressure_wait_ms_ * 2 : delay;
    if (pressure_wait_ms_ > opts_->cold_ms && pressure_wait_ms_ > delay)
      pressure_wait_ms_ = opts_->cold_ms > delay ? opts_->cold_ms : delay;
    pressure_quiet_until_.store(now + pressure_wait_ms_, std::memory_order_relaxed);
  }
  if (opts_->verbose) {
    OutBuf o(2);
    o.str("ebbmalloc: pressure pass: usage ").bytes(pressure_.usage_now()).str(" of mark ");
    o.bytes(pressure_.mark_bytes()).str(", gave back ").bytes(*released).chr('\n');
  }
  last_keep_pages_.store(0, std::memory_order_relaxed);
  gap_ms_ = opts_->delay_ms;
  return now + pressure_wait_ms_;
}

uint64_t Reporter::curve_pass(uint64_t headroom, uint64_t* released) {
  const uint64_t mark_pages = this->mark_pages();
  uint64_t now = os::now_ms();
  ReturnPlan plan;
  uint64_t cutoff = 0;  // blocks stamped at or before it go back
  {
    LockGuard g(heap_->lock());
    Buddy& b = heap_->buddy();
    // Growing fast: by an eighth of what is in use (at least the mark) since
    // the last pass. (Not the few steps of a steady program finding its size.)
    const uint64_t in_use = heap_->in_use_pages(), frontier = heap_->region().frontier();
    const uint64_t grown = frontier > frontier_ ? frontier - frontier_ : 0;
    frontier_ = frontier;
    const bool growing = grown >= mark_pages && grown >= in_use / 8;
    uint64_t peak_ms;
    const uint64_t peak = heap_->take_in_use_peak(now, &peak_ms);
    plan = curve_.plan(now, in_use, peak, peak_ms, b.warm_reportable_pages(), heap_->drawn_pages(), growing,
                       headroom);
    if (now > plan.max_age_ms) cutoff = now - plan.max_age_ms;
    uint64_t c;
    if (plan.excess_pages && now > plan.min_age_ms &&
        b.cold_cutoff(plan.excess_pages, now - plan.min_age_ms, 4096, &c) && c > cutoff)
      cutoff = c;
  }
  last_keep_pages_.store(plan.keep_pages, std::memory_order_relaxed);
  const uint64_t before = *released;
  uint64_t next = pass(cutoff, plan.slab_cold_ms, opts_->report_order, released);
  if (opts_->verbose) {
    OutBuf o(2);
    o.str("ebbmalloc: pass: keep ").bytes(plan.keep_pages << kPageShift).str(" (swing ");
    o.bytes(plan.swing_pages << kPageShift).str("), excess ").bytes(plan.excess_pages << kPageShift);
    o.str(", slab pages after ").u64(plan.slab_cold_ms).str(" ms, gave back ").bytes(*released - before);
    o.str(", in use ").bytes(in_use_pages() << kPageShift).str(plan.follow ? " (following a mass free)\n" : "\n");
  }
  now = os::now_ms();
  uint64_t warm;
  {
    LockGuard g(heap_->lock());
    warm = heap_->buddy().warm_reportable_pages();
  }
  // While a swing decays the curve is followed closely; the slack of a busy
  // program is looked at now and then; otherwise what is left warm is
  // younger than min_age (or under the mark, and waits for max_age).
  uint64_t look = kNever;
  gap_ms_ = plan.follow ? plan.min_age_ms : opts_->delay_ms;
  // (Also with nothing warm: when the slack ends, free slab pages go back
  // after COLD_MS / 2 instead of 10 * COLD_MS.)
  if (plan.decaying)
    look = now + (plan.follow                               ? plan.min_age_ms
                  : plan.swing_pages || plan.excess_pages ? opts_->delay_ms
                                                          : (opts_->cold_ms + 3) / 4);
  else if (warm) look = now + (warm >= mark_pages ? plan.min_age_ms : plan.max_age_ms);
  return look < next ? look : next;
}

uint64_t Reporter::pass(uint64_t cutoff, uint64_t slab_cold_ms, unsigned min_order, uint64_t* released) {
  uint32_t ids[kMaxBatch];
  const unsigned batch = opts_->batch < 1 ? 1 : (opts_->batch > kMaxBatch ? kMaxBatch : opts_->batch);
  uint64_t next = kNever;
  stats_.passes.fetch_add(1, std::memory_order_relaxed);
  // Slabs first: a slab emptied since the last pass has gone to the buddy
  // already; what is left are free pages inside slabs still in use.
  // (Slab pages are single pages: only when single pages are reportable.)
  if (slab_hook_ && min_order == 0) {
    const uint64_t before = *released, in_use = in_use_pages();
    // Transfer batches wait as long as an idle cache, or as the free pages
    // of slabs when those go sooner (a mass free: with 1 MiB of batches a
    // class, a free of everything held 16 MiB more half a second later).
    const uint64_t idle = idle_ms(), batch_cold_ms = slab_cold_ms < idle ? slab_cold_ms : idle;
    next = slab_hook_(slab_cold_ms == 0 ? 0 : opts_->cold_ms, batch_cold_ms, slab_cold_ms, released);
    discount_since(in_use);
    stats_.bytes.fetch_add(*released - before, std::memory_order_relaxed);
  }
  // Low orders first (as upstream page_reporting does): a reported block
  // that merges with a warm buddy goes up to an order this pass has not
  // reached yet, so one pass leaves no warm block behind.
  for (unsigned o = min_order; o <= kMaxOrder; ++o) {
    for (;;) {
      LockGuard round(batch_lock_);
      unsigned n;
      {
        LockGuard g(heap_->lock());
        n = cutoff ? heap_->buddy().isolate_cold(o, cutoff, ids, batch) : 0;
      }
      if (n == 0) break;
      uint64_t now;
      if (!give_back_isolated(ids, nullptr, n, ~uint64_t{0}, released, &now)) {
        // madvise failed: those blocks went back warm, and with cold_ms 0
        // (report_all) would be isolated again at once, for ever. End the
        // pass; retry when they are cold again.
        const uint64_t retry = now + (opts_->cold_ms > opts_->delay_ms ? opts_->cold_ms : opts_->delay_ms);
        rearm_notify();
        return retry < next ? retry : next;
      }
      if (n < batch) break;
    }
  }
  rearm_notify();
  return next;
}

void Reporter::rearm_notify() {
  // Warm memory of reportable order this far beyond what the pass left
  // wakes the reporter again (request_now): a pass that gave back more than
  // the last one kept must lower it, or a free never reaches it.
  LockGuard g(heap_->lock());
  Buddy& b = heap_->buddy();
  b.set_mark_pages(b.warm_reportable_pages() + mark_pages());
}

uint64_t Reporter::report_all() {
  uint64_t released = 0;
  if (cache_hook_) cache_hook_(os::now_ms(), 0, true);
  pass(kNever, 0, 0, &released);
  return released;
}

void Reporter::postfork_child() {
  batch_lock_.reset_after_fork();
  postfork_child_interrupted();
  if (publish_hook_) state_.store(kStart, std::memory_order_relaxed);
  else if (enabled_ && heap_ && heap_->buddy().warm_reportable_pages() > 0) request();
}

void Reporter::postfork_child_interrupted() {
  // The thread does not exist in the child; start a new one on demand.
  curve_.reset();
  if (opts_) gap_ms_ = opts_->delay_ms;  // (the parent's following is not the child's)
  starting_.store(false, std::memory_order_relaxed);
  retry_at_.store(0, std::memory_order_relaxed);
  state_.store(kNoThread, std::memory_order_relaxed);
}

}  // namespace ebb
