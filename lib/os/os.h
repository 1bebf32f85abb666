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
  void* (*reserve)(size_t size) = nullptr;          // address space, no access
  int (*commit)(void* p, size_t size) = nullptr;     // make reserved memory usable
  void* (*map)(size_t size) = nullptr;               // fresh read/write memory
  int (*advise)(void* p, size_t size, bool lazy) = nullptr;  // give pages back
  uint64_t (*now_ms)() = nullptr;                    // monotonic milliseconds
};
extern Hooks g_hooks;

void* reserve(size_t size);
int commit(void* p, size_t size);
void* map(size_t size);
// Maps `size` bytes aligned to `align` (a power of two >= page size).
void* map_aligned(size_t size, size_t align);
void unmap(void* p, size_t size);
void* remap(void* p, size_t old_size, size_t new_size);
// madvise(MADV_DONTNEED) or, if lazy, MADV_FREE.
int advise_free(void* p, size_t size, bool lazy);
uint64_t now_ms();

// Futex on a 32-bit word; timeout_ms < 0 waits for ever.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ms);
void futex_wake(std::atomic<uint32_t>* word, int count);

// Process-wide memory barrier on every thread of this process
// (membarrier(PRIVATE_EXPEDITED)); lets owner threads use plain stores on
// their fast path. membarrier_available() registers on first use.
bool membarrier_available();
bool membarrier();

int gettid();
// Writes the process's environment block (NUL-separated) into buf when
// `environ` cannot be used yet; returns bytes read.
size_t read_proc_environ(char* buf, size_t size);

}  // namespace ebb::os
