#include "heap/heap_region.h"

#include "common/check.h"
#include "os/os.h"

namespace ebb {

bool HeapRegion::init(size_t bytes) {
  constexpr size_t kMin = size_t{64} << 20;
  bytes = align_up(bytes < kMin ? kMin : bytes, kMaxBlockSize);
  // Page indices are 32-bit.
  const size_t kMaxBytes = (size_t{1} << 32) * kPageSize / 2;
  if (bytes > kMaxBytes) bytes = kMaxBytes;
  for (; bytes >= kMin; bytes /= 2) {
    // Over-reserve by one top-order block so the heap base can be aligned
    // to it: buddy math works on indices, alignment keeps huge-page and
    // pageblock boundaries where the indices say they are.
    size_t span = bytes + kMaxBlockSize;
    char* raw = static_cast<char*>(os::reserve(span));
    if (!raw) continue;
    size_t pages = bytes >> kPageShift;
    // Metadata: descriptors, size-class map, reported bitmap. Committed
    // whole; untouched parts stay non-resident.
    const size_t dsize = pages * sizeof(PageDesc), bsize = align_up(pages / 8, kPageSize);
    const size_t meta = dsize + pages + bsize;
    char* m = static_cast<char*>(os::reserve(meta));
    if (!m || os::commit(m, meta) != 0) {
      os::unmap(raw, span);
      if (m) os::unmap(m, meta);
      continue;
    }
    void* d = m;
    void* c = m + dsize;
    reported_.init(reinterpret_cast<uint64_t*>(m + dsize + pages));
    uintptr_t aligned = align_up(reinterpret_cast<uintptr_t>(raw), kMaxBlockSize);
    size_t head = aligned - reinterpret_cast<uintptr_t>(raw);
    if (head) os::unmap(raw, head);
    if (kMaxBlockSize - head) os::unmap(reinterpret_cast<char*>(aligned) + bytes, kMaxBlockSize - head);
    base_ = reinterpret_cast<char*>(aligned);
    reserved_ = bytes;
    total_pages_ = static_cast<uint32_t>(pages);
    descs_ = static_cast<PageDesc*>(d);
    page_class_ = static_cast<uint8_t*>(c);
    return true;
  }
  return false;
}

bool HeapRegion::grow(uint32_t new_frontier) {
  EBB_ASSERT(new_frontier > frontier_ && new_frontier <= total_pages_);
  if (os::commit(page_addr(frontier_), size_t{new_frontier - frontier_} << kPageShift) != 0) return false;
  frontier_ = new_frontier;
  return true;
}

}  // namespace ebb
