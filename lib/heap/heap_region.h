// The heap's address space: one zone of address space holding the heap
// (cut into 2 MiB pageblocks, aligned to the top buddy order) and, beside
// it, its descriptor array, the reported-page bitmap and a one-byte-per-page
// size-class map (read by free()'s fast path).
//
// Nothing is reserved up front. The zone is a range of addresses chosen at
// start-up far from where the kernel places mappings, and each part is
// mapped (MAP_FIXED_NOREPLACE) only as far as the heap has grown: the
// process's address space stays the size of what the heap uses, so a
// program may lower RLIMIT_AS at run time and still create threads and map
// memory. The parts grow in place, so their addresses never change and the
// fast path's "is it ours" test stays one subtraction and one compare
// against the extent, which only grows.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/config.h"
#include "heap/page_desc.h"
#include "heap/reported_bits.h"

namespace ebb {

class HeapRegion {
 public:
  // Chooses a zone for a heap of up to `max_bytes` (less if the address
  // space is small) and maps the first page of each part. `extent` is
  // stored the heap's usable size after each growth (release): free() reads
  // it. Returns false if no zone could be found.
  bool init(size_t max_bytes, std::atomic<size_t>* extent);
  bool initialized() const { return base_ != nullptr; }

  // Maps heap pages [frontier, new_frontier) and their metadata. Needs the
  // heap lock. False (nothing changed) if the mapping failed: address space
  // exhausted (RLIMIT_AS), or taken by someone else.
  bool grow(uint32_t new_frontier);

  char* base() const { return base_; }
  size_t max_bytes() const { return size_t{total_pages_} << kPageShift; }
  uint32_t total_pages() const { return total_pages_; }
  uint32_t frontier() const { return frontier_; }
  // Address space mapped for metadata (descriptors, class map, bitmap).
  size_t metadata_mapped() const { return descs_.mapped + classes_.mapped + bits_.mapped; }
  PageDesc* descs() const { return reinterpret_cast<PageDesc*>(descs_.base); }
  // One byte per page, the front end's (front/globals.h: page_class_byte).
  uint8_t* page_class() const { return reinterpret_cast<uint8_t*>(classes_.base); }
  ReportedBits& reported() { return reported_; }

  char* page_addr(uint32_t idx) const { return base_ + (size_t{idx} << kPageShift); }
  uint32_t page_index(const void* p) const {
    return static_cast<uint32_t>((static_cast<const char*>(p) - base_) >> kPageShift);
  }
  bool contains(const void* p) const {
    return static_cast<size_t>(static_cast<const char*>(p) - base_) < (size_t{frontier_} << kPageShift);
  }

 private:
  // One part of the zone: [base, base + cap), mapped from base upwards.
  struct Window {
    char* base = nullptr;
    size_t mapped = 0;
    size_t cap = 0;
    bool cover(size_t bytes);  // maps up to `bytes` (page-rounded)
  };
  bool place(uintptr_t zone, uint32_t pages);

  char* base_ = nullptr;
  uint32_t total_pages_ = 0;
  uint32_t frontier_ = 0;
  Window heap_, descs_, classes_, bits_;
  ReportedBits reported_;
  std::atomic<size_t>* extent_ = nullptr;
};

}  // namespace ebb
