/* ebbmalloc live statistics: the layout of the file a process started with
 * EBBMALLOC_LIVE_STATS=1 keeps its counters in, read by tools/ebbtop.
 *
 * Where: <dir>/<pid>.stats, <dir> = $EBBMALLOC_LIVE_STATS_DIR or
 * /dev/shm/ebbmalloc-<euid>. The directory is the user's own (mode 0700,
 * created if missing, refused if it is a symlink, belongs to someone else or
 * is open to group/others); the file is created 0600 with O_EXCL|O_NOFOLLOW
 * and removed when the process exits normally. The file is one page, mapped
 * shared by the process; only its reporter thread writes it.
 *
 * Consistency: a seqlock. The writer makes `seq` odd, writes the snapshot
 * (every field from `publishes` on), makes `seq` even again. A reader copies
 * the snapshot between two reads of `seq` and retries if they differ or are
 * odd. Every field is a naturally aligned 32- or 64-bit integer, so word-wise
 * copies never tear.
 *
 * Layout 2: ebb_stats_t version 3 (the resident floor) and floor_mono_ms.
 * Layout 3: ebb_stats_t version 4 (the memory limit).
 *
 * Compatibility: a reader accepts the file only if `magic` is
 * EBB_LIVE_MAGIC and `layout` is the EBB_LIVE_LAYOUT it was built with. Any
 * change to this struct or to ebb_stats_t changes EBB_LIVE_LAYOUT. */
#ifndef EBBMALLOC_LIVE_H
#define EBBMALLOC_LIVE_H

#include <stdint.h>

#include "ebbmalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EBB_LIVE_MAGIC 0x314556494c424245ULL /* "EBBLIVE1" in memory order */
#define EBB_LIVE_LAYOUT 3
#define EBB_LIVE_FILE_SIZE 4096
#define EBB_LIVE_DEFAULT_DIR_PREFIX "/dev/shm/ebbmalloc-" /* + decimal euid */
#define EBB_LIVE_SUFFIX ".stats"                          /* <pid>.stats */

typedef struct ebb_live_file {
  /* Written once, before the file is complete (never changes). */
  uint64_t magic;         /* EBB_LIVE_MAGIC */
  uint32_t layout;        /* EBB_LIVE_LAYOUT */
  uint32_t header_size;   /* sizeof(ebb_live_file_t) */
  int32_t pid;            /* the process the file belongs to */
  uint32_t uid;           /* its effective uid */
  uint32_t publish_ms;    /* EBBMALLOC_LIVE_STATS_MS: time between snapshots */
  uint32_t reporter;      /* EBBMALLOC_REPORTER */
  uint64_t created_unix_ms; /* CLOCK_REALTIME when the file was made */
  char version[32];       /* ebb_version(), NUL-terminated */
  /* The seqlock word: odd while a snapshot is being written. */
  uint64_t seq;
  /* The snapshot. */
  uint64_t publishes;        /* snapshots written so far */
  uint64_t published_mono_ms; /* CLOCK_MONOTONIC (system-wide) of this one */
  /* When the resident floor in `stats` (floor_bytes ... pinned_class_bytes)
   * was computed: it stops every thread of the process for a walk, so it is
   * taken at most once per max(EBBMALLOC_LIVE_STATS_MS, 100 x the last
   * walk's time), i.e. the threads spend at most 1% of the time waiting for
   * it; between walks the snapshot carries the last one. 0: not yet. */
  uint64_t floor_mono_ms;
  ebb_stats_t stats;
} ebb_live_file_t;

#ifdef __cplusplus
}
#endif
#endif /* EBBMALLOC_LIVE_H */
