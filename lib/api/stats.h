// The one place statistics are gathered: ebb_stats(), the exit report and
// the live statistics file all use it.
#pragma once
#include "ebbmalloc.h"

namespace ebb {
// Fills *s (zeroes before initialisation). Takes the thread-cache registry,
// central-bin and heap locks in turn: call it with no allocator lock held.
void collect_stats(ebb_stats_t* s);
}
