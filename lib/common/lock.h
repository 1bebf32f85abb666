// A small futex mutex (three-state, after Drepper's "Futexes are tricky").
// Usable before any constructor ran, never allocates, and can be reset in a
// fork child where its owner no longer exists.
#pragma once
#include <atomic>
#include <cstdint>

namespace ebb {

class Mutex {
 public:
  constexpr Mutex() = default;
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

class LockGuard {
 public:
  explicit LockGuard(Mutex& m) : m_(m) { m_.lock(); }
  ~LockGuard() { m_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Mutex& m_;
};

}  // namespace ebb
