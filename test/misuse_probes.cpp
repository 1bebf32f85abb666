// A census of misuse: every probe misuses the allocator in one way (double
// frees of every shape, invalid frees, sized-free mismatches, bad pointers
// to realloc and malloc_usable_size, overflows and underflows, writes and
// reads after free, zero-size accesses, an executable heap), then goes on
// using the allocator (the aftermath below) so that what was let through
// shows as a block handed out twice. A probe's outcome, in a child process:
//   abort   killed by SIGABRT with a message on stderr, at the misuse
//   later   the same, at a later call (in the aftermath): an overflow or a
//           write after free is seen when the allocator next looks at the
//           memory; a double free caught there was handed out twice first
//   fault   killed by SIGSEGV/SIGBUS; "fault+msg" when the allocator's
//           handler named what was hit (a guard page, a quarantined block)
//   silent  not caught (exit 0), or not caught with corruption seen (exit 3)
//   n/a     the API is missing (free_sized under glibc before 2.38)
//
// Built twice from this file:
//   misuse_test          linked with ebbmalloc: one GoogleTest death test per
//                        probe asserting the outcome (and message) expected
//                        in the mode it runs in (EBBMALLOC_HARDEN=0 or 1), and
//                        `misuse_test --census` (a table, counts per mode,
//                        exit 1 if any outcome differs from its expectation);
//   misuse_census_glibc  the same probes on the system allocator (glibc):
//                        `misuse_census_glibc` prints its table and counts.
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

#ifdef EBB_PROBES_GTEST
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ebbmalloc.h"
#endif

namespace {

// ---- helpers -------------------------------------------------------------------

// Keeps the compiler from seeing through a pointer (no folding of misuse).
template <class T>
T* opaque(T* p) {
  asm volatile("" : "+r"(p));
  return p;
}
char* M(size_t n) { return opaque(static_cast<char*>(malloc(n))); }
void F(void* p) { free(opaque(p)); }
void touch(void* p) { asm volatile("" : : "r"(p) : "memory"); }

constexpr size_t kSmall = 64, kMedium = 5000, kLarge = 100000, kLarge2 = size_t{2} << 20, kHuge = size_t{40} << 20;

// Goes on using the allocator after a misuse: blocks of `n` bytes, twice,
// with malloc_trim in between (ebbmalloc flushes its caches to the slabs
// there, which check what they get). Exit code 3 if a block was handed out
// twice (or two blocks overlap): silent corruption.
int aftermath(size_t n) {
  // Marks stderr: a message after this was not given at the misuse itself.
  const char mark[] = "[aftermath]\n";
  if (write(2, mark, sizeof(mark) - 1) < 0) _exit(98);
  const int k = n > 65536 ? 8 : 64;
  int bad = 0;
  for (int round = 0; round < 2; ++round) {
    char* v[64];
    for (int i = 0; i < k; ++i) {
      v[i] = M(n ? n : 1);
      if (!v[i]) continue;
      v[i][0] = static_cast<char>(i);
    }
    for (int i = 0; i < k; ++i)
      for (int j = i + 1; j < k; ++j)
        if (v[i] && v[j] && (v[i] < v[j] ? v[j] - v[i] : v[i] - v[j]) < static_cast<ptrdiff_t>(n ? n : 1)) bad = 1;
    for (int i = k; i-- > 0;) F(v[i]);
    malloc_trim(0);
  }
  return bad ? 3 : 0;
}

// Two blocks of `n` bytes, q right after p in memory (the closest pair among
// a few allocations; the others are freed). Sizes that the test harness
// does not use itself keep the layout the same in every process.
void adjacent(size_t n, char** p, char** q) {
  char* v[64];
  for (auto& x : v) x = M(n);
  int bi = 0, bj = 1;
  ptrdiff_t best = PTRDIFF_MAX;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      const ptrdiff_t d = v[j] - v[i];
      if (d >= static_cast<ptrdiff_t>(n) && d < best) {
        best = d;
        bi = i;
        bj = j;
      }
    }
  for (int i = 0; i < 64; ++i)
    if (i != bi && i != bj) F(v[i]);
  *p = v[bi];
  *q = v[bj];
}
constexpr size_t kOdd = 1792;  // a size class the harness leaves alone

typedef void (*free_sized_fn)(void*, size_t);
typedef void (*free_aligned_sized_fn)(void*, size_t, size_t);
free_sized_fn free_sized_ptr() { return reinterpret_cast<free_sized_fn>(dlsym(RTLD_DEFAULT, "free_sized")); }
free_aligned_sized_fn free_aligned_sized_ptr() {
  return reinterpret_cast<free_aligned_sized_fn>(dlsym(RTLD_DEFAULT, "free_aligned_sized"));
}
constexpr int kNotApplicable = 4;

void* run_thread(void* (*fn)(void*), void* arg) {
  pthread_t t;
  if (pthread_create(&t, nullptr, fn, arg) != 0) _exit(99);
  void* r = nullptr;
  pthread_join(t, &r);
  return r;
}
void* free_in_thread(void* p) {
  F(p);
  return nullptr;
}
void* alloc_free_in_thread(void* size) {
  char* p = M(reinterpret_cast<size_t>(size));
  F(p);
  return p;  // freed; the thread's cache goes back to the slabs at its exit
}

// A pointer into memory that is not the allocator's.
char g_static[256];

// ---- the probes ----------------------------------------------------------------
// Each returns its exit code (0, 3 or kNotApplicable) when it survives.

