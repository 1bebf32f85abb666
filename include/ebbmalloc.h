/* ebbmalloc: a malloc for Linux that gives freed memory back to the OS,
 * after the kernel's free page reporting.
 *
 * Besides the standard allocation functions (malloc, free, calloc, realloc,
 * posix_memalign, aligned_alloc, malloc_usable_size, malloc_trim, mallinfo2,
 * malloc_stats, operator new/delete ...), the library exports the functions
 * below. They are C functions usable from C and C++. */
#ifndef EBBMALLOC_H
#define EBBMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EBB_STATS_VERSION 4
#define EBB_NUM_ORDERS 14 /* buddy orders 0 (4 KiB) .. 13 (32 MiB) */
#define EBB_PINNED_TOP 5  /* size classes listed in pinned_class_* */

/* Filled by ebb_stats(). Byte figures are a consistent-enough snapshot
 * taken without stopping other threads (except the resident floor, below).
 *
 * Versions: fields are only ever added at the end, and `version` says which
 * were filled. A program built against version N calls ebb_stats() with a
 * version-N struct; the library fills exactly that much (see ebb_stats and
 * ebb_stats_sized below), so programs built against an older header keep
 * working with a newer library. Version 2 ends at `reporter_thread_running`
 * (EBB_STATS_V2_SIZE bytes); version 3 adds the resident floor (and ends
 * at EBB_STATS_V3_SIZE); version 4 adds the memory limit.
 *
 * The resident floor (version 3) is the bytes of 4 KiB pages that hold at
 * least one live byte: what a non-moving allocator could at best shrink this
 * heap to. Live = handed to the program and not freed since. Objects the
 * program freed count as free wherever they wait: in a thread's cache (even
 * the caller's own), in a transfer batch, in the hardened mode's quarantine,
 * a large block in a thread's large-block cache. All pages of a live large
 * block count; a huge object counts with its whole mapping. Slab slack and
 * metadata are not in the floor. It is computed on demand, by ebb_stats()
 * and the statistics printed at exit: every thread is stopped at its next
 * malloc/free for one walk over the heap (floor_walk_us says how long). */
typedef struct ebb_stats {
  uint32_t version;    /* EBB_STATS_VERSION */
  uint32_t num_orders; /* EBB_NUM_ORDERS */
  uint64_t mapped_bytes;        /* heap committed + huge mappings + metadata */
  uint64_t resident_bytes;      /* estimate: mapped minus free memory known not resident */
  uint64_t live_bytes;          /* handed to the program (size-class/page rounded) */
  uint64_t free_warm_bytes;     /* free in the page heap, still resident */
  uint64_t free_reported_bytes; /* free in the page heap, given back (or never touched) */
  uint64_t cached_bytes;        /* free objects in thread caches and partly used slabs */
  uint64_t slab_reported_bytes; /* pages of partly used slabs given back (part of cached) */
  uint64_t huge_bytes;          /* objects in their own mappings */
  uint64_t metadata_bytes;      /* descriptors in use, slab headers, thread caches */
  uint64_t free_blocks[EBB_NUM_ORDERS];     /* free blocks per order */
  uint64_t reported_blocks[EBB_NUM_ORDERS]; /* of those, fully reported */
  uint64_t reporter_passes;    /* passes over the free lists */
  uint64_t reporter_wakeups;   /* times the reporter thread woke to work */
  uint64_t reported_blocks_total; /* blocks isolated and reported */
  uint64_t reported_bytes_total;  /* bytes given back with madvise */
  uint64_t slab_pages_reported_total; /* of those, pages of partly used slabs */
  uint64_t madvise_calls;
  uint64_t madvise_failures;
  uint64_t reported_fallbacks;      /* allocations that had to use reported memory */
  uint64_t reported_fallback_bytes; /* bytes of reported memory handed out (pages and slab pages) */
  uint64_t cache_drains;            /* idle thread caches drained by the reporter */
  uint64_t thread_caches;           /* live thread caches */
  uint64_t reporter_thread_running; /* 1 if the reporter thread exists */
  /* ---- version 3 ---- */
  uint64_t floor_bytes;       /* resident floor: floor_slab + floor_large + huge_bytes */
  uint64_t floor_slab_bytes;  /* slab pages holding a live object */
  uint64_t floor_large_bytes; /* pages of live large blocks */
  uint64_t pinned_bytes;      /* free object bytes on slab pages in the floor, all classes */
  uint64_t process_rss_bytes; /* the kernel's RSS of the process when the floor was taken (0: unknown) */
  uint64_t floor_walk_us;     /* what computing the floor took (threads wait that long) */
  uint32_t floor_exact;       /* 0: other threads' caches could not be read (no membarrier):
                                 their free objects counted as live */
  uint32_t pinned_classes;    /* entries used below, most pinned first */
  uint64_t pinned_class_size[EBB_PINNED_TOP];  /* object size of the class */
  uint64_t pinned_class_bytes[EBB_PINNED_TOP]; /* its free bytes on pages in the floor */
  /* The return curve (docs/DESIGN.md, "The return curve"): */
  uint64_t curve_keep_bytes;      /* warm free memory the last reporter pass kept for reuse */
  uint64_t heap_given_back_bytes; /* of reported_bytes_total: given back by the heap itself before a large
                                     request faulted in memory, while warm fragments it could not use sat idle */
  uint64_t heap_give_back_calls;  /* of madvise_calls: the heap's own */
  /* Version 4: the memory limit the reporter keeps the process under
   * (EBBMALLOC_LIMIT_MB, else the process's cgroup's; see README "Memory
   * limits"). All 0 without one. */
  uint64_t limit_bytes;
  uint64_t limit_source;         /* 0 none, 1 EBBMALLOC_LIMIT_MB, cgroup v2: 2 memory.high, 3 memory.max;
                                    cgroup v1: 4 memory.soft_limit_in_bytes, 5 memory.limit_in_bytes */
  uint64_t limit_usage_bytes;    /* usage when these statistics were taken: the cgroup's, less its
                                    inactive file pages; the process's RSS for EBBMALLOC_LIMIT_MB */
  uint64_t limit_headroom_bytes; /* limit - usage (0 at or over the limit) */
  uint64_t pressure_mark_bytes;  /* EBBMALLOC_PRESSURE_PCT percent of the limit: pressure from there */
  uint64_t pressure_passes;      /* reporter passes under pressure (every cache and free page back) */
  uint64_t pressure_give_backs;  /* times the heap gave back warm memory before faulting in past the mark */
  uint64_t pressure_given_back_bytes; /* what those gave back (part of heap_given_back_bytes) */
  uint64_t pressure_reliefs;      /* times an allocating thread gave back free slab pages itself at the mark */
  uint64_t pressure_relief_bytes; /* what those gave back (part of reported_bytes_total) */
  char limit_path[256];          /* the cgroup directory whose limit it is ("" otherwise) */
} ebb_stats_t;

