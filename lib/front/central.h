// Slabs and the central free lists: one bin per size class, each a lock and
// a list of partly used slabs. Slabs are buddy blocks; which objects of a
// slab are free is a bitmap kept out of band in the slab header, so that
// whole free pages inside a slab that is still in use could be reported
// later without touching them. Thread caches refill from and flush to the
// bins in batches; a slab whose last object comes back returns to the page
// heap at once, where the reporter can give it back once it is cold.
#pragma once
#include <cstdint>

#include "common/lock.h"
#include "front/size_classes.h"

namespace ebb {

struct Slab {
  char* start = nullptr;
  uint32_t cls = 0;
  uint32_t nfree = 0;  // free objects (bits set)
  uint32_t page = 0;   // first page index
  uint32_t hint = 0;   // first bitmap word that may have a free bit
  Slab* prev = nullptr;
  Slab* next = nullptr;
  bool on_partial = false;
  uint64_t bits[kMaxSlabObjects / 64] = {};  // 1 = free
};

struct alignas(64) CentralBin {
  Mutex lock;
  Slab* partial = nullptr;
  uint64_t slabs = 0;
  uint64_t free_objects = 0;
};

// Takes up to `want` objects of class `cls`, linked through their first word;
// returns how many (0 only when memory is exhausted).
unsigned central_alloc_batch(unsigned cls, unsigned want, void** head);
// Returns `n` objects linked through their first word, ending at nullptr
// after n. Aborts on a pointer that is not a live object of this class.
void central_free_batch(unsigned cls, void* head, unsigned n);
// Single-object variants for threads without a cache.
void* central_alloc_one(unsigned cls);
void central_free_one(unsigned cls, void* p);

// Statistics: bytes in slabs and bytes of free objects in them.
void central_totals(uint64_t* slab_bytes, uint64_t* free_bytes, uint64_t* slab_count);

}  // namespace ebb
