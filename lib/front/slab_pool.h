// Slab headers, sized by their class: a header's free-object bitmap has one
// bit per object of its slab, so a slab of 8 objects of 32 KiB carries one
// bitmap word and one of 1024 objects of 16 B sixteen. One fixed size (the
// largest) put 216 B beside every 16 KiB slab: 1.3% of a heap of small
// objects in headers, most of them bitmap words no slab of the class uses.
// Headers are carved from chunks mapped straight from the OS, one free list
// per size (powers of two of bitmap words), all under one lock (the lock
// order is slab pool -> heap, as for any metadata pool).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>

#include "common/lock.h"
#include "front/central.h"
#include "os/os.h"

namespace ebb {

class SlabPool {
 public:
  // Bitmap words a slab of `objects` objects needs.
  static constexpr unsigned words_for(uint32_t objects) { return (objects + 63) / 64; }

  // A header with room for `words` bitmap words (bits not initialised).
  Slab* get(unsigned words) {
    const unsigned b = bucket(words);
    LockGuard g(lock_);
    Node* n = free_[b];
    if (n) {
      free_[b] = n->next;
    } else {
      // Carved on demand: a chunk's untouched headers stay untouched.
      if (next_[b] == end_[b] && !refill(b)) return nullptr;
      n = reinterpret_cast<Node*>(next_[b]);
      next_[b] += node_bytes(b);
    }
    return new (static_cast<void*>(n)) Slab();
  }
  void put(Slab* s, unsigned words) {
    const unsigned b = bucket(words);
    s->~Slab();
    LockGuard g(lock_);
    Node* n = reinterpret_cast<Node*>(s);
    n->next = free_[b];
    free_[b] = n;
  }
  size_t mapped_bytes() const { return mapped_; }
  Mutex& lock() { return lock_; }

 private:
  static constexpr unsigned kBuckets = 5;  // 1, 2, 4, 8, 16 words
  static_assert(uint32_t{1} << (kBuckets - 1) == kMaxSlabObjects / 64, "a bucket for the largest bitmap");
  // A bucket's chunks double from 16 KiB to 256 KiB: a small program maps
  // little for its five buckets, a large heap few mappings.
  struct Node {
    Node* next;
  };
  static_assert(sizeof(Slab) >= sizeof(Node) && alignof(Slab) >= alignof(Node), "a free header holds a link");

  static constexpr unsigned bucket(unsigned words) {
    unsigned b = 0;
    while ((1u << b) < words) ++b;
    return b;
  }
  static constexpr size_t node_bytes(unsigned b) { return sizeof(Slab) + (sizeof(uint64_t) << b); }

  bool refill(unsigned b) {
    const size_t bytes = size_t{16 * 1024} << (chunks_[b] < 4 ? chunks_[b] : 4);
    char* chunk = static_cast<char*>(os::map(bytes));
    if (!chunk) return false;
    mapped_ += bytes;
    ++chunks_[b];
    next_[b] = chunk;
    end_[b] = chunk + bytes / node_bytes(b) * node_bytes(b);
    return true;
  }

  Mutex lock_;
  Node* free_[kBuckets] = {};  // headers given back
  char* next_[kBuckets] = {};  // the current chunk's first header never handed out
  char* end_[kBuckets] = {};
  unsigned chunks_[kBuckets] = {};  // chunks mapped so far
  size_t mapped_ = 0;
};

}  // namespace ebb