// Double frees.
int df_immediate(size_t n) {
  char* p = M(n);
  F(p);
  F(p);
  return aftermath(n);
}
int df_interleaved(size_t n) {
  char* p = M(n);
  char* q = M(n);
  F(p);
  F(q);
  F(p);
  return aftermath(n);
}
int df_small_many_between() {
  char* p = M(kSmall);
  char* v[100];
  for (auto& x : v) x = M(kSmall);
  F(p);
  for (auto& x : v) F(x);
  F(p);
  return aftermath(kSmall);
}
int df_small_after_cache_overflow() {
  // p goes to the transfer cache (or its slab) as the thread cache overflows.
  std::vector<char*> v(6000);
  char* p = M(kSmall);
  for (auto& x : v) x = M(kSmall);
  F(p);
  for (auto& x : v) F(x);
  F(p);
  return aftermath(kSmall);
}
int df_small_after_trim() {
  char* keep = M(kSmall);  // the slab stays in use
  char* p = M(kSmall);
  F(p);
  malloc_trim(0);
  F(p);
  F(keep);
  return aftermath(kSmall);
}
int df_small_slab_released() {
  char* p = M(3000);  // alone in its slab
  F(p);
  malloc_trim(0);
  F(p);
  return aftermath(3000);
}
int df_small_page_given_back() {
  // p's pages are wholly free and given back to the OS between the two
  // frees (malloc_trim reports at once); a neighbour keeps the slab in use.
  // (8 KiB objects: each covers whole pages.)
  char* v[16];
  for (auto& x : v) x = M(8192);
  char* p = nullptr;
  char* keep = nullptr;
  for (int i = 0; i < 16 && !p; ++i)
    for (int j = 0; j < 16; ++j)
      if (i != j && (reinterpret_cast<uintptr_t>(v[i]) >> 16) == (reinterpret_cast<uintptr_t>(v[j]) >> 16)) {
        keep = v[i];
        p = v[j];
        break;
      }
  if (!p) _exit(97);
  for (char* x : v)
    if (x != keep) F(x);
  malloc_trim(0);
  F(p);
  F(keep);
  return aftermath(8192);
}
int df_small_cross_thread() {
  char* p = M(kSmall);
  F(p);
  run_thread(&free_in_thread, p);
  return aftermath(kSmall);
}
int df_small_after_thread_exit() {
  char* p = static_cast<char*>(run_thread(&alloc_free_in_thread, reinterpret_cast<void*>(kSmall)));
  F(p);
  return aftermath(kSmall);
}
struct HeldThread {
  pthread_t t;
  char* p = nullptr;
  int pipe_go[2], pipe_done[2];
};
void* hold_freed(void* arg) {
  HeldThread* h = static_cast<HeldThread*>(arg);
  h->p = M(kSmall);
  F(h->p);  // stays in this thread's cache while it waits
  char c = 0;
  if (write(h->pipe_done[1], &c, 1) != 1) _exit(98);
  if (read(h->pipe_go[0], &c, 1) != 1) _exit(98);
  return nullptr;
}
int df_small_in_live_threads_cache() {
  HeldThread h;
  if (pipe(h.pipe_go) || pipe(h.pipe_done)) _exit(99);
  pthread_create(&h.t, nullptr, &hold_freed, &h);
  char c;
  if (read(h.pipe_done[0], &c, 1) != 1) _exit(99);
  F(h.p);  // freed already, in the other (live) thread's cache
  int r = aftermath(kSmall);
  if (write(h.pipe_go[1], &c, 1) != 1) _exit(99);
  pthread_join(h.t, nullptr);
  return r;
}
int df_large_cross_thread() {
  char* p = M(kLarge);
  F(p);
  run_thread(&free_in_thread, p);
  return aftermath(kLarge);
}
int df_large_after_eviction() {
  char* p = M(kLarge);
  F(p);
  for (size_t k = 1; k <= 12; ++k) F(M(kLarge + k * 8192));  // pushes p out of the thread's large-block cache
  F(p);
  return aftermath(kLarge);
}
int df_delete() {
  int* p = opaque(new int(1));
  delete p;
  delete opaque(p);
  return aftermath(sizeof(int));
}
int df_delete_array() {
  char* p = opaque(new char[kSmall]);
  delete[] p;
  delete[] opaque(p);
  return aftermath(kSmall);
}
int df_free_sized() {
  free_sized_fn fs = free_sized_ptr();
  if (!fs) return kNotApplicable;
  char* p = M(kSmall);
  fs(p, kSmall);
  fs(opaque(p), kSmall);
  return aftermath(kSmall);
}
int df_calloc() {
  char* p = opaque(static_cast<char*>(calloc(4, 16)));
  F(p);
  F(p);
  return aftermath(kSmall);
}
int df_aligned(size_t align, size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, align, n) != 0) _exit(99);
  F(p);
  F(p);
  return aftermath(n);
}
int df_zero_size() {
  char* p = M(0);
  F(p);
  F(p);
  return aftermath(0);
}
int df_after_realloc_moved() {
  char* p = M(kSmall);
  char* q = opaque(static_cast<char*>(realloc(p, kMedium)));
  F(p);  // realloc moved (and freed) it
  F(q);
  return aftermath(kSmall);
}
int df_after_realloc_zero() {
  char* p = M(kSmall);
  touch(realloc(p, 0));  // frees p (glibc's behaviour)
  F(p);
  return aftermath(kSmall);
}
int df_small_delayed() {
  char* p = M(kSmall);
  F(p);
  for (int i = 0; i < 20000; ++i) F(M(16 + (i % 64) * 16));
  F(p);
  return aftermath(kSmall);
}

// Frees of pointers that are not the start of a live block.
int inv_offset(size_t n, ptrdiff_t off) {
  char* p = M(n);
  F(p + off);
  return aftermath(n);
}
int inv_past_request() {
  char* p = M(24);
  F(p + 24);
  return aftermath(24);
}
int inv_stack() {
  char buf[64];
  touch(buf);
  F(buf + 16);
  return 0;
}
int inv_global() {
  F(g_static + 16);
  return 0;
}
int inv_code() {
  F(reinterpret_cast<void*>(&inv_code));
  return 0;
}
int inv_mmap() {
  void* m = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  F(m);
  return 0;
}
int inv_wild(uintptr_t a) {
  F(reinterpret_cast<void*>(a));
  return 0;
}
int inv_unallocated_slot() {
  // The slot right after p, which the program never got.
  char* p = M(kOdd);
  F(p + kOdd);
  return aftermath(kOdd);
}
int inv_delete_interior() {
  char* p = opaque(new char[kSmall]);
  delete[] opaque(p + 16);
  return aftermath(kSmall);
}
int inv_zero_interior() {
  char* p = M(0);
  F(p + 8);
  return aftermath(0);
}

