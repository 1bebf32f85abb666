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
    Node* n = free_;
    if (n) {
      free_ = n->next;
    } else {
      // Carved from the chunk on demand: a chunk's untouched nodes stay
      // untouched (threading them all on a list made every chunk resident:
      // 0.5 MiB in every process, for two pools).
      if (next_ == end_ && !refill()) return nullptr;
      n = next_++;
    }
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
  bool refill() {
    char* chunk = static_cast<char*>(os::map(kChunk));
    if (!chunk) return false;
    mapped_ += kChunk;
    next_ = reinterpret_cast<Node*>(chunk);
    end_ = next_ + kChunk / sizeof(Node);
    return true;
  }
  Mutex lock_;
  Node* free_ = nullptr;  // nodes given back
  Node* next_ = nullptr;  // the current chunk's first node never handed out
  Node* end_ = nullptr;
  size_t mapped_ = 0;
};

}  // namespace ebb
