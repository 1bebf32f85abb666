// What an allocating thread gives back itself at a memory limit's mark
// (report/pressure.h), before it takes memory the heap must fault in.
//
// The page heap gives back its own warm free memory there
// (PageHeap::check_headroom), but cannot reach the free pages inside slabs:
// the bins' locks come before the heap's. Phase-shaped programs leave most of
// a freed phase there (a few survivors keep each slab), and the reporter's
// pressure pass, woken at the same moment, comes a few milliseconds after
// the next phase has faulted in as much again. So the slow paths that take
// memory from the heap (a thread cache refill, a large or a huge block)
// first call maybe_relieve_pressure(), with no allocator lock held: when the
// heap's estimate is at the mark, every free page of every slab goes back
// (as in the reporter's pressure pass), in this thread, after every thread's
// cache has been drained (at most every 10 ms): their free objects pin slab
// pages and buddy blocks nothing else here reaches, and the reporter, whose
// pressure pass drains them too, may be late on a busy machine.
//
// One thread at a time, at most once per millisecond. A relief walks only
// the slabs freed into since the last walk (the bins' dirty lists), so usage
// over the mark that is the program's own costs a walk over what it frees,
// not over the heap.
#pragma once
#include "common/config.h"
#include "front/globals.h"

namespace ebb {

void relieve_pressure();
// In a fork child whose other threads are gone: one of them may have been
// giving relief (between two rounds: the fork holds the batch lock).
void pressure_relief_postfork_child();
inline void maybe_relieve_pressure() {
  if (EBB_UNLIKELY(g.heap.pressure_urgent())) relieve_pressure();
}

}  // namespace ebb