// Sized frees whose size or alignment is not the block's.
int sz_delete(size_t n, size_t given) {
  void* p = opaque(::operator new(n));
  ::operator delete(p, given);
  return aftermath(n);
}
int sz_delete_array(size_t n, size_t given) {
  void* p = opaque(::operator new[](n));
  ::operator delete[](p, given);
  return aftermath(n);
}
int sz_delete_aligned(size_t n, size_t align, size_t given, size_t given_align) {
  touch(::operator new(n, std::align_val_t(align)));  // so p is not a slab's first (over-aligned) object
  void* p = opaque(::operator new(n, std::align_val_t(align)));
  ::operator delete(p, given, std::align_val_t(given_align));
  return aftermath(n);
}
int sz_delete_align_only(size_t n, size_t align, size_t given_align) {
  touch(::operator new(n, std::align_val_t(align)));
  // A block that happens to be aligned to given_align too (1 in
  // given_align/align, the hardened mode's slots are random) would make the
  // delete right after all: take one that is not (the others stay live).
  void* p = nullptr;
  for (int i = 0; i < 64; ++i) {
    p = opaque(::operator new(n, std::align_val_t(align)));
    if (reinterpret_cast<uintptr_t>(p) & (given_align - 1)) break;
  }
  ::operator delete(p, std::align_val_t(given_align));
  return aftermath(n);
}
int sz_free_sized(size_t n, size_t given) {
  free_sized_fn fs = free_sized_ptr();
  if (!fs) return kNotApplicable;
  char* p = M(n);
  fs(p, given);
  return aftermath(n);
}
int sz_free_aligned_sized(size_t align, size_t n, size_t given_align, size_t given) {
  free_aligned_sized_fn fs = free_aligned_sized_ptr();
  if (!fs) return kNotApplicable;
  touch(aligned_alloc(align, n));
  char* p = opaque(static_cast<char*>(aligned_alloc(align, n)));
  fs(p, given_align, given);
  return aftermath(n);
}

// realloc and malloc_usable_size of bad pointers.
int ru_realloc_freed(size_t n, size_t to) {
  char* p = M(n);
  F(p);
  char* q = opaque(static_cast<char*>(realloc(p, to)));
  touch(q);
  return aftermath(n);
}
int ru_realloc_interior(size_t n, ptrdiff_t off, size_t to) {
  char* p = M(n);
  touch(realloc(p + off, to));
  return aftermath(n);
}
int ru_realloc_stack() {
  char buf[64];
  touch(buf);
  touch(realloc(opaque(buf), 128));
  return 0;
}
int ru_realloc_wild() {
  touch(realloc(reinterpret_cast<void*>(uintptr_t{0x12345670}), 128));
  return 0;
}
int ru_usable_freed(size_t n) {
  char* p = M(n);
  F(p);
  volatile size_t u = malloc_usable_size(opaque(p));
  (void)u;
  return aftermath(n);
}
int ru_usable_interior(size_t n, ptrdiff_t off) {
  char* p = M(n);
  volatile size_t u = malloc_usable_size(opaque(p + off));
  (void)u;
  return aftermath(n);
}
int ru_usable_stack() {
  char buf[64];
  touch(buf);
  volatile size_t u = malloc_usable_size(opaque(buf));
  (void)u;
  return 0;
}
int ru_usable_wild() {
  volatile size_t u = malloc_usable_size(reinterpret_cast<void*>(uintptr_t{0x12345670}));
  (void)u;
  return 0;
}

// Overflows (past the requested size) and underflows, then a free.
char g_src[(size_t{2} << 20) + 4096];  // the source of the memcpy overflows
// Short overflows write bytes that differ from what is there (a write of
// the value already in memory changes nothing and is not a corruption):
// otherwise a random canary byte would match 'A' once in 256 runs.
int of_write(size_t n, size_t len) {
  char* p = M(n);
  if (len <= 64) {
    for (size_t i = n; i < n + len; ++i) opaque(p)[i] = static_cast<char>(p[i] ^ 0x41);
  } else {
    memset(opaque(p + n), 'A', len);
  }
  F(p);
  return aftermath(n);
}
int of_memcpy(size_t n, size_t extra) {
  char* p = M(n);
  memset(g_src, 'A', n);
  if (extra <= 64) {
    for (size_t i = n; i < n + extra; ++i) g_src[i] = static_cast<char>(opaque(p)[i] ^ 0x41);
  } else {
    memset(g_src + n, 'A', extra);
  }
  memcpy(opaque(p), opaque(g_src), n + extra);
  F(p);
  return aftermath(n);
}
int of_far(size_t n, size_t at) {
  // One byte `at` bytes past the end, the bytes before it untouched.
  char* p = M(n);
  opaque(p)[n + at] ^= 0x41;
  F(p);
  return aftermath(n);
}
int of_page_end(size_t n) {
  // The first byte after the block's last page.
  char* p = M(n);
  const size_t end = (n + 4095) & ~size_t{4095};
  opaque(p)[end] = 'A';
  F(p);
  return aftermath(n);
}
int of_usable_plus_one() {
  char *p, *q;
  adjacent(24, &p, &q);  // the next slot is live: a deterministic layout
  opaque(p)[malloc_usable_size(p)] ^= 0x41;
  F(p);
  F(q);
  return aftermath(24);
}
int of_calloc() {
  char* p = opaque(static_cast<char*>(calloc(3, 8)));
  p[24] ^= 0x41;
  F(p);
  return aftermath(24);
}
int of_aligned() {
  char* p = opaque(static_cast<char*>(aligned_alloc(64, 100)));
  p[100] ^= 0x41;
  F(p);
  return aftermath(100);
}
int of_after_realloc_shrink() {
  char* p = M(100);
  p = opaque(static_cast<char*>(realloc(p, 40)));
  p[40] ^= 0x41;
  F(p);
  return aftermath(40);
}
int of_strcpy() {
  char *p, *q;
  adjacent(8, &p, &q);
  strcpy(opaque(p), opaque(const_cast<char*>("0123456789abcdef")));
  F(p);
  F(q);
  return aftermath(8);
}
int of_into_live_neighbour() {
  char *p, *q;
  adjacent(kOdd, &p, &q);
  opaque(p)[kOdd] ^= 0x41;
  F(p);
  F(q);
  return aftermath(kOdd);
}
int of_into_free_neighbour(size_t len) {
  char *p, *q;
  adjacent(kOdd, &p, &q);
  F(q);  // the next slot is free (in ebbmalloc's thread cache)
  memset(opaque(p + kOdd), 'A', len);
  F(p);
  return aftermath(kOdd);
}
int uf_write(size_t n, size_t len) {
  char* p = M(n);
  memset(opaque(p) - len, 'A', len);
  F(p);
  return aftermath(n);
}
int uf_into_live_neighbour(size_t len) {
  // Below q is p's end (live): in the hardened mode its tail word, the size
  // encoded with a per-process secret. A byte written with the value it
  // already holds changes nothing any check could see (one process in 256
  // had 'A' there: the census failed 2 runs in 300), so the write is of a
  // value it does not hold.
  char *p, *q;
  adjacent(kOdd, &p, &q);
  char* under = opaque(q) - len;
  memset(under, under[len - 1] == 'A' ? 'B' : 'A', len);
  F(q);
  F(p);
  return aftermath(kOdd);
}

