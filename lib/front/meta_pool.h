// Records for the allocator's own metadata (slab headers, thread caches),
// carved from chunks mapped straight from the OS: the allocator never
// allocates through malloc.
#pragma once
#include <cstddef>
#include <new>

#include "common/lock.h"
#include "os/os.h"

namespace ebb {

// Nodes of one size carved from chunks mapped from the OS, and a free list
// of the nodes given back. No lock of its own (its owner's). Chunks double
// from 16 KiB to 256 KiB: a small program maps little, a large heap makes
// few mappings.
class NodeStock {
 public:
  // `bytes`: the node size, the same on every call, a multiple of the
  // nodes' alignment (chunks are page-aligned).
  void* get(size_t bytes) {
    if (Node* n = free_) {
      free_ = n->next;
      return n;
    }
    // Carved from the chunk on demand: a chunk's untouched nodes stay
    // untouched (threading them all on a list made every chunk resident:
    // 0.5 MiB in every process, for two pools).
    if (static_cast<size_t>(end_ - next_) < bytes && !refill(bytes)) return nullptr;
    void* n = next_;
    next_ += bytes;
    return n;
  }
  void put(void* p) {
    Node* n = static_cast<Node*>(p);
    n->next = free_;
    free_ = n;
  }
  size_t mapped_bytes() const { return mapped_; }

 private:
  struct Node {
    Node* next;
  };
  bool refill(size_t bytes) {
    size_t chunk = size_t{16 * 1024} << (chunks_ < 4 ? chunks_ : 4);
    while (chunk < bytes) chunk *= 2;
    char* c = static_cast<char*>(os::map(chunk));
    if (!c) return false;
    mapped_ += chunk;
    ++chunks_;
    next_ = c;
    end_ = c + chunk;
    return true;
  }
  Node* free_ = nullptr;  // nodes given back
  char* next_ = nullptr;  // the current chunk's first byte never handed out
  char* end_ = nullptr;
  unsigned chunks_ = 0;   // mapped so far
  size_t mapped_ = 0;
};

template <typename T>
class MetaPool {
 public:
  T* get() {
    void* n;
    {
      LockGuard g(lock_);
      n = stock_.get(kBytes);
    }
    return n ? new (n) T() : nullptr;
  }
  void put(T* t) {
    t->~T();
    LockGuard g(lock_);
    stock_.put(t);
  }
  size_t mapped_bytes() const { return stock_.mapped_bytes(); }
  Mutex& lock() { return lock_; }

 private:
  static constexpr size_t kBytes = (sizeof(T) + alignof(T) - 1) / alignof(T) * alignof(T);
  static_assert(sizeof(T) >= sizeof(void*) && alignof(T) >= alignof(void*), "a free node holds a link");
  Mutex lock_;
  NodeStock stock_;
};

}  // namespace ebb
