#include "heap/heap_region.h"

#include "common/check.h"
#include "os/os.h"

#if defined(__SANITIZE_THREAD__)
#define EBB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EBB_TSAN 1
#endif
#endif

namespace ebb {

namespace {

constexpr size_t kMinHeap = size_t{64} << 20;

// Bytes of each metadata part for a heap of `pages` pages, page-rounded.
size_t desc_bytes(uint64_t pages) { return align_up(pages * sizeof(PageDesc), kPageSize); }
size_t class_bytes(uint64_t pages) { return align_up(pages, kPageSize); }
size_t bit_bytes(uint64_t pages) { return align_up(align_up(pages, 64) / 8, kPageSize); }
size_t zone_bytes(uint64_t pages) {
  return align_up((pages << kPageShift) + desc_bytes(pages) + class_bytes(pages) + bit_bytes(pages), kMaxBlockSize);
}

// A few bits of entropy without a system call that might not exist yet.
uint64_t entropy() {
  uint64_t x = reinterpret_cast<uintptr_t>(&x);  // the stack is randomised (ASLR)
#if defined(__x86_64__) || defined(__i386__)
  x ^= __builtin_ia32_rdtsc();
#endif
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

}  // namespace

bool HeapRegion::Window::cover(size_t bytes) {
  bytes = align_up(bytes, kPageSize);
  if (bytes <= mapped) return true;
  if (bytes > cap || os::commit(base + mapped, bytes - mapped) != 0) return false;
  mapped = bytes;
  return true;
}

// Lays the parts out in the zone at `zone` and maps the first page of each:
// false (nothing left mapped) if any of them is taken.
bool HeapRegion::place(uintptr_t zone, uint32_t pages) {
  char* z = reinterpret_cast<char*>(zone);
  const size_t heap = size_t{pages} << kPageShift;
  heap_ = Window{z, 0, heap};
  descs_ = Window{z + heap, 0, desc_bytes(pages)};
  classes_ = Window{descs_.base + descs_.cap, 0, class_bytes(pages)};
  bits_ = Window{classes_.base + classes_.cap, 0, bit_bytes(pages)};
  Window* parts[] = {&heap_, &descs_, &classes_, &bits_};
  for (Window* w : parts) {
    if (!w->cover(kPageSize)) {
      for (Window* u : parts)
        if (u->mapped) os::unmap(u->base, u->mapped);
      return false;
    }
  }
  return true;
}

bool HeapRegion::init(size_t max_bytes, std::atomic<size_t>* extent) {
  extent_ = extent;
  // Page indices are 32-bit.
  const size_t kMaxBytes = (size_t{1} << 32) * kPageSize / 2;
  size_t bytes = align_up(max_bytes < kMinHeap ? kMinHeap : (max_bytes > kMaxBytes ? kMaxBytes : max_bytes),
                          kMaxBlockSize);
  // The zone goes between 1/32 and 1/2 of the user address space (estimated
  // from the stack, which sits near its top): above the program and its
  // brk heap (x86-64: 4-64 TiB, the program near 85 TiB), below the area
  // where the kernel places mappings top-down. Zones small enough that at
  // least four fit there; one of up to 16 slots, picked at random.
  const uintptr_t top = reinterpret_cast<uintptr_t>(&bytes);
  uintptr_t lo = align_up(top / 32, kMaxBlockSize), hi = top / 2;
#ifdef EBB_TSAN
  // ThreadSanitizer's shadow memory sits at 2-16 TiB and its metadata at
  // 48-52 TiB (x86-64); it kills a process that maps there. Its low
  // application range (below 512 GiB) is free.
  lo = uintptr_t{64} << 30;
  hi = uintptr_t{448} << 30;
#endif
  if (hi <= lo) return false;
  while (bytes > kMinHeap && zone_bytes(bytes >> kPageShift) > (hi - lo) / 4) bytes /= 2;
  const uint32_t pages = static_cast<uint32_t>(bytes >> kPageShift);
  const size_t zone = zone_bytes(pages);
  const uint64_t slots = (hi - lo) / zone;
  if (slots == 0) return false;  // an address space too small for even the smallest heap
  const uint64_t first = entropy() % slots;
  for (uint64_t k = 0; k < slots && k < 16; ++k) {
    if (!place(lo + ((first + k) % slots) * zone, pages)) continue;
    base_ = heap_.base;
    total_pages_ = pages;
    reported_.init(reinterpret_cast<uint64_t*>(bits_.base));
    return true;
  }
  return false;
}

bool HeapRegion::grow(uint32_t new_frontier) {
  EBB_ASSERT(new_frontier > frontier_ && new_frontier <= total_pages_);
  // Metadata first: the heap's pages are never reachable without it.
  if (!descs_.cover(uint64_t{new_frontier} * sizeof(PageDesc)) || !classes_.cover(new_frontier) ||
      !bits_.cover(align_up(new_frontier, 64) / 8) || !heap_.cover(size_t{new_frontier} << kPageShift))
    return false;
  frontier_ = new_frontier;
  if (extent_) extent_->store(size_t{new_frontier} << kPageShift, std::memory_order_release);
  return true;
}

}  // namespace ebb
