#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

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
  ErrnoSaver keep;
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

int commit(void* p, size_t size) {
  if (g_hooks.commit) return g_hooks.commit(p, size);
  ErrnoSaver keep;
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000  // Linux 4.17
#endif
  void* q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                 -1, 0);
  if (q == MAP_FAILED) return errno;
  if (q != p) {  // a kernel before 4.17 took the address as a hint only
    munmap(q, size);
    return EEXIST;
  }
  return 0;
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

namespace {
// process_madvise of the process itself: still to be tried (1), or found
// refused or switched off (0).
constinit std::atomic<int> g_advise_batch{1};
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
// PIDFD_SELF_THREAD_GROUP (linux/pidfd.h, 6.14): the calling process, with
// no descriptor to open, leak into exec or share with a fork child.
constexpr int kPidfdSelf = -10001;
}  // namespace

void set_advise_batch(bool on) { g_advise_batch.store(on ? 1 : 0, std::memory_order_relaxed); }

unsigned advise_free_ranges(const Range* r, unsigned n, bool lazy, bool* ok) {
  unsigned calls = 0, i = 0;
  if (!g_hooks.advise && n > 1 && g_advise_batch.load(std::memory_order_relaxed)) {
    ErrnoSaver keep;
    while (i < n) {
      struct iovec v[kAdviseBatch];
      const unsigned m = n - i < kAdviseBatch ? n - i : kAdviseBatch;
      for (unsigned k = 0; k < m; ++k) v[k] = {r[i + k].p, r[i + k].size};
      long got = syscall(SYS_process_madvise, kPidfdSelf, v, m, lazy ? MADV_FREE : MADV_DONTNEED, 0);
      ++calls;
      // The kernel advises the ranges in order and returns the bytes it
      // did: those ranges went back.
      size_t done = got > 0 ? static_cast<size_t>(got) : 0;
      unsigned k = 0;
      for (; k < m && done >= r[i + k].size; ++k) {
        ok[i + k] = true;
        done -= r[i + k].size;
      }
      i += k;
      if (k == m) continue;
      // Range i did not go back: it alone with madvise, for its exact result,
      // and the batch goes on after it. A call that did nothing followed by a
      // madvise that works means the kernel (or a seccomp filter) refuses
      // process_madvise itself: not again, in this process.
      ok[i] = advise_free(r[i].p, r[i].size, lazy) == 0;
      ++calls;
      ++i;
      if (got < 0 && ok[i - 1]) {
        g_advise_batch.store(0, std::memory_order_relaxed);
        break;
      }
    }
  }
  for (; i < n; ++i, ++calls) ok[i] = advise_free(r[i].p, r[i].size, lazy) == 0;
  return calls;
}

int populate_write(void* p, size_t size) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif
  ErrnoSaver keep;
  return madvise(p, size, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
}

uint64_t now_ms() {
  if (g_hooks.now_ms) return g_hooks.now_ms();
  // The coarse clock (one kernel tick, 1-4 ms) is plenty for cold periods of
  // hundreds of milliseconds, and is a plain read of the vDSO page: free
  // paths stamp every batch with it.
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

uint64_t now_us() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
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

uint64_t random_u64() {
  ErrnoSaver keep;
  uint64_t v = 0;
  if (syscall(SYS_getrandom, &v, sizeof(v), 0x1 /* GRND_NONBLOCK */) == static_cast<long>(sizeof(v)) && v) return v;
  // splitmix64 of whatever differs between processes and runs.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t x = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 32) ^
               reinterpret_cast<uintptr_t>(&v) ^ (static_cast<uint64_t>(getpid()) << 48) ^ __builtin_ia32_rdtsc();
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

int protect(void* p, size_t size, bool rw) {
  ErrnoSaver keep;
  return mprotect(p, size, rw ? PROT_READ | PROT_WRITE : PROT_NONE) == 0 ? 0 : errno;
}

int gettid() { return static_cast<int>(syscall(SYS_gettid)); }

int getpid() { return static_cast<int>(syscall(SYS_getpid)); }
unsigned geteuid() { return static_cast<unsigned>(syscall(SYS_geteuid)); }

int open_private_dir(const char* path) {
  ErrnoSaver keep;
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return -errno;
  const int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    // O_NOFOLLOW|O_DIRECTORY on a symlink fails with ENOTDIR: tell them apart.
    struct stat st;
    const int err = errno;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode) ? -ELOOP : -err;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    close(fd);
    return -EPERM;
  }
  return fd;
}