// Uses after free.
int uaf_write(size_t n, size_t off, size_t len) {
  char* p = M(n);
  F(p);
  memset(opaque(p + off), 'A', len);
  return aftermath(n);
}
int uaf_write_reuse(size_t n) {
  char* p = M(n);
  F(p);
  memset(opaque(p), 'A', 8);  // a word (what a stale pointer's owner stores)
  char* q = M(n);
  touch(q);
  F(q);
  return aftermath(n);
}
int uaf_read(size_t n) {
  char* p = M(n);
  memset(p, 'S', n);
  F(p);
  volatile char c = opaque(p)[n / 2];
  (void)c;
  return aftermath(n);
}
int uaf_poison_link(bool to_stack) {
  // Classic tcache poisoning: redirect a freed object's link.
  char target[128] __attribute__((aligned(16)));
  touch(target);
  char* a = M(kSmall);
  char* b = M(kSmall);
  F(b);
  F(a);
  char* dest = to_stack ? target : b + 16;
  memcpy(opaque(a), &dest, sizeof(dest));
  char* x = M(kSmall);
  char* y = M(kSmall);
  touch(x);
  if (y == dest) return 3;  // the allocator handed out the attacker's address
  return aftermath(kSmall);
}
int uaf_after_realloc_move() {
  char* p = M(kSmall);
  char* q = opaque(static_cast<char*>(realloc(p, kMedium)));
  memset(opaque(p), 'A', 8);
  F(q);
  return aftermath(kSmall);
}
int uaf_after_delete() {
  char* p = opaque(new char[kSmall]);
  delete[] p;
  memset(opaque(p), 'A', 8);
  return aftermath(kSmall);
}

// Zero-size allocations.
int zs_read(size_t off) {
  char* p = M(0);
  volatile char c = opaque(p)[off];
  (void)c;
  F(p);
  return 0;
}
int zs_write(size_t off) {
  char* p = M(0);
  opaque(p)[off] = 'A';
  F(p);
  return aftermath(0);
}
int zs_calloc_write() {
  char* p = opaque(static_cast<char*>(calloc(0, 16)));
  p[0] = 'A';
  F(p);
  return aftermath(0);
}
int zs_new_write() {
  char* p = opaque(static_cast<char*>(::operator new(0)));
  p[0] = 'A';
  ::operator delete(p);
  return aftermath(0);
}
int zs_aligned_write() {
  char* p = opaque(static_cast<char*>(aligned_alloc(64, 0)));
  if (!p) return 0;
  p[0] ^= 0x41;
  F(p);
  return aftermath(0);
}

// Executing heap memory.
int ex_heap(size_t n) {
  unsigned char* p = reinterpret_cast<unsigned char*>(M(n));
  p[0] = 0xC3;  // ret
  __builtin___clear_cache(reinterpret_cast<char*>(p), reinterpret_cast<char*>(p) + 1);
  reinterpret_cast<void (*)()>(opaque(p))();
  F(p);
  return 0;
}

// Mixed allocation families (not detectable by an allocator whose malloc and
// new are the same; listed for completeness).
int mix_malloc_delete() {
  char* p = M(kSmall);
  ::operator delete(opaque(p));
  return aftermath(kSmall);
}
int mix_new_array_delete() {
  char* p = opaque(new char[kSmall]);
  delete opaque(p);
  return aftermath(kSmall);
}

// Harness controls (not counted).
int ctl_ok() { return aftermath(kSmall); }
int ctl_abort() {
  fprintf(stderr, "control: aborting\n");
  abort();
}
int ctl_fault() {
  *opaque(static_cast<volatile char*>(nullptr)) = 1;
  return 0;
}

// ---- the table -----------------------------------------------------------------

// What a mode does with a probe: 'A' abort at the misuse with a message
// matching `re`, 'L' abort at a later call (after the aftermath mark), 'C'
// either (when the allocator looks at the damage depends on its caches), 'S'
// a fault (SIGSEGV/SIGBUS) with stderr matching `re`, 'N' not caught (exit
// 0 or 3), '?' not asserted (it depends on where the kernel puts mappings,
// or on the per-process secret),
// 'X' not applicable.
struct Expect {
  char kind;
  const char* re;
};
struct Probe {
  const char* name;
  const char* category;
  int (*run)();
  Expect def;   // EBBMALLOC_HARDEN=0
  Expect hard;  // EBBMALLOC_HARDEN=1
};

