// Live statistics (EBBMALLOC_LIVE_STATS=1): the counters of ebb_stats() kept
// in a small shared file that tools/ebbtop reads while the process runs.
// Layout and protocol: include/ebbmalloc_live.h.
//
// Publishing never touches the malloc/free paths: the reporter thread
// gathers a snapshot with collect_stats() (the same code as ebb_stats())
// every EBBMALLOC_LIVE_STATS_MS and after each reporting pass, and writes it
// under a seqlock.
#pragma once

namespace ebb {

// Creates the file and registers the publisher with the reporter, if the
// option is on. Called once by the library constructor, after
// initialisation, with no allocator lock held, before the reporter thread
// may start. On any refusal (symlink, someone else's file or directory, an
// error) prints one line on stderr and carries on without live statistics.
void live_stats_start();
// Removes the file (library destructor). The mapping stays: the reporter
// thread may still be writing a last snapshot into it.
void live_stats_stop();
// In a fork child: no live statistics (the file belongs to the parent's
// pid; the child neither writes nor removes it).
void live_stats_postfork_child();

}  // namespace ebb
