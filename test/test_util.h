// Helpers shared by the suites that run on top of ebbmalloc.
#pragma once
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "ebbmalloc.h"

namespace ebbtest {

// Resident set size of this process, from /proc/self/statm.
inline uint64_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

inline uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

inline void sleep_ms(unsigned ms) { usleep(ms * 1000u); }

inline ebb_stats_t stats() {
  ebb_stats_t s;
  ebb_stats(&s);
  return s;
}

// Touches every page so the memory is really resident.
// The barrier keeps the compiler from dropping the writes when the memory is
// freed right after.
inline void touch(void* p, size_t n, unsigned char v = 0xA5) {
  memset(p, v, n);
  asm volatile("" : : "r"(p) : "memory");
}

inline constexpr size_t kMiB = size_t{1} << 20;

}  // namespace ebbtest