constexpr Expect kNo{'N', ""};
constexpr Expect kLayout{'?', ""};  // where the kernel puts mappings
constexpr Expect kVaries{'?', ""};  // the per-process secret
constexpr Expect DF{'A', "double free"};
constexpr Expect DF_LATE{'L', "double free"};
constexpr Expect INV{'A', "invalid pointer"};
constexpr Expect SZ{'A', "size mismatch|not aligned to"};
constexpr Expect FREED{'A', "pointer to freed memory|double free|invalid pointer"};
constexpr Expect OVF{'A', "heap buffer overflow"};
constexpr Expect UAF{'L', "write after free"};
constexpr Expect LINK{'C', "corrupted free list"};  // at the misuse's own calls or later
constexpr Expect LINK_NOW{'A', "corrupted free list"};  // the probe's own next mallocs
constexpr Expect SEGV{'S', ""};
constexpr Expect GUARD{'S', "ebbmalloc: SIG(SEGV|BUS) at .*(guard page|use after free)"};
constexpr Expect ZERO{'S', "ebbmalloc: SIGSEGV at .*zero-size allocation"};

#define P(name, cat, body, d, h) {name, cat, []() -> int { body; }, d, h}

const Probe kProbes[] = {
    // ---- double free ----
    P("df_small_immediate", "double free", return df_immediate(kSmall), DF, DF),
    P("df_small16_immediate", "double free", return df_immediate(16), DF, DF),
    P("df_medium_immediate", "double free", return df_immediate(kMedium), DF, DF),
    P("df_32k_immediate", "double free", return df_immediate(32768), DF, DF),
    P("df_small_interleaved", "double free", return df_interleaved(kSmall), DF, DF),
    P("df_medium_interleaved", "double free", return df_interleaved(kMedium), DF, DF),
    P("df_small_100_between", "double free", return df_small_many_between(), DF, DF),
    P("df_small_after_cache_overflow", "double free", return df_small_after_cache_overflow(), DF, DF),
    P("df_small_after_trim", "double free", return df_small_after_trim(), DF, DF),
    P("df_small_slab_released", "double free", return df_small_slab_released(), DF, DF),
    P("df_small_page_given_back", "double free", return df_small_page_given_back(), DF_LATE, DF),
    P("df_small_cross_thread", "double free", return df_small_cross_thread(), DF, DF),
    P("df_small_after_thread_exit", "double free", return df_small_after_thread_exit(), DF, DF),
    P("df_small_in_live_threads_cache", "double free", return df_small_in_live_threads_cache(), DF, DF),
    P("df_small_delayed", "double free", return df_small_delayed(), DF, DF),
    P("df_large_immediate", "double free", return df_immediate(kLarge), DF, DF),
    P("df_large2m_immediate", "double free", return df_immediate(kLarge2), DF, DF),
    P("df_large_interleaved", "double free", return df_interleaved(kLarge), DF, DF),
    P("df_large_cross_thread", "double free", return df_large_cross_thread(), DF, DF),
    P("df_large_after_eviction", "double free", return df_large_after_eviction(), DF, DF),
    P("df_huge_immediate", "double free", return df_immediate(kHuge), INV, INV),
    P("df_delete", "double free", return df_delete(), DF, DF),
    P("df_delete_array", "double free", return df_delete_array(), DF, DF),
    P("df_free_sized", "double free", return df_free_sized(), DF, DF),
    P("df_calloc", "double free", return df_calloc(), DF, DF),
    P("df_aligned_small", "double free", return df_aligned(64, 100), DF, DF),
    P("df_aligned_large", "double free", return df_aligned(size_t{1} << 20, size_t{1} << 20), DF, DF),
    P("df_zero_size", "double free", return df_zero_size(), DF, DF),
    P("df_after_realloc_moved", "double free", return df_after_realloc_moved(), DF, DF),
    P("df_after_realloc_zero", "double free", return df_after_realloc_zero(), DF, DF),
    // ---- invalid free ----
    P("inv_small_interior16", "invalid free", return inv_offset(kSmall, 16), INV, INV),
    P("inv_small_interior8", "invalid free", return inv_offset(kSmall, 8), INV, INV),
    P("inv_small_unaligned1", "invalid free", return inv_offset(kSmall, 1), INV, INV),
    P("inv_small_before", "invalid free", return inv_offset(kSmall, -16), INV, INV),
    P("inv_small_past_request", "invalid free", return inv_past_request(), INV, INV),
    P("inv_small_unallocated_slot", "invalid free", return inv_unallocated_slot(), DF, FREED),
    P("inv_medium_interior", "invalid free", return inv_offset(kMedium, 2048), INV, INV),
    P("inv_large_interior_page", "invalid free", return inv_offset(kLarge, 4096), INV, INV),
    P("inv_large_interior_unaligned", "invalid free", return inv_offset(kLarge, 100), INV, INV),
    P("inv_large_past_end", "invalid free", return inv_offset(kLarge, kLarge), INV, INV),
    P("inv_large_before", "invalid free", return inv_offset(kLarge, -4096), INV, INV),
    P("inv_huge_interior", "invalid free", return inv_offset(kHuge, 4096), INV, INV),
    P("inv_huge_past_end", "invalid free", return inv_offset(kHuge, kHuge), INV, INV),
    P("inv_stack", "invalid free", return inv_stack(), INV, INV),
    P("inv_global", "invalid free", return inv_global(), INV, INV),
    P("inv_code", "invalid free", return inv_code(), INV, INV),
    P("inv_mmap", "invalid free", return inv_mmap(), INV, INV),
    P("inv_wild", "invalid free", return inv_wild(0x12345670), INV, INV),
    P("inv_wild_pattern", "invalid free", return inv_wild(0x4141414141414140ull), INV, INV),
    P("inv_kernel", "invalid free", return inv_wild(0xffff800000001000ull), INV, INV),
    P("inv_delete_interior", "invalid free", return inv_delete_interior(), INV, INV),
    P("inv_zero_interior", "invalid free", return inv_zero_interior(), INV, INV),
    // ---- sized free ----
    P("sz_delete_other_class", "sized free", return sz_delete(kSmall, 128), SZ, SZ),
    P("sz_delete_smaller", "sized free", return sz_delete(100, 8), SZ, SZ),
    P("sz_delete_same_class", "sized free", return sz_delete(60, 64), kNo, SZ),
    P("sz_delete_large", "sized free", return sz_delete(kLarge, 50000), SZ, SZ),
    P("sz_delete_large_same_pages", "sized free", return sz_delete(kLarge, kLarge - 1000), kNo, SZ),
    P("sz_delete_huge", "sized free", return sz_delete(kHuge, kHuge / 2), SZ, SZ),
    P("sz_delete_array", "sized free", return sz_delete_array(kSmall, 200), SZ, SZ),
    P("sz_delete_aligned_size", "sized free", return sz_delete_aligned(kSmall, 64, 256, 64), SZ, SZ),
    P("sz_delete_aligned_align", "sized free", return sz_delete_align_only(100, 64, 4096), SZ, SZ),
    P("sz_free_sized_small", "sized free", return sz_free_sized(kSmall, 1000), SZ, SZ),
    P("sz_free_sized_zero", "sized free", return sz_free_sized(100, 0), SZ, SZ),
    P("sz_free_sized_large", "sized free", return sz_free_sized(kLarge, 1000), SZ, SZ),
    P("sz_free_sized_huge", "sized free", return sz_free_sized(kHuge, kHuge / 2), SZ, SZ),
    P("sz_free_aligned_sized", "sized free", return sz_free_aligned_sized(64, 128, 64, 4096), SZ, SZ),
    // ---- realloc / malloc_usable_size of bad pointers ----
    P("ru_realloc_freed_small_same_class", "realloc/usable", return ru_realloc_freed(kSmall, 60), FREED, FREED),
    P("ru_realloc_freed_small", "realloc/usable", return ru_realloc_freed(kSmall, 1000), FREED, FREED),
    P("ru_realloc_freed_large", "realloc/usable", return ru_realloc_freed(kLarge, 200000), FREED, FREED),
    P("ru_realloc_freed_large_shrink", "realloc/usable", return ru_realloc_freed(kLarge, 50000), FREED, FREED),
    P("ru_realloc_freed_huge", "realloc/usable", return ru_realloc_freed(kHuge, kHuge * 2), INV, INV),
    P("ru_realloc_interior_small", "realloc/usable", return ru_realloc_interior(kSmall, 16, 100), INV, INV),
    P("ru_realloc_interior_large", "realloc/usable", return ru_realloc_interior(kLarge, 4096, 200000), INV, INV),
    P("ru_realloc_stack", "realloc/usable", return ru_realloc_stack(), INV, INV),
    P("ru_realloc_wild", "realloc/usable", return ru_realloc_wild(), INV, INV),
    P("ru_usable_freed_small", "realloc/usable", return ru_usable_freed(kSmall), FREED, FREED),
    P("ru_usable_freed_large", "realloc/usable", return ru_usable_freed(kLarge), FREED, FREED),
    P("ru_usable_freed_huge", "realloc/usable", return ru_usable_freed(kHuge), INV, INV),
    P("ru_usable_interior_small", "realloc/usable", return ru_usable_interior(kSmall, 16), INV, INV),
    P("ru_usable_interior_large", "realloc/usable", return ru_usable_interior(kLarge, 4096), INV, INV),
    P("ru_usable_stack", "realloc/usable", return ru_usable_stack(), INV, INV),
    P("ru_usable_wild", "realloc/usable", return ru_usable_wild(), INV, INV),
    // ---- overflow / underflow ----
    P("of_small_1", "overflow", return of_write(24, 1), kNo, OVF),
    P("of_small_1_memcpy", "overflow", return of_memcpy(24, 1), kNo, OVF),
    P("of_small_exact_1", "overflow", return of_into_live_neighbour(), kNo, OVF),
    P("of_small_32", "overflow", return of_write(24, 32), LINK, OVF),
    P("of_small_32_memcpy", "overflow", return of_memcpy(24, 32), LINK, OVF),
    P("of_small_1m", "overflow", return of_write(24, size_t{1} << 20), LINK, OVF),
    P("of_small_1m_memcpy", "overflow", return of_memcpy(24, size_t{1} << 20), LINK, OVF),
    P("of_medium_1", "overflow", return of_write(kMedium, 1), kNo, OVF),
    P("of_medium_32", "overflow", return of_write(kMedium, 32), kNo, OVF),
    P("of_medium_far", "overflow", return of_far(kMedium, 72), kNo, OVF),
    P("of_large_far", "overflow", return of_far(kLarge, 1000), kNo, OVF),
    P("of_large_1", "overflow", return of_write(kLarge, 1), kNo, OVF),
    P("of_large_1_memcpy", "overflow", return of_memcpy(kLarge, 1), kNo, OVF),
    P("of_large_32", "overflow", return of_write(kLarge, 32), kNo, OVF),
    P("of_large_page_end", "overflow", return of_page_end(kLarge), kNo, GUARD),
    P("of_large_1m", "overflow", return of_write(kLarge, size_t{1} << 20), kNo, GUARD),
    P("of_large_1m_memcpy", "overflow", return of_memcpy(kLarge, size_t{1} << 20), kNo, GUARD),
    P("of_huge_1", "overflow", return of_write(kHuge + 100, 1), kNo, OVF),
    P("of_huge_page_end", "overflow", return of_page_end(kHuge + 100), kLayout, GUARD),
    P("of_calloc_1", "overflow", return of_calloc(), kNo, OVF),
    P("of_aligned_1", "overflow", return of_aligned(), kNo, OVF),
    P("of_after_realloc_shrink", "overflow", return of_after_realloc_shrink(), kNo, OVF),
    P("of_strcpy", "overflow", return of_strcpy(), kNo, OVF),
    P("of_usable_size_plus_one", "overflow", return of_usable_plus_one(), kNo, OVF),
    P("of_into_free_neighbour", "overflow", return of_into_free_neighbour(16), LINK, OVF),
    P("uf_small_1", "underflow", return uf_into_live_neighbour(1), kNo, OVF),
    P("uf_small_32", "underflow", return uf_into_live_neighbour(32), kNo, OVF),
    P("uf_large_1", "underflow", return uf_write(kLarge, 1), kNo, GUARD),
    P("uf_large_32", "underflow", return uf_write(kLarge, 32), kNo, GUARD),
    P("uf_huge_1", "underflow", return uf_write(kHuge, 1), kLayout, GUARD),
    // ---- use after free ----
    P("uaf_write_small_first", "use after free", return uaf_write(kSmall, 0, 8), LINK, UAF),
    // One byte of the encoded link: it decodes to a nearby address, which
    // the checks catch or not depending on the random secret.
    P("uaf_write_small_byte", "use after free", return uaf_write(kSmall, 0, 1), kVaries, UAF),
    P("uaf_write_small_key", "use after free", return uaf_write(kSmall, 8, 8), kNo, UAF),
    P("uaf_write_small_end", "use after free", return uaf_write(kSmall, kSmall - 1, 1), kNo, UAF),
    P("uaf_write_small_all", "use after free", return uaf_write(kSmall, 0, kSmall), LINK, UAF),
    P("uaf_write_medium", "use after free", return uaf_write(kMedium, 100, 8), kNo, UAF),
    P("uaf_write_small_reuse", "use after free", return uaf_write_reuse(kSmall), LINK, UAF),
    P("uaf_write_large", "use after free", return uaf_write(kLarge, 0, 8), kNo, GUARD),
    P("uaf_write_large_reuse", "use after free", return uaf_write_reuse(kLarge), kNo, GUARD),
    P("uaf_write_huge", "use after free", return uaf_write(kHuge, 0, 8), SEGV, SEGV),
    P("uaf_read_small", "use after free", return uaf_read(kSmall), kNo, kNo),
    P("uaf_read_large", "use after free", return uaf_read(kLarge), kNo, GUARD),
    P("uaf_read_huge", "use after free", return uaf_read(kHuge), SEGV, SEGV),
    P("uaf_poison_link_stack", "use after free", return uaf_poison_link(true), LINK_NOW, UAF),
    P("uaf_poison_link_heap", "use after free", return uaf_poison_link(false), LINK_NOW, UAF),
    P("uaf_after_realloc_move", "use after free", return uaf_after_realloc_move(), LINK, UAF),
    P("uaf_after_delete", "use after free", return uaf_after_delete(), LINK, UAF),
    // ---- zero-size allocations ----
    P("zs_read", "zero size", return zs_read(0), kNo, ZERO),
    P("zs_read_15", "zero size", return zs_read(15), kNo, ZERO),
    P("zs_write", "zero size", return zs_write(0), kNo, ZERO),
    P("zs_write_15", "zero size", return zs_write(15), kNo, ZERO),
    P("zs_calloc_write", "zero size", return zs_calloc_write(), kNo, ZERO),
    P("zs_new_write", "zero size", return zs_new_write(), kNo, ZERO),
    P("zs_aligned_write", "zero size", return zs_aligned_write(), kNo, OVF),
    // ---- executable heap ----
    P("ex_small", "exec", return ex_heap(kSmall), SEGV, SEGV),
    P("ex_large", "exec", return ex_heap(kLarge), SEGV, SEGV),
    P("ex_huge", "exec", return ex_heap(kHuge), SEGV, SEGV),
    // ---- mixed families ----
    P("mix_malloc_delete", "mixed families", return mix_malloc_delete(), kNo, kNo),
    P("mix_new_array_delete", "mixed families", return mix_new_array_delete(), SZ, SZ),
};
#undef P

