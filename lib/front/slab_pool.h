// Slab headers, sized by their class: a header's free-object bitmap has one
// bit per object of its slab, so a slab of 8 objects of 32 KiB carries one
// bitmap word and one of 1024 objects of 16 B sixteen. One fixed size (the
// largest) put 216 B beside every 16 KiB slab: 1.3% of a heap of small
// objects in headers, most of them bitmap words no slab of the class uses.
// Headers come from one NodeStock (front/meta_pool.h) per size (powers of
// two of bitmap words), all under one lock (the lock order is slab pool ->
// heap, as for any metadata pool).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>

#include "common/lock.h"
#include "front/central.h"
#include "front/meta_pool.h"

namespace ebb {

class SlabPool {
 public:
  // Bitmap words a slab of `objects` objects needs.
  static constexpr unsigned words_for(uint32_t objects) { return (objects + 63) / 64; }

  // A header with room for `words` bitmap words (bits not initialised).
  Slab* get(unsigned words) {
    const unsigned b = bucket(words);
    void* n;
    {
      LockGuard g(lock_);
      n = stock_[b].get(node_bytes(b));
    }
    return n ? new (n) Slab() : nullptr;
  }
  void put(Slab* s, unsigned words) {
    s->~Slab();
    LockGuard g(lock_);
    stock_[bucket(words)].put(s);
  }
  size_t mapped_bytes() const {
    size_t n = 0;
    for (const NodeStock& st : stock_) n += st.mapped_bytes();
    return n;
  }
  Mutex& lock() { return lock_; }

 private:
  static constexpr unsigned kBuckets = 5;  // 1, 2, 4, 8, 16 words
  static_assert(uint32_t{1} << (kBuckets - 1) == kMaxSlabObjects / 64, "a bucket for the largest bitmap");
  static_assert(sizeof(Slab) >= sizeof(void*) && alignof(Slab) >= alignof(void*), "a free header holds a link");

  static constexpr unsigned bucket(unsigned words) {
    unsigned b = 0;
    while ((1u << b) < words) ++b;
    return b;
  }
  static constexpr size_t node_bytes(unsigned b) { return sizeof(Slab) + (sizeof(uint64_t) << b); }

  Mutex lock_;
  NodeStock stock_[kBuckets];
};

}  // namespace ebb
