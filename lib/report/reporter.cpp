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
}

void Reporter::request_slow(uint32_t s) {
  if (!state_.compare_exchange_strong(s, kRequested, std::memory_order_acq_rel)) return;
  if (s != kIdle) return;  // ACTIVE: the running pass will go round again
  if (running_.load(std::memory_order_acquire)) {
    os::futex_wake(&state_, 1);
  } else {
    want_thread_.store(true, std::memory_order_relaxed);
  }
}

void Reporter::start_thread() {
  if (!can_start_.load(std::memory_order_acquire)) return;
  bool expected = false;
  if (!starting_.compare_exchange_strong(expected, true)) return;
  if (!running_.load(std::memory_order_acquire)) {
    want_thread_.store(false, std::memory_order_relaxed);
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
    running_.store(true, std::memory_order_release);
    if (pthread_create(&t, &attr, &Reporter::thread_main, this) != 0) {
      running_.store(false, std::memory_order_release);
      if (opts_->verbose) log_line("could not start the reporter thread; will retry");
      want_thread_.store(true, std::memory_order_relaxed);
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

void Reporter::run() {
  uint64_t deadline = kNever;
  for (;;) {
    uint32_t s = state_.load(std::memory_order_acquire);
    if (s == kIdle) {
      os::futex_wait(&state_, kIdle, -1);
      continue;
    }
    if (s == kArmed) {
      const uint64_t now = os::now_ms();
      if (now < deadline) {
        os::futex_wait(&state_, kArmed, static_cast<int64_t>(deadline - now));
        continue;
      }
      if (!state_.compare_exchange_strong(s, kActive)) continue;
    } else if (s == kRequested) {
      // Let a burst of frees build up before the first pass.
      sleep_ms(opts_->delay_ms);
      if (!state_.compare_exchange_strong(s, kActive)) continue;
    }
    stats_.wakeups.fetch_add(1, std::memory_order_relaxed);
    uint64_t released = 0;
    uint64_t next = pass(opts_->cold_ms, opts_->report_order, &released);
    if (cache_hook_) {
      const uint64_t c = cache_hook_(os::now_ms(), opts_->cold_ms, false);
      if (c < next) next = c;
    }
    const uint64_t now = os::now_ms();
    if (next != kNever) {
      // Never pass more often than every delay_ms.
      deadline = next > now + opts_->delay_ms ? next : now + opts_->delay_ms;
      state_.store(kArmed, std::memory_order_release);
    } else {
      deadline = kNever;
      uint32_t a = kActive;
      state_.compare_exchange_strong(a, kIdle);  // fails if re-requested: loop
    }
  }
}

bool Reporter::report_block(uint32_t idx, uint64_t* released) {
  // The block is isolated: nobody else reads or writes its descriptors, so
  // the heap lock is not needed to read them here.
  PageDesc* d = heap_->region().descs();
  const uint32_t n = uint32_t{1} << d[idx].order;
  bool ok = true;
  for (uint32_t k = 0; k < n;) {
    if (d[idx + k].reported) {
      ++k;
      continue;
    }
    uint32_t end = k + 1;
    while (end < n && !d[idx + end].reported) ++end;
    const size_t bytes = size_t{end - k} << kPageShift;
    stats_.madvise_calls.fetch_add(1, std::memory_order_relaxed);
    if (os::advise_free(heap_->region().page_addr(idx + k), bytes, opts_->madv_free) != 0) {
      stats_.madvise_failures.fetch_add(1, std::memory_order_relaxed);
      ok = false;
    } else {
      *released += bytes;
    }
    k = end;
  }
  return ok;
}

uint64_t Reporter::pass(uint64_t cold_ms, unsigned min_order, uint64_t* released) {
  uint32_t ids[kMaxBatch];
  bool ok[kMaxBatch];
  const unsigned batch = opts_->batch < 1 ? 1 : (opts_->batch > kMaxBatch ? kMaxBatch : opts_->batch);
  uint64_t next = kNever;
  stats_.passes.fetch_add(1, std::memory_order_relaxed);
  // Low orders first (as upstream page_reporting does): a reported block
  // that merges with a warm buddy goes up to an order this pass has not
  // reached yet, so one pass leaves no warm block behind.
  for (unsigned o = min_order; o <= kMaxOrder; ++o) {
    for (;;) {
      LockGuard round(batch_lock_);
      unsigned n;
      {
        LockGuard g(heap_->lock());
        n = heap_->buddy().isolate_cold(o, os::now_ms(), cold_ms, ids, batch, &next);
      }
      if (n == 0) break;
      uint64_t before = *released;
      bool failed = false;
      for (unsigned i = 0; i < n; ++i) {
        ok[i] = report_block(ids[i], released);
        failed |= !ok[i];
      }
      uint64_t now;
      {
        LockGuard g(heap_->lock());
        now = os::now_ms();
        for (unsigned i = 0; i < n; ++i) heap_->buddy().putback(ids[i], ok[i], now);
      }
      stats_.blocks.fetch_add(n, std::memory_order_relaxed);
      stats_.bytes.fetch_add(*released - before, std::memory_order_relaxed);
      if (failed) {
        // madvise failed: those blocks went back warm, and with cold_ms 0
        // (report_all) would be isolated again at once, for ever. End the
        // pass; retry when they are cold again.
        return now + cold_ms < next ? now + cold_ms : next;
      }
      if (n < batch) break;
    }
  }
  return next;
}

uint64_t Reporter::report_all() {
  uint64_t released = 0;
  if (cache_hook_) cache_hook_(os::now_ms(), 0, true);
  pass(0, 0, &released);
  return released;
}

void Reporter::postfork_child() {
  batch_lock_.reset_after_fork();
  // The thread does not exist in the child; start a new one on demand.
  running_.store(false);
  starting_.store(false);
  want_thread_.store(false);
  state_.store(kIdle);
  if (enabled_ && heap_ && heap_->buddy().warm_reportable_pages() > 0) request();
}

}  // namespace ebb