const Probe kControls[] = {
    {"ctl_ok", "control", &ctl_ok, kNo, kNo},
    {"ctl_abort", "control", &ctl_abort, {'A', "control: aborting"}, {'A', "control: aborting"}},
    {"ctl_fault", "control", &ctl_fault, SEGV, SEGV},
};

// ---- running a probe in a child ------------------------------------------------

struct Outcome {
  char kind;  // 'A' abort, 'L' abort later, 'S' fault, 'N' not caught, 'X' n/a, '?' other
  int code;   // exit code or signal
  std::string err;
};

[[noreturn]] void run_here(const Probe& p) {
  alarm(30);
  // The probe starts from an empty thread cache, not from whatever the
  // census's own strings left in the one fork copied: whether a blind
  // overflow lands on a free object's link depends on which objects the
  // cache holds (of_small_32 was caught or not by the census's history).
  malloc_trim(0);
  const int r = p.run();
  fflush(nullptr);
  _exit(r);
}

Outcome run_child(const Probe& p) {
  int fds[2];
  if (pipe(fds) != 0) abort();
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    run_here(p);
  }
  close(fds[1]);
  Outcome o{'?', 0, ""};
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0)
    if (o.err.size() < 8192) o.err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) {
    o.code = WTERMSIG(st);
    o.kind = o.code == SIGABRT ? (o.err.find("[aftermath]") != std::string::npos ? 'L' : 'A')
           : (o.code == SIGSEGV || o.code == SIGBUS) ? 'S' : '?';
  } else if (WIFEXITED(st)) {
    o.code = WEXITSTATUS(st);
    o.kind = o.code == 0 || o.code == 3 ? 'N' : o.code == kNotApplicable ? 'X' : '?';
  }
  return o;
}

