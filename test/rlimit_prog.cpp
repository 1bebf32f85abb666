// Run under an address-space limit (test/rlimit_test.sh: ulimit -v): the
// heap takes address space as it grows, allocation runs until NULL with ENOMEM,
// the heap stays consistent, every written byte survives, and freed memory
// is allocated again. ebbmalloc is this program's malloc (linked in).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "ebbmalloc.h"
#include "pattern.h"

namespace {

constexpr size_t kBlock = size_t{1} << 20;
constexpr size_t kMax = 1 << 16;  // 64 GiB of blocks: far beyond any limit used
void* g_blocks[kMax];

// The first and last 256 bytes of each block carry its pattern (touching
// every page would only cost time: untouched memory counts against the
// limit just the same).
void mark(size_t i) {
  ebbtest::pattern_fill(g_blocks[i], static_cast<uint32_t>(i), 0, 256);
  ebbtest::pattern_fill(g_blocks[i], static_cast<uint32_t>(i), kBlock - 256, kBlock);
}
bool intact(size_t i) {
  const unsigned char* p = static_cast<const unsigned char*>(g_blocks[i]);
  for (size_t k = 0; k < 256; ++k)
    if (p[kBlock - 256 + k] != ebbtest::pattern_byte(static_cast<uint32_t>(i), kBlock - 256 + k)) return false;
  return ebbtest::pattern_ok(p, static_cast<uint32_t>(i), 256);
}

int fail(const char* what) {
  fprintf(stderr, "rlimit FAILED: %s\n", what);
  return 1;
}

// Allocates 1 MiB blocks into the empty slots until NULL; returns how many.
size_t fill_up() {
  size_t got = 0;
  for (size_t i = 0; i < kMax; ++i) {
    if (g_blocks[i]) continue;
    errno = 0;
    g_blocks[i] = malloc(kBlock);
    if (!g_blocks[i]) break;
    mark(i);
    ++got;
  }
  return got;
}

}  // namespace

int main() {
  const size_t first = fill_up();
  if (first == 0) return fail("nothing could be allocated");
  if (errno != ENOMEM) return fail("allocation failed without ENOMEM");
  if (first >= kMax) return fail("the limit was never reached");
  errno = 0;
  if (malloc(size_t{64} << 20) != nullptr || errno != ENOMEM) return fail("a huge allocation did not fail with ENOMEM");
  errno = 0;
  if (calloc(1, size_t{8} << 20) != nullptr || errno != ENOMEM) return fail("calloc did not fail with ENOMEM");
  if (ebb_check_heap() != 0) return fail("heap inconsistent when exhausted");
  for (size_t i = 0; i < first; ++i)
    if (!intact(i)) return fail("a block lost its bytes");
  // Free every other block: the same space is allocated again.
  size_t freed = 0;
  for (size_t i = 0; i < first; i += 2, ++freed) {
    free(g_blocks[i]);
    g_blocks[i] = nullptr;
  }
  const size_t again = fill_up();
  // (A few MiB of slack: the reporter thread's stack, started by the frees,
  // and metadata take address space too.)
  if (again + 4 < freed) {
    fprintf(stderr, "first %zu freed %zu again %zu\n", first, freed, again);
    return fail("freed memory was not allocated again");
  }
  for (size_t i = 0; i < kMax; ++i)
    if (g_blocks[i] && !intact(i)) return fail("a block lost its bytes after reuse");
  // Free all: as much as the first time, again.
  for (size_t i = 0; i < kMax; ++i) {
    free(g_blocks[i]);
    g_blocks[i] = nullptr;
  }
  ebb_report_now();
  const size_t third = fill_up();
  if (third * 10 < first * 9) return fail("less memory after freeing everything");
  if (ebb_check_heap() != 0) return fail("heap inconsistent at the end");
  printf("rlimit OK: %zu MiB before ENOMEM, %zu of %zu freed MiB reused, %zu MiB after freeing all\n", first, again,
         freed, third);
  return 0;
}
