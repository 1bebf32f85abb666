/* The resident floor (ebb_stats version 3) against a brute-force count.
 *
 *   floor_prog exact     objects of several classes, large blocks and a huge
 *                        one; a known pattern freed (partly into this
 *                        thread's cache, which counts as free): the floor is
 *                        exactly the pages the live objects' slots overlap
 *   floor_prog threads   the same with the freed objects sitting in another
 *                        thread's cache while it waits
 *   floor_prog pinned    one live object per page in three classes: the
 *                        pinned bytes per class and their order
 *   floor_prog abi       a caller built against version 2 (the old entry
 *                        point, a version-2 struct) gets version 2, one
 *                        built against version 3 version 3, and
 *                        nothing written past it
 *   floor_prog hardened  (run with EBBMALLOC_HARDEN=1) floor at least the
 *                        live objects' pages, heap consistent afterwards
 *
 * A C program that allocates nothing before main and prints only at the
 * end, so the heap holds exactly what it allocates; the exact cases run
 * with EBBMALLOC_REPORTER=0, because creating the reporter thread makes the
 * C library allocate (and keep) a block for the thread's TLS. Prints "floor OK" or
 * "floor FAILED: ..." (exit 1). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ebbmalloc.h"

#define PAGE 4096u
#define MAX_PAGES (1u << 23) /* brute-force range: 32 GiB of address space */

static uint8_t g_page_bits[MAX_PAGES / 8];
static uint32_t g_live_on_page[1u << 20]; /* pinned: live bytes per page */

static void fail(const char* what, unsigned long long a, unsigned long long b) {
  printf("floor FAILED: %s (%llu, %llu)\n", what, a, b);
  fflush(stdout);
  exit(1);
}
#define CHECK_EQ(a, b, what)                                                          \
  do {                                                                                \
    unsigned long long x_ = (unsigned long long)(a), y_ = (unsigned long long)(b); \
    if (x_ != y_) fail(what, x_, y_);                                                 \
  } while (0)

static ebb_stats_t stats(void) {
  ebb_stats_t s;
  if (ebb_stats(&s) != 0) fail("ebb_stats failed", 0, 0);
  CHECK_EQ(s.version, EBB_STATS_VERSION, "version");
  CHECK_EQ(s.floor_bytes, s.floor_slab_bytes + s.floor_large_bytes + s.huge_bytes, "floor = slab + large + huge");
  return s;
}

/* Live objects, and how many bytes of each slot there are. */
typedef struct {
  char* p;
  size_t extent;
} Obj;
static Obj g_objs[40000];
static unsigned g_nobjs;

static void live(void* p, size_t extent) {
  if (g_nobjs == sizeof(g_objs) / sizeof(g_objs[0])) fail("too many objects", g_nobjs, 0);
  g_objs[g_nobjs].p = p;
  g_objs[g_nobjs].extent = extent;
  g_nobjs++;
}

/* Bytes of the distinct pages that the live slots of size <= `max_small`
 * (small: 1) or above it (large: 0) overlap. */
static unsigned long long brute_pages(int small) {
  uintptr_t lo = UINTPTR_MAX;
  for (unsigned i = 0; i < g_nobjs; ++i)
    if ((uintptr_t)g_objs[i].p < lo) lo = (uintptr_t)g_objs[i].p;
  lo &= ~(uintptr_t)(PAGE - 1);
  memset(g_page_bits, 0, sizeof g_page_bits);
  unsigned long long n = 0;
  for (unsigned i = 0; i < g_nobjs; ++i) {
    if ((g_objs[i].extent <= 32768) != small) continue;
    const uintptr_t a = ((uintptr_t)g_objs[i].p - lo) / PAGE;
    const uintptr_t b = ((uintptr_t)g_objs[i].p + g_objs[i].extent - 1 - lo) / PAGE;
    if (b >= MAX_PAGES) fail("objects spread too far for the brute force", b, MAX_PAGES);
    for (uintptr_t k = a; k <= b; ++k) {
      if (!(g_page_bits[k / 8] & (1u << (k % 8)))) ++n;
      g_page_bits[k / 8] |= (uint8_t)(1u << (k % 8));
    }
  }
  return n * PAGE;
}