#define EBB_STATS_V2_SIZE 400 /* offsetof(ebb_stats_t, floor_bytes) */
#define EBB_STATS_V3_SIZE 560 /* offsetof(ebb_stats_t, limit_bytes) */

/* The active options (read from EBBMALLOC_* at start-up). */
typedef struct ebb_options {
  int reporter;           /* EBBMALLOC_REPORTER (1) */
  uint32_t delay_ms;      /* EBBMALLOC_DELAY_MS (200) */
  uint32_t cold_ms;       /* EBBMALLOC_COLD_MS (1000) */
  uint32_t report_order;  /* EBBMALLOC_REPORT_ORDER (0 = 4 KiB) */
  uint32_t batch;         /* EBBMALLOC_BATCH (32) */
  int madvise_free;       /* EBBMALLOC_MADVISE=free (0: dontneed) */
  int stats;              /* EBBMALLOC_STATS: 0 off, 1 text, 2 json */
  int verbose;            /* EBBMALLOC_VERBOSE (0) */
  uint32_t reserve_gb;    /* EBBMALLOC_RESERVE_GB (1024): largest heap */
  int split_warm;         /* EBBMALLOC_SPLIT_WARM (1) */
  uint32_t report_mark_kb; /* EBBMALLOC_REPORT_MARK_KB (1024) */
  int check;              /* EBBMALLOC_CHECK (0; debug builds) */
  int live_stats;         /* EBBMALLOC_LIVE_STATS (0): counters in a file for ebbtop */
  uint32_t live_stats_ms; /* EBBMALLOC_LIVE_STATS_MS (500) */
  uint32_t reporter_linger_ms; /* EBBMALLOC_REPORTER_LINGER_MS (2000): idle time before the thread exits */
  int harden;             /* EBBMALLOC_HARDEN (0): the hardened mode */
  uint32_t thread_cache_kb; /* EBBMALLOC_THREAD_CACHE_KB (2048): most a thread's cache grows to */
  uint32_t limit_mb;      /* EBBMALLOC_LIMIT_MB (auto = UINT32_MAX: the cgroup's; 0: none) */
  uint32_t pressure_pct;  /* EBBMALLOC_PRESSURE_PCT (90) */
  int madvise_batch;      /* EBBMALLOC_MADVISE_BATCH (1): many ranges per system call */
} ebb_options_t;

/* Fills the first `size` bytes of *out with the newest version that fits
 * (out->version says which; the library does not read *out). Version 3 and
 * later compute the resident floor. Returns 0, or -1 if out is NULL or size
 * is below EBB_STATS_V2_SIZE. */
int ebb_stats_sized(ebb_stats_t* out, size_t size);
/* The entry point of programs built against version 2: fills the version-2
 * fields only (EBB_STATS_V2_SIZE bytes), without the floor. Programs built
 * against this header reach ebb_stats_sized through the macro below, with
 * the size of their struct: ebb_stats(&s) fills all of this version. */
int(ebb_stats)(ebb_stats_t* out);
#define ebb_stats(out) ebb_stats_sized((out), sizeof(ebb_stats_t))
/* Prints the statistics to file descriptor fd: text, or one JSON object. */
void ebb_print_stats(int fd, int json);
/* Reports all free memory to the OS now, whatever its age, after draining
 * thread caches. Returns the bytes given back. */
size_t ebb_report_now(void);
/* "ebbmalloc X.Y.Z" */
const char* ebb_version(void);
/* The options in force. */
const ebb_options_t* ebb_options(void);
/* Walks every heap invariant (free lists, boundaries, counts, page
 * ownership). Returns the number of problems found (0 = consistent) and
 * prints the first ones to stderr. */
unsigned ebb_check_heap(void);

#ifdef __cplusplus
}
#endif
#endif /* EBBMALLOC_H */
