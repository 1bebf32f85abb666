// fork(): the allocator's locks against libc's, and the three kinds of fork.
//
// glibc's fork runs the pthread_atfork prepare handlers, then takes the
// stdio list lock, then its own malloc locks, because threads inside stdio
// (getline, fflush, open_memstream) call malloc with FILE locks held, and
// fflush(NULL) holds the list lock while it waits for FILE locks (glibc bug
// 19431). ebbmalloc's locks can only be taken in a prepare handler, before
// glibc takes the list lock; so the handler takes the list lock itself first
// (it is recursive: glibc's fork takes it again), making the order
//     stdio list lock -> FILE locks -> ebbmalloc's locks
// for every thread, as under glibc. The allocator itself never calls stdio.
//
// Three kinds of fork, told apart in the prepare handler:
//  - kAlone: the process has one thread (__libc_single_threaded). Nobody
//    else can hold a lock; nothing is taken. This is also the fork from a
//    signal handler of a single-threaded program, which glibc supports: if
//    it interrupted this thread inside the allocator, the interrupted frame
//    finishes its operation and releases its locks in parent and child alike.
//  - kInterrupted: other threads exist and this thread was interrupted
//    inside the allocator (it holds or waits for one of its locks). Taking
//    the locks would wait for ever on our own; nothing is taken. As with
//    glibc's malloc, the child of such a fork can only call async-signal-safe
//    functions (it may still return from the handler: its own interrupted
//    frame then completes). Only the reporter thread's state is reset.
//  - kLocked: every lock is taken (in the order of docs/DESIGN.md); the
//    forking thread then owns the whole allocator and its own lock calls do
//    nothing until the parent/child handler (later prepare handlers and the
//    child's early code may call malloc, as glibc allows). The parent
//    releases the locks; the child resets them, returns the caches of the
//    threads that do not exist in it and resets the reporter.
#include <sys/single_threaded.h>

#include "api/fork.h"
#include "api/live_stats.h"
#include "front/globals.h"
#include "front/large.h"
#include "front/pressure_relief.h"
#include "front/thread_cache.h"

// glibc's stdio list lock (exported by libc; weak so that a static link
// without stdio does not pull it in).
extern "C" {
void _IO_list_lock(void) __attribute__((weak));
void _IO_list_unlock(void) __attribute__((weak));
}

namespace ebb {

namespace {

enum class ForkKind : uint8_t { kNone, kAlone, kInterrupted, kLocked };
// Per thread: set by the prepare handler, read by the parent/child handler
// of the same fork, which runs on the same thread (in the child too).
constinit thread_local ForkKind t_fork __attribute__((tls_model("initial-exec"))) = ForkKind::kNone;
constinit thread_local bool t_fork_io __attribute__((tls_model("initial-exec"))) = false;

void lock_all() {
  g.reporter.batch_lock().lock_raw();
  thread_cache_prefork();
  for (unsigned c = 1; c <= kNumClasses; ++c) g.bins[c].lock.lock_raw();
  g.slab_pool.lock().lock_raw();
  g.heap.lock().lock_raw();
  huge_prefork();
}

void unlock_all() {
  huge_postfork_parent();
  g.heap.lock().unlock_raw();
  g.slab_pool.lock().unlock_raw();
  for (unsigned c = kNumClasses; c >= 1; --c) g.bins[c].lock.unlock_raw();
  thread_cache_postfork_parent();
  g.reporter.batch_lock().unlock_raw();
}

void reset_all() {
  huge_postfork_child();
  g.heap.lock().reset_after_fork();
  g.slab_pool.lock().reset_after_fork();
  for (unsigned c = 1; c <= kNumClasses; ++c) g.bins[c].lock.reset_after_fork();
  g.reporter.batch_lock().reset_after_fork();
  thread_cache_postfork_child();
  pressure_relief_postfork_child();
}

void prefork() {
  t_fork = ForkKind::kNone;
  if (!initialized()) return;
  if (__libc_single_threaded) {
    t_fork = ForkKind::kAlone;
    return;
  }
  if (t_lock_depth != 0) {
    t_fork = ForkKind::kInterrupted;
    return;
  }
  t_fork_io = _IO_list_lock != nullptr && _IO_list_unlock != nullptr;
  if (t_fork_io) _IO_list_lock();
  lock_all();
  t_lock_depth |= kForkOwner;
  t_fork = ForkKind::kLocked;
}

void postfork_parent() {
  if (t_fork != ForkKind::kLocked) return;
  t_lock_depth &= ~kForkOwner;
  unlock_all();
  if (t_fork_io) _IO_list_unlock();  // glibc's fork released its own hold already
}

void postfork_child() {
  switch (t_fork) {
    case ForkKind::kNone:
      break;
    case ForkKind::kAlone:
      live_stats_postfork_child();  // (a munmap: fine in a signal handler's fork)
      break;
    case ForkKind::kInterrupted:
      live_stats_postfork_child();
      g.reporter.postfork_child_interrupted();
      break;
    case ForkKind::kLocked:
      // glibc's fork reset the stdio list lock in the child already.
      t_lock_depth &= ~kForkOwner;
      reset_all();
      live_stats_postfork_child();  // first: without a publisher the child needs no thread yet
      g.reporter.postfork_child();
      break;
  }
  t_fork = ForkKind::kNone;
}

}  // namespace

void fork_handlers_install() { pthread_atfork(&prefork, &postfork_parent, &postfork_child); }

}  // namespace ebb