/* Small objects of `size` (a class size), `n` of them; those with
 * keep(i) false are freed (into this thread's cache, or beyond it). */
static int keep_pattern(unsigned i) { return i % 7 == 0 || i % 97 < 5; }

static void* xmalloc(size_t n) {
  void* p = malloc(n);
  if (!p) fail("malloc returned NULL", n, 0);
  memset(p, 0x5A, n < 64 ? n : 64);
  return p;
}

static void make_small(size_t size, unsigned n, void** scratch) {
  for (unsigned i = 0; i < n; ++i) scratch[i] = xmalloc(size);
  for (unsigned i = 0; i < n; ++i) {
    if (keep_pattern(i)) live(scratch[i], malloc_usable_size(scratch[i]));
    else free(scratch[i]);
  }
}

static void* g_scratch[4000];

static const size_t kSizes[] = {16, 48, 208, 256, 1000, 3000, 12000, 30000};
static const unsigned kCounts[] = {3000, 2000, 1000, 1000, 400, 300, 60, 40};
static const size_t kLarge[] = {40000, 100000, 700000, (1u << 20) + 5, 3u << 20, 20u << 20};

static void build_heap(void) {
  for (unsigned k = 0; k < sizeof(kSizes) / sizeof(kSizes[0]); ++k) make_small(kSizes[k], kCounts[k], g_scratch);
  for (unsigned k = 0; k < sizeof(kLarge) / sizeof(kLarge[0]); ++k) {
    void* a = xmalloc(kLarge[k]);
    void* b = xmalloc(kLarge[k]);
    live(a, malloc_usable_size(a));
    free(b); /* <= 1 MiB: into this thread's large-block cache (free) */
  }
}

/* `base_*`: the floor of what the C library itself keeps live (0 in a
 * single-threaded C program; pthread_create allocates), on pages of other
 * classes than the objects here. */
static unsigned long long g_base_slab, g_base_large;

static void check_exact(const char* when, unsigned long long huge_expected) {
  const ebb_stats_t s = stats();
  CHECK_EQ(s.floor_exact, 1, "floor_exact");
  const unsigned long long slab = brute_pages(1) + g_base_slab, large = brute_pages(0) + g_base_large;
  if (s.floor_slab_bytes != slab || s.floor_large_bytes != large) {
    printf("%s: floor slab %llu large %llu, brute force slab %llu large %llu\n", when,
           (unsigned long long)s.floor_slab_bytes, (unsigned long long)s.floor_large_bytes, slab, large);
    fail("floor differs from the brute-force count", s.floor_slab_bytes + s.floor_large_bytes, slab + large);
  }
  CHECK_EQ(s.huge_bytes, huge_expected, "huge bytes");
  CHECK_EQ(ebb_check_heap(), 0, "heap consistent after the floor walk");
}

static void free_all_live(void) {
  for (unsigned i = 0; i < g_nobjs; ++i) free(g_objs[i].p);
  g_nobjs = 0;
}

/* The exact cases count every live page themselves: they need a process in
 * which nothing else is live. A sanitizer's runtime allocates before main
 * (UBSan: 72 KiB, kept); there they say so and stop. */
static int live_before_main(void) {
  const ebb_stats_t s = stats();
  if (s.floor_bytes == 0) return 0;
  printf("floor: skipped: %llu bytes were live before main (a sanitizer's runtime?); the exact count needs none\n",
         (unsigned long long)s.floor_bytes);
  return 1;
}

