// The OS contract of ebbmalloc: every system call the allocator makes goes
// through here, so that error handling lives in one place and tests can inject
// failures and a fake clock (see Hooks).
//
// Conventions: functions returning pointers return nullptr on failure;
// functions returning int return 0 on success or an errno value. Nothing here
// allocates or touches errno of the caller on success.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ebb::os {

// Overridable entry points, for fault injection and deterministic tests.
// A null member means "use the real system call".
struct Hooks {
  int (*commit)(void* p, size_t size) = nullptr;     // map fresh memory at exactly p
  void* (*map)(size_t size) = nullptr;               // fresh read/write memory
  int (*advise)(void* p, size_t size, bool lazy) = nullptr;  // give pages back
  uint64_t (*now_ms)() = nullptr;                    // monotonic milliseconds
};
extern Hooks g_hooks;

// Address space with no access (PROT_NONE, not counted as memory).
void* reserve(size_t size);
// Maps fresh read/write memory at exactly [p, p+size), never over another
// mapping (MAP_FIXED_NOREPLACE): 0, EEXIST if anything is in the way,
// ENOMEM when out of memory or address space (RLIMIT_AS).
int commit(void* p, size_t size);
void* map(size_t size);
// Maps `size` bytes aligned to `align` (a power of two >= page size).
void* map_aligned(size_t size, size_t align);
void unmap(void* p, size_t size);
void* remap(void* p, size_t old_size, size_t new_size);
// madvise(MADV_DONTNEED) or, if lazy, MADV_FREE.
int advise_free(void* p, size_t size, bool lazy);
// Ranges given back as advise_free does, `n` of them (page-aligned); ok[i]
// says whether range i went back. In as few system calls as the kernel
// allows: process_madvise(2) of the process itself (PIDFD_SELF, Linux 6.14),
// up to kAdviseBatch ranges a call, which since Linux 6.15 also flushes the
// TLBs of the process's other CPUs once for all of them instead of once per
// range (16k ranges of 12 KiB with a second thread running: 250 ms one call
// each, 25 ms in calls of 64). An older kernel or a seccomp filter that
// refuses it is found by the first call, and from then on every range is
// one madvise. Returns the number of system calls made.
struct Range {
  void* p;
  size_t size;
};
constexpr unsigned kAdviseBatch = 64;
unsigned advise_free_ranges(const Range* r, unsigned n, bool lazy, bool* ok);
// EBBMALLOC_MADVISE_BATCH=0: one madvise per range whatever the kernel
// (for a seccomp filter that kills on process_madvise).
void set_advise_batch(bool on);
// Faults pages in writable (MADV_POPULATE_WRITE): zeroed by the kernel once,
// with one system call. EINVAL on kernels before 5.14.
int populate_write(void* p, size_t size);
uint64_t now_ms();
// Monotonic microseconds, the precise clock (not hooked): for measuring what
// an operation cost, never for deadlines.
uint64_t now_us();
// The process's resident set (/proc/self/statm) in bytes; 0 if unreadable.
uint64_t process_rss_bytes();
// 64 random bits from the kernel (getrandom, non-blocking); early in boot or
// without the call, a mix of the clock, the stack address and the pid.
uint64_t random_u64();
// mprotect to read/write (rw) or no access: 0 or errno.
int protect(void* p, size_t size, bool rw);

// Futex on a 32-bit word; timeout_ms < 0 waits for ever.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ms);
void futex_wake(std::atomic<uint32_t>* word, int count);

// Process-wide memory barrier on every thread of this process
// (membarrier(PRIVATE_EXPEDITED)); lets owner threads use plain stores on
// their fast path. membarrier_available() registers on first use.
bool membarrier_available();
bool membarrier();

int gettid();
// Files, for the live statistics file (api/live_stats.cpp). These return a
// file descriptor >= 0 or -errno; none follows a symlink in its last
// component, every descriptor is O_CLOEXEC.
int getpid();
unsigned geteuid();
// Opens `path` as a directory that belongs to this user and is closed to
// group and others, creating it (0700) if missing. -ENOTDIR/-ELOOP if it is
// not a directory or a symlink, -EPERM if it is someone else's or open.
int open_private_dir(const char* path);
// Creates dirfd/name exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600),
// checks it is a regular file of ours and sizes it to `size`.
int create_private_file(int dirfd, const char* name, size_t size);
// What is at dirfd/name (not following a symlink): 0 a regular file owned
// by this user, 1 a symlink, 2 anything else (or someone else's), -errno.
int classify(int dirfd, const char* name);
int unlink_at(int dirfd, const char* name);  // 0 or errno
int unlink_path(const char* path);           // 0 or errno
void close_fd(int fd);
// A close-on-exec copy of fd (numbered 3 or more), or -1.
int dup_fd(int fd);
// Maps a file read/write and shared; nullptr on failure.
void* map_file_shared(int fd, size_t size);
// Reads directory entries (getdents64) into buf; bytes read, 0 at the end,
// -errno on failure. Walk them with dir_entry_name.
long read_dir(int dirfd, void* buf, size_t size);
// The name of the entry at byte `off` of a read_dir buffer and the offset
// of the next one.
const char* dir_entry_name(const void* buf, size_t off, size_t* next);
// True if a process with this pid exists (kill(pid, 0) succeeds or fails
// with EPERM).
bool process_exists(int pid);
uint64_t realtime_ms();

// Writes the process's environment block (NUL-separated) into buf when
// `environ` cannot be used yet; returns bytes read.
size_t read_proc_environ(char* buf, size_t size);

// Small system files (/proc, cgroup files: report/mem_limit.cpp, statm,
// the environment above). These
// follow symlinks, like any reader of /proc/self; descriptors are O_CLOEXEC.
// Opens `path` read-only: a file descriptor or -errno.
int open_read(const char* path);
// read(2), again after EINTR: bytes read, 0 at the end, -errno.
long read_fd(int fd, void* buf, size_t n);
// Reads up to cap - 1 bytes of `path` (the start of a longer file) and
// NUL-terminates them: the length, or -errno with buf "" (cap >= 1).
long read_file(const char* path, char* buf, size_t cap);
// True if `path` names a directory (O_PATH: no read permission needed).
bool is_directory(const char* path);

}  // namespace ebb::os
