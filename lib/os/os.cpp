#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace ebb::os {

Hooks g_hooks;

namespace {
// Restores errno on scope exit: the allocator's own failed system calls must
// not leak into the errno that the program sees, except where a function
// sets ENOMEM on purpose.
struct ErrnoSaver {
  int saved = errno;
  ~ErrnoSaver() { errno = saved; }
};
}  // namespace

void* reserve(size_t size) {
  if (g_hooks.reserve) return g_hooks.reserve(size);
  ErrnoSaver keep;
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

int commit(void* p, size_t size) {
  if (g_hooks.commit) return g_hooks.commit(p, size);
  ErrnoSaver keep;
  return mprotect(p, size, PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
}

void* map(size_t size) {
  if (g_hooks.map) return g_hooks.map(size);
  ErrnoSaver keep;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void* map_aligned(size_t size, size_t align) {
  if (align <= 4096) return map(size);
  size_t over = size + align;
  if (over < size) return nullptr;
  char* raw = static_cast<char*>(map(over));
  if (!raw) return nullptr;
  uintptr_t a = (reinterpret_cast<uintptr_t>(raw) + align - 1) & ~(uintptr_t)(align - 1);
  char* start = reinterpret_cast<char*>(a);
  if (start > raw) unmap(raw, static_cast<size_t>(start - raw));
  size_t tail = static_cast<size_t>((raw + over) - (start + size));
  if (tail) unmap(start + size, tail);
  return start;
}

void unmap(void* p, size_t size) {
  ErrnoSaver keep;
  munmap(p, size);
}

void* remap(void* p, size_t old_size, size_t new_size) {
  ErrnoSaver keep;
  void* q = mremap(p, old_size, new_size, MREMAP_MAYMOVE);
  return q == MAP_FAILED ? nullptr : q;
}

int advise_free(void* p, size_t size, bool lazy) {
  if (g_hooks.advise) return g_hooks.advise(p, size, lazy);
  ErrnoSaver keep;
  return madvise(p, size, lazy ? MADV_FREE : MADV_DONTNEED) == 0 ? 0 : errno;
}

uint64_t now_ms() {
  if (g_hooks.now_ms) return g_hooks.now_ms();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ms) {
  ErrnoSaver keep;
  struct timespec ts, *tsp = nullptr;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (timeout_ms % 1000) * 1000000;
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, tsp, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word, int count) {
  ErrnoSaver keep;
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

namespace {
std::atomic<int> g_membarrier_state{0};  // 0 unknown, 1 available, 2 unavailable
}

bool membarrier_available() {
  int s = g_membarrier_state.load(std::memory_order_acquire);
  if (s == 0) {
    ErrnoSaver keep;
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    bool ok = q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
              syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    s = ok ? 1 : 2;
    g_membarrier_state.store(s, std::memory_order_release);
  }
  return s == 1;
}

bool membarrier() {
  if (!membarrier_available()) return false;
  ErrnoSaver keep;
  return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

int gettid() { return static_cast<int>(syscall(SYS_gettid)); }

size_t read_proc_environ(char* buf, size_t size) {
  ErrnoSaver keep;
  int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY | O_CLOEXEC));
  if (fd < 0) return 0;
  size_t n = 0;
  while (n + 1 < size) {
    ssize_t r = syscall(SYS_read, fd, buf + n, size - 1 - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  syscall(SYS_close, fd);
  buf[n] = 0;
  return n;
}

}  // namespace ebb::os
