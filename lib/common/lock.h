// A small futex mutex (three-state, after Drepper's "Futexes are tricky").
// Usable before any constructor ran, never allocates, and can be reset in a
// fork child where its owner no longer exists.
//
// Each thread counts the allocator locks it holds or is waiting for
// (t_lock_depth): fork() from a signal handler that interrupted this thread
// inside the allocator must not wait for them (api/fork.cpp). While a fork
// holds every lock (between the prepare and the parent/child handlers), the
// forking thread has the whole allocator to itself, so its own lock() and
// unlock() calls do nothing: other fork handlers may call malloc (glibc
// allows it), and they must not wait for the locks the fork holds.
#pragma once
#include <atomic>
#include <cstdint>

namespace ebb {

constexpr uint32_t kForkOwner = 0x80000000u;  // t_lock_depth: this thread holds the fork's locks
extern constinit thread_local uint32_t t_lock_depth __attribute__((tls_model("initial-exec")));

// The futex lock itself. Used as is only for thread-cache mutexes, which
// need no count: a fork never waits for one (the prepare handler does not
// take them, and the forking thread runs without its cache until the
// parent/child handler: front/thread_cache.cpp).
class RawMutex {
 public:
  constexpr RawMutex() = default;
  void lock() {
    uint32_t c = 0;
    if (__builtin_expect(state_.compare_exchange_strong(c, 1, std::memory_order_acquire), 1)) return;
    lock_slow(c);
  }
  bool try_lock() {
    uint32_t c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire);
  }
  void unlock() {
    if (__builtin_expect(state_.exchange(0, std::memory_order_release) != 2, 1)) return;
    wake_one();
  }
  bool is_locked() const { return state_.load(std::memory_order_relaxed) != 0; }
  // Only in a fork child: the lock's holder, if any, is gone.
  void reset_after_fork() { state_.store(0, std::memory_order_relaxed); }

 private:
  void lock_slow(uint32_t c);
  void wake_one();
  std::atomic<uint32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
};

// The allocator's shared locks (heap, bins, pools, registry, huge table,
// reporter batch): counted in t_lock_depth.
class Mutex {
 public:
  constexpr Mutex() = default;
  void lock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return;
    t_lock_depth = d + 1;  // before waiting: an interrupted wait counts as held
    m_.lock();
  }
  bool try_lock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return true;
    // Counted before the attempt, as lock() does: a fork from a signal
    // handler that interrupts this thread just after it took the lock must
    // not wait for it (dropin signal-fork hung when the count came after).
    t_lock_depth = d + 1;
    if (m_.try_lock()) return true;
    t_lock_depth = d;
    return false;
  }
  void unlock() {
    const uint32_t d = t_lock_depth;
    if (__builtin_expect(d & kForkOwner, 0)) return;
    m_.unlock();
    t_lock_depth = d - 1;
  }
  bool is_locked() const { return m_.is_locked(); }
  void reset_after_fork() { m_.reset_after_fork(); }
  // Without the count: the fork handlers, which take every lock.
  void lock_raw() { m_.lock(); }
  void unlock_raw() { m_.unlock(); }

 private:
  RawMutex m_;
};

template <class M>
class LockGuard {
 public:
  explicit LockGuard(M& m) : m_(m) { m_.lock(); }
  ~LockGuard() { m_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  M& m_;
};

}  // namespace ebb
