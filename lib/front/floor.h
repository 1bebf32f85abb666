// The resident floor: the bytes of 4 KiB pages that hold at least one live
// byte, i.e. what a non-moving allocator could shrink this heap to at best,
// and which size classes pin the most free memory on such pages.
//
// Live means handed to the program and not freed yet:
//  - a small object is live unless it is free in its slab's bitmap, on a
//    page the reporter has isolated, in a thread's cache, in a transfer
//    batch or in the hardened mode's quarantine: objects in caches are free
//    (the program freed them), however close to the next malloc they are;
//  - a large block is live unless it sits in a thread's large-block cache,
//    or is a hardened quarantined block or guard page; all its pages count
//    (a hardened block's trailing guard page does not);
//  - a huge object counts with its whole mapping.
// Slab slack (a slab's tail past its last object), slab headers, page
// descriptors and other metadata hold no live byte: not in the floor.
//
// Computed on demand, never maintained on the malloc/free paths. Cost: every
// thread's cache is held (the other threads stop at their next malloc/free
// fast path: one membarrier), then every central bin and the heap lock, for
// one walk over the heap's blocks, O(blocks + slab pages + cached objects):
// the threads wait for that long (a few ms for a GiB of small objects;
// floor_walk_us in the statistics says what it took). Without membarrier
// (old kernels) other threads' caches cannot be read: their objects then
// count as live. The walk marks the free objects of caches in their slabs'
// bitmaps and clears the marks after (under the bin locks: unseen); an
// object found free twice there is a double free, and aborts.
#pragma once
#include <cstdint>

#include "front/size_classes.h"

namespace ebb {

struct FloorResult {
  uint64_t slab_bytes = 0;   // slab pages holding a live object
  uint64_t large_bytes = 0;  // pages of live large blocks
  uint64_t huge_bytes = 0;   // mappings of huge objects
  // Per class: bytes of free objects (the parts lying on the page) on slab
  // pages that also hold a live object.
  uint64_t pinned[kNumClasses + 1] = {};
  uint64_t walk_us = 0;      // what the computation took
  bool exact = true;         // false: other threads' caches could not be read (see above)
};

// Fills *out. Takes the thread-cache registry and every cache's mutex, every
// central bin and the heap lock, in the lock order: call it with no
// allocator lock held. Never allocates.
void compute_floor(FloorResult* out);

}  // namespace ebb
