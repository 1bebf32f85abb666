// Fixed-size records for the allocator's own metadata (slab headers, thread
// caches, huge-block entries), carved from chunks mapped straight from the
// OS: the allocator never allocates through malloc.
#pragma once
#include <cstddef>
#include <new>

#include "common/lock.h"
#include "os/os.h"

namespace ebb {

template <typename T>
class MetaPool {
 public:
  T* get() {
    LockGuard g(lock_);
    if (!free_) refill();
    if (!free_) return nullptr;
    Node* n = free_;
    free_ = n->next;
    return new (static_cast<void*>(n)) T();
  }
  void put(T* t) {
    t->~T();
    LockGuard g(lock_);
    Node* n = reinterpret_cast<Node*>(t);
    n->next = free_;
    free_ = n;
  }
  size_t mapped_bytes() const { return mapped_; }
  Mutex& lock() { return lock_; }

 private:
  union Node {
    Node* next;
    alignas(alignof(T)) char storage[sizeof(T)];
  };
  static constexpr size_t kChunk = 256 * 1024;
  void refill() {
    char* chunk = static_cast<char*>(os::map(kChunk));
    if (!chunk) return;
    mapped_ += kChunk;
    const size_t n = kChunk / sizeof(Node);
    Node* nodes = reinterpret_cast<Node*>(chunk);
    for (size_t i = n; i-- > 0;) {
      nodes[i].next = free_;
      free_ = &nodes[i];
    }
  }
  Mutex lock_;
  Node* free_ = nullptr;
  size_t mapped_ = 0;
};

}  // namespace ebb
