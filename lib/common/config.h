// Compile-time constants shared by every layer of ebbmalloc.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ebb {

constexpr size_t kPageShift = 12;
constexpr size_t kPageSize = size_t{1} << kPageShift;  // 4 KiB: the buddy's order 0
constexpr size_t kPageblockOrder = 9;                  // 2 MiB pageblocks, as in the kernel
constexpr size_t kPageblockSize = kPageSize << kPageblockOrder;
// Orders 0..kMaxOrder: 4 KiB .. 32 MiB. Larger objects get their own mapping.
constexpr unsigned kMaxOrder = 13;
constexpr unsigned kNumOrders = kMaxOrder + 1;
constexpr size_t kMaxBlockSize = kPageSize << kMaxOrder;
constexpr size_t kMinAlign = 16;  // what malloc promises on x86-64

// Objects up to kSmallMax bytes are carved from slabs; larger ones are buddy
// blocks trimmed to whole pages.
constexpr size_t kSmallMax = 32 * 1024;

constexpr uint32_t kNil = 0xffffffffu;

inline constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
inline constexpr bool is_pow2(size_t x) { return x && !(x & (x - 1)); }
inline unsigned log2_floor(size_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }
inline unsigned log2_ceil(size_t x) { return x <= 1 ? 0 : log2_floor(x - 1) + 1; }

#define EBB_LIKELY(x) __builtin_expect(!!(x), 1)
#define EBB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EBB_NOINLINE __attribute__((noinline))
#define EBB_INLINE inline __attribute__((always_inline))
#define EBB_EXPORT __attribute__((visibility("default")))

}  // namespace ebb