static int case_exact(void) {
  if (live_before_main()) return 0;
  const ebb_stats_t s0 = stats();
  CHECK_EQ(s0.floor_bytes, 0, "a fresh C program holds nothing live");
  build_heap();
  void* huge = xmalloc(40u << 20);
  const unsigned long long huge_bytes = stats().huge_bytes;
  if (huge_bytes < (40u << 20)) fail("huge mapping not counted", huge_bytes, 40u << 20);
  check_exact("with freed objects in this thread's cache", huge_bytes);
  /* Flushing the cache and giving free memory back changes no live byte. */
  ebb_report_now();
  check_exact("after ebb_report_now", huge_bytes);
  free(huge);
  free_all_live();
  ebb_report_now();
  const ebb_stats_t s1 = stats();
  CHECK_EQ(s1.floor_bytes, 0, "nothing live at the end");
  CHECK_EQ(s1.pinned_bytes, 0, "nothing pinned at the end");
  return 0;
}

/* ---- another thread's cache ---- */
static int g_go[2], g_done[2], g_started[2];

static void* holder(void* arg) {
  (void)arg;
  char c = 1;
  if (write(g_started[1], &c, 1) != 1) fail("write", 0, 0);
  if (read(g_go[0], &c, 1) != 1) fail("read", 0, 0);
  /* Three in four freed into this thread's cache (3000 and 12000 B: classes
   * the C library's own allocations for the thread do not use), the rest
   * live. */
  for (unsigned i = 0; i < 600; ++i) g_scratch[i] = xmalloc(i % 2 ? 3000 : 12000);
  for (unsigned i = 0; i < 600; ++i) {
    if (i % 4 == 0) live(g_scratch[i], malloc_usable_size(g_scratch[i]));
    else free(g_scratch[i]);
  }
  if (write(g_done[1], &c, 1) != 1) fail("write", 0, 0);
  if (read(g_go[0], &c, 1) != 1) fail("read", 0, 0); /* waits, cache full of free objects */
  return NULL;
}

static int case_threads(void) {
  if (live_before_main()) return 0;
  CHECK_EQ(stats().floor_bytes, 0, "a fresh C program holds nothing live");
  if (pipe(g_go) || pipe(g_done) || pipe(g_started)) fail("pipe", 0, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, holder, NULL)) fail("pthread_create", 0, 0);
  char c = 1;
  if (read(g_started[0], &c, 1) != 1) fail("read", 0, 0);
  const ebb_stats_t base = stats();
  g_base_slab = base.floor_slab_bytes;
  g_base_large = base.floor_large_bytes;
  if (write(g_go[1], &c, 1) != 1) fail("write", 0, 0);
  if (read(g_done[0], &c, 1) != 1) fail("read", 0, 0);
  /* The floor may be taken any number of times: the bitmaps are restored. */
  check_exact("with freed objects in another thread's cache", 0);
  check_exact("again", 0);
  if (write(g_go[1], &c, 1) != 1) fail("write", 0, 0);
  pthread_join(t, NULL);
  g_base_slab = g_base_large = 0;
  const ebb_stats_t after = stats();
  if (after.floor_slab_bytes < brute_pages(1)) fail("after the thread exited: floor below the live pages", after.floor_slab_bytes, brute_pages(1));
  free_all_live();
  return 0;
}

/* ---- pinned bytes by class ---- */
static void keep_one_per_page(size_t size, unsigned n) {
  for (unsigned i = 0; i < n; ++i) g_scratch[i] = xmalloc(size);
  for (unsigned i = 0; i < n; ++i) {
    int first = 1;
    for (unsigned j = 0; j < n; ++j)
      if (j != i && g_scratch[j] && (uintptr_t)g_scratch[j] / PAGE == (uintptr_t)g_scratch[i] / PAGE &&
          g_scratch[j] < g_scratch[i])
        first = 0;
    if (first) live(g_scratch[i], size);
  }
  for (unsigned i = 0; i < n; ++i) {
    int kept = 0;
    for (unsigned k = 0; k < g_nobjs; ++k) kept |= g_objs[k].p == g_scratch[i];
    if (!kept) free(g_scratch[i]);
  }
}

/* Pinned bytes of the live objects of `size` (which divides the page, and
 * whose slabs are wholly covered by objects): per page with a live object,
 * the rest of the page. */
