// The one place statistics are gathered: ebb_stats(), the exit report and
// the live statistics file all use it.
#pragma once
#include "ebbmalloc.h"

namespace ebb {
// Fills *s (zeroes before initialisation), all of the current version.
// Takes the thread-cache registry, central-bin and heap locks in turn: call
// it with no allocator lock held. The resident floor (the version-3 fields
// from floor_bytes on) only if `floor`: it stops every thread for a walk
// (front/floor.h); otherwise those fields are 0.
void collect_stats(ebb_stats_t* s, bool floor);
// Computes the resident floor into the version-3 fields of *s.
void collect_floor(ebb_stats_t* s);
}