std::string first_line(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const size_t e = s.find('\n', i);
    std::string line = s.substr(i, e == std::string::npos ? std::string::npos : e - i);
    if (!line.empty() && line != "[aftermath]") return line.size() > 110 ? line.substr(0, 110) + "..." : line;
    if (e == std::string::npos) break;
    i = e;
  }
  return out;
}

bool matches(const Expect& e, const Outcome& o);

// The census: every probe in a child; a table and counts. Returns the
// number of outcomes that differ from the expectation (`mode`: 0 default,
// 1 hardened, -1 none: the system allocator).
int census(int mode) {
  int mismatches = 0, counted = 0, na = 0;
  int n_abort = 0, n_later = 0, n_fault_msg = 0, n_fault = 0, n_silent = 0, n_dup = 0, n_other = 0;
  for (const Probe& c : kControls) {
    const Outcome o = run_child(c);
    if (!matches(c.def, o)) {
      printf("harness control %s: unexpected outcome %c (%d): %s\n", c.name, o.kind, o.code, first_line(o.err).c_str());
      ++mismatches;
    }
  }
  printf("%-36s %-15s %-9s %s\n", "probe", "category", "outcome", "message");
  for (const Probe& p : kProbes) {
    const Outcome o = run_child(p);
    const bool named = o.err.find("ebbmalloc: SIG") != std::string::npos;
    const char* what = o.kind == 'A' ? "abort" : o.kind == 'L' ? "later" : o.kind == 'S' ? (named ? "fault+msg" : "fault")
                     : o.kind == 'N' ? (o.code == 3 ? "silent*" : "silent") : o.kind == 'X' ? "n/a" : "other";
    bool ok = true;
    if (mode >= 0) ok = matches(mode ? p.hard : p.def, o);
    printf("%-36s %-15s %-9s %s%s\n", p.name, p.category, what, ok ? "" : "[UNEXPECTED] ", first_line(o.err).c_str());
    if (!ok) ++mismatches;
    if (o.kind == 'X') {
      ++na;
      continue;
    }
    ++counted;
    switch (o.kind) {
      case 'A': ++n_abort; break;
      case 'L': ++n_later; break;
      case 'S': ++(named ? n_fault_msg : n_fault); break;
      case 'N': ++(o.code == 3 ? n_dup : n_silent); break;
      default: ++n_other;
    }
  }
  const char* name = mode < 0 ? "system allocator" : mode ? "ebbmalloc EBBMALLOC_HARDEN=1" : "ebbmalloc default";
  printf("\n%s, %d probe kinds (%d n/a):\n", name, counted, na);
  printf("  caught with a message: %d (%d at the misuse, %d at a later call, %d faults naming what was hit)\n",
         n_abort + n_later + n_fault_msg, n_abort, n_later, n_fault_msg);
  printf("  other faults (SIGSEGV/SIGBUS, no message): %d\n", n_fault);
  printf("  not caught: %d (%d of them handed a block out twice afterwards); other outcomes: %d\n",
         n_silent + n_dup, n_dup, n_other);
  if (mode >= 0) printf("%d outcome(s) differ from the expectations\n", mismatches);
  return mismatches;
}