static unsigned long long brute_pinned(size_t size) {
  uintptr_t lo = UINTPTR_MAX;
  for (unsigned i = 0; i < g_nobjs; ++i)
    if (g_objs[i].extent == size && (uintptr_t)g_objs[i].p < lo) lo = (uintptr_t)g_objs[i].p;
  lo &= ~(uintptr_t)(PAGE - 1);
  memset(g_live_on_page, 0, sizeof g_live_on_page);
  for (unsigned i = 0; i < g_nobjs; ++i) {
    if (g_objs[i].extent != size) continue;
    const uintptr_t k = ((uintptr_t)g_objs[i].p - lo) / PAGE;
    if (k >= sizeof(g_live_on_page) / sizeof(g_live_on_page[0])) fail("objects spread too far", k, 0);
    g_live_on_page[k] += (uint32_t)size;
  }
  unsigned long long pinned = 0;
  for (size_t k = 0; k < sizeof(g_live_on_page) / sizeof(g_live_on_page[0]); ++k)
    if (g_live_on_page[k]) pinned += PAGE - g_live_on_page[k];
  return pinned;
}

static int case_pinned(void) {
  if (live_before_main()) return 0;
  CHECK_EQ(stats().floor_bytes, 0, "a fresh C program holds nothing live");
  keep_one_per_page(256, 1024);  /* ~64 pages x 3840 free bytes */
  keep_one_per_page(1024, 64);   /* ~16 pages x 3072 */
  keep_one_per_page(64, 512);    /* ~8 pages x 4032 */
  const ebb_stats_t s = stats();
  const unsigned long long p256 = brute_pinned(256), p1024 = brute_pinned(1024), p64 = brute_pinned(64);
  CHECK_EQ(s.pinned_classes, 3, "three classes pin memory");
  CHECK_EQ(s.pinned_class_size[0], 256, "most pinned: 256 B");
  CHECK_EQ(s.pinned_class_bytes[0], p256, "pinned bytes of 256 B");
  CHECK_EQ(s.pinned_class_size[1], 1024, "second: 1024 B");
  CHECK_EQ(s.pinned_class_bytes[1], p1024, "pinned bytes of 1024 B");
  CHECK_EQ(s.pinned_class_size[2], 64, "third: 64 B");
  CHECK_EQ(s.pinned_class_bytes[2], p64, "pinned bytes of 64 B");
  CHECK_EQ(s.pinned_bytes, p256 + p1024 + p64, "pinned total");
  CHECK_EQ(s.floor_slab_bytes, brute_pages(1), "floor of the pinned heap");
  if (!(p256 > p1024 && p1024 > p64)) fail("the constructed order did not come out", p256, p1024);
  free_all_live();
  return 0;
}

/* ---- a caller built against version 2 ---- */
/* The struct as a program built against version 2 has it: 8 bytes of
 * version and num_orders, then 49 counters (mapped_bytes first). */
struct stats_v2 {
  uint32_t version;
  uint32_t num_orders;
  uint64_t counters[(EBB_STATS_V2_SIZE - 8) / 8];
};
struct old_caller {
  struct stats_v2 s;
  unsigned char after[128]; /* must stay untouched */
};

static void check_tail(const struct old_caller* o, const char* what) {
  for (unsigned i = 0; i < sizeof(o->after); ++i)
    if (o->after[i] != 0xAB) fail(what, EBB_STATS_V2_SIZE + i, o->after[i]);
}

