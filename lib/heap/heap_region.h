// The heap's address space: one large reservation cut into 2 MiB pageblocks,
// committed on demand from the bottom up, with its descriptor array, the
// reported-page bitmap and a one-byte-per-page size-class map (read by
// free()'s fast path).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/config.h"
#include "heap/page_desc.h"
#include "heap/reported_bits.h"

namespace ebb {

class HeapRegion {
 public:
  // Reserves up to `bytes` of address space, halving on failure (for
  // RLIMIT_AS) down to 64 MiB. Returns false if even that fails.
  bool init(size_t bytes);
  bool initialized() const { return base_ != nullptr; }

  // Commits pages [frontier, new_frontier). Needs the heap lock.
  bool grow(uint32_t new_frontier);

  char* base() const { return base_; }
  size_t reserved_bytes() const { return reserved_; }
  uint32_t total_pages() const { return total_pages_; }
  uint32_t frontier() const { return frontier_; }
  PageDesc* descs() const { return descs_; }
  uint8_t* page_class() const { return page_class_; }
  ReportedBits& reported() { return reported_; }

  char* page_addr(uint32_t idx) const { return base_ + (size_t{idx} << kPageShift); }
  uint32_t page_index(const void* p) const {
    return static_cast<uint32_t>((static_cast<const char*>(p) - base_) >> kPageShift);
  }
  bool contains(const void* p) const {
    return static_cast<size_t>(static_cast<const char*>(p) - base_) < reserved_;
  }

 private:
  char* base_ = nullptr;
  size_t reserved_ = 0;
  uint32_t total_pages_ = 0;
  uint32_t frontier_ = 0;
  PageDesc* descs_ = nullptr;
  uint8_t* page_class_ = nullptr;
  ReportedBits reported_;
};

}  // namespace ebb