int create_private_file(int dirfd, const char* name, size_t size) {
  ErrnoSaver keep;
  const int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  struct stat st;
  int err = 0;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    err = EPERM;
  } else if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    err = errno;
  }
  if (err) {
    unlinkat(dirfd, name, 0);
    close(fd);
    return -err;
  }
  return fd;
}

int classify(int dirfd, const char* name) {
  ErrnoSaver keep;
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  if (S_ISLNK(st.st_mode)) return 1;
  return S_ISREG(st.st_mode) && st.st_uid == geteuid() ? 0 : 2;
}

int unlink_at(int dirfd, const char* name) {
  ErrnoSaver keep;
  return unlinkat(dirfd, name, 0) == 0 ? 0 : errno;
}

int unlink_path(const char* path) {
  ErrnoSaver keep;
  return unlink(path) == 0 ? 0 : errno;
}

int dup_fd(int fd) {
  ErrnoSaver keep;
  return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

void close_fd(int fd) {
  ErrnoSaver keep;
  close(fd);
}

void* map_file_shared(int fd, size_t size) {
  ErrnoSaver keep;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : p;
}

long read_dir(int dirfd, void* buf, size_t size) {
  ErrnoSaver keep;
  const long n = syscall(SYS_getdents64, dirfd, buf, size);
  return n < 0 ? -errno : n;
}

const char* dir_entry_name(const void* buf, size_t off, size_t* next) {
  // struct linux_dirent64: ino, off, reclen (u16), type (u8), name.
  const char* e = static_cast<const char*>(buf) + off;
  uint16_t reclen;
  memcpy(&reclen, e + 16, sizeof(reclen));
  *next = off + reclen;
  return e + 19;
}

bool process_exists(int pid) {
  ErrnoSaver keep;
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

uint64_t realtime_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

size_t read_proc_environ(char* buf, size_t size) {
  const long n = read_file("/proc/self/environ", buf, size);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

int open_read(const char* path) {
  ErrnoSaver keep;
  const long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

long read_fd(int fd, void* buf, size_t n) {
  ErrnoSaver keep;
  long r;
  do {
    r = syscall(SYS_read, fd, buf, n);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

long read_file(const char* path, char* buf, size_t cap) {
  ErrnoSaver keep;
  buf[0] = 0;
  const int fd = open_read(path);
  if (fd < 0) return fd;
  // Files of /proc and cgroupfs may come in more than one read.
  size_t n = 0;
  long r = 0;
  while (n + 1 < cap) {
    r = read_fd(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  syscall(SYS_close, fd);  // (raw: read_proc_environ runs before libc is set up)
  if (r < 0) {
    buf[0] = 0;
    return r;
  }
  buf[n] = 0;
  return static_cast<long>(n);
}

bool is_directory(const char* path) {
  ErrnoSaver keep;
  const long fd = syscall(SYS_openat, AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  syscall(SYS_close, static_cast<int>(fd));
  return true;
}

uint64_t process_rss_bytes() {
  char buf[128];
  if (read_file("/proc/self/statm", buf, sizeof(buf)) <= 0) return 0;
  // "size resident shared ...", in pages.
  const char* p = buf;
  while (*p && *p != ' ') ++p;
  if (*p != ' ') return 0;
  uint64_t pages = 0;
  for (++p; *p >= '0' && *p <= '9'; ++p) pages = pages * 10 + static_cast<uint64_t>(*p - '0');
  return pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace ebb::os