static int case_abi(void) {
  _Static_assert(sizeof(struct stats_v2) == EBB_STATS_V2_SIZE, "version-2 layout");
  struct old_caller o;
  memset(&o, 0xAB, sizeof o);
  if ((ebb_stats)((ebb_stats_t*)(void*)&o) != 0) fail("old entry point failed", 0, 0);
  CHECK_EQ(o.s.version, 2, "old entry point fills version 2");
  CHECK_EQ(o.s.num_orders, EBB_NUM_ORDERS, "num_orders");
  if (o.s.counters[0] == 0) fail("mapped_bytes not filled", 0, 0);
  check_tail(&o, "written past the version-2 struct at byte");
  /* A size between the versions: version 2 only. */
  memset(&o, 0xAB, sizeof o);
  CHECK_EQ(ebb_stats_sized((ebb_stats_t*)(void*)&o, EBB_STATS_V2_SIZE + 100), 0, "sized, between versions");
  CHECK_EQ(o.s.version, 2, "between versions: version 2");
  check_tail(&o, "written past version 2 (sized) at byte");
  CHECK_EQ(ebb_stats_sized((ebb_stats_t*)(void*)&o, EBB_STATS_V2_SIZE - 8), (unsigned long long)-1, "too small: -1");
  CHECK_EQ(ebb_stats_sized(NULL, sizeof(ebb_stats_t)), (unsigned long long)-1, "NULL: -1");
  /* A caller built against version 3 (EBB_STATS_V3_SIZE bytes): version 3,
   * floor included, nothing written past it. */
  {
    unsigned char buf[EBB_STATS_V3_SIZE + 128];
    memset(buf, 0xAB, sizeof buf);
    CHECK_EQ(ebb_stats_sized((ebb_stats_t*)(void*)buf, EBB_STATS_V3_SIZE), 0, "sized, version 3");
    uint32_t v;
    memcpy(&v, buf, sizeof v);
    CHECK_EQ(v, 3, "a version-3 size gets version 3");
    uint64_t floor_slab;
    memcpy(&floor_slab, buf + offsetof(ebb_stats_t, floor_slab_bytes), sizeof floor_slab);
    void* q = xmalloc(100);
    memset(buf, 0xAB, sizeof buf);
    ebb_stats_sized((ebb_stats_t*)(void*)buf, EBB_STATS_V3_SIZE);
    memcpy(&floor_slab, buf + offsetof(ebb_stats_t, floor_slab_bytes), sizeof floor_slab);
    if (floor_slab < PAGE) fail("version 3: no floor", floor_slab, PAGE);
    for (unsigned i = EBB_STATS_V3_SIZE; i < sizeof buf; ++i)
      if (buf[i] != 0xAB) fail("written past the version-3 struct at byte", i, buf[i]);
    free(q);
  }
  /* This header's callers get the current version, floor included. */
  CHECK_EQ(stats().version, 4, "this header: version 4");
  void* p = xmalloc(100);
  const ebb_stats_t s = stats();
  if (s.floor_slab_bytes < PAGE) fail("current version: no floor", s.floor_slab_bytes, PAGE);
  free(p);
  return 0;
}

static int case_hardened(void) {
  build_heap();
  const ebb_stats_t s = stats();
  /* Slots are larger than the request in this mode (size word, canary):
   * the floor is at least the pages of the requested bytes. */
  if (s.floor_slab_bytes + s.floor_large_bytes < brute_pages(1) + brute_pages(0))
    fail("floor below the live objects' pages", s.floor_slab_bytes + s.floor_large_bytes,
         brute_pages(1) + brute_pages(0));
  CHECK_EQ(s.floor_exact, 1, "floor_exact");
  CHECK_EQ(ebb_check_heap(), 0, "heap consistent after the floor walk");
  stats();
  CHECK_EQ(ebb_check_heap(), 0, "heap consistent after a second walk");
  free_all_live();
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: floor_prog exact|threads|pinned|abi|hardened\n");
    return 2;
  }
  int rc;
  if (!strcmp(argv[1], "exact")) rc = case_exact();
  else if (!strcmp(argv[1], "threads")) rc = case_threads();
  else if (!strcmp(argv[1], "pinned")) rc = case_pinned();
  else if (!strcmp(argv[1], "abi")) rc = case_abi();
  else if (!strcmp(argv[1], "hardened")) rc = case_hardened();
  else {
    fprintf(stderr, "floor_prog: unknown case %s\n", argv[1]);
    return 2;
  }
  if (rc == 0) printf("floor OK %s\n", argv[1]);
  return rc;
}