bool matches(const Expect& e, const Outcome& o) {
  if (e.kind == '?') return true;
  if (e.kind == 'C' ? o.kind != 'A' && o.kind != 'L' : e.kind != o.kind) return false;
  if (!*e.re) return true;
  // A POSIX extended regex over the whole of stderr.
  regex_t rx;
  if (regcomp(&rx, e.re, REG_EXTENDED | REG_NOSUB) != 0) return false;
  const bool m = regexec(&rx, o.err.c_str(), 0, nullptr, 0) == 0;
  regfree(&rx);
  return m;
}

}  // namespace

#ifdef EBB_PROBES_GTEST

namespace {

bool hardened_mode() { return ebb_options()->harden != 0; }

// Death test predicates for the outcomes.
struct NotCaught {
  bool operator()(int st) const { return WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3); }
};
struct Faulted {
  bool operator()(int st) const { return WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS); }
};

class ProbeTest : public ::testing::Test {
 public:
  explicit ProbeTest(const Probe* p) : p_(p) {}
  void TestBody() override {
    const Expect& e = hardened_mode() ? p_->hard : p_->def;
    const Probe& p = *p_;
    using ::testing::AllOf;
    using ::testing::ContainsRegex;
    using ::testing::HasSubstr;
    using ::testing::Not;
    switch (e.kind) {
      case 'A':  // at the misuse: before the aftermath starts
        EXPECT_EXIT(run_here(p), ::testing::KilledBySignal(SIGABRT),
                    AllOf(ContainsRegex(e.re), Not(HasSubstr("[aftermath]"))));
        break;
      case 'L':
        EXPECT_EXIT(run_here(p), ::testing::KilledBySignal(SIGABRT),
                    ContainsRegex(std::string("\\[aftermath\\](.|\n)*(") + e.re + ")"));
        break;
      case 'C':
        EXPECT_EXIT(run_here(p), ::testing::KilledBySignal(SIGABRT), ContainsRegex(e.re));
        break;
      case 'S':
        EXPECT_EXIT(run_here(p), Faulted(), ContainsRegex(e.re));
        break;
      case 'N':
        EXPECT_EXIT(run_here(p), NotCaught(), "") << "expected not to be caught in this mode";
        break;
      case '?':
        GTEST_SKIP() << "the outcome depends on where the kernel places mappings or on the random secret";
      default:
        FAIL() << "bad expectation";
    }
  }

 private:
  const Probe* p_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && !strcmp(argv[1], "--census")) return census(hardened_mode() ? 1 : 0) ? 1 : 0;
  ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
  for (const Probe& p : kProbes)
    ::testing::RegisterTest("Misuse", p.name, nullptr, nullptr, __FILE__, __LINE__,
                            [&p]() -> ::testing::Test* { return new ProbeTest(&p); });
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

#else

int main() { return census(-1) ? 1 : 0; }

#endif
