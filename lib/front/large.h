// Objects above the small classes. Large objects (up to the top buddy
// order, 32 MiB) are buddy blocks trimmed to the pages they need: the unused
// tail goes straight back to the free lists, so the waste is under one page.
// Huge objects get their own mapping, found again through a small hash
// table, and are unmapped on free.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/log.h"

namespace ebb {

// A large block from the heap (or, beyond it, a mapping of its own). `align`
// is a power of two; `zero` asks for zeroed memory (calloc). The caller
// (malloc_large_path) has tried the thread's large-block cache first.
void* large_alloc(size_t size, size_t align, bool zero);
// p is in the heap and not in a slab. Aborts if it is not a live large block.
void large_free(void* p, Fn fn = Fn::kFree);
// Sized frees: aborts unless the live large block at p could have been
// allocated by large_alloc(size, ...) (the thread cache hands out blocks up
// to 1/8 larger than asked for).
void large_check_size(const void* p, size_t size, Fn fn);
// Aborts unless p is a live large block (realloc, before it reads the size).
void large_check_live(const void* p, Fn fn);
// Marks a live large block as held by a thread's large-block cache (or not).
void large_set_cached(void* p, bool cached);
size_t large_usable(const void* p);
// Frees a live large block of `npages` pages to the heap (thread caches,
// which may hold their mutex: it never starts the reporter thread);
// `freed_at` (0: now) as in PageHeap::free_pages.
void large_release(void* p, uint32_t npages, uint64_t freed_at = 0);
// Shrinks or grows in place if possible; returns false otherwise.
bool large_resize_in_place(void* p, size_t new_size);

void* huge_alloc(size_t size, size_t align);
// Returns false if p is not a live huge block. A hardened block's canary
// and (if `size` is not ~0) requested size are checked first.
bool huge_free(void* p, Fn fn = Fn::kFree, size_t size = ~size_t{0});
// The hardened mode: a huge block with guard pages and a canary.
void* huge_alloc_guarded(size_t size, size_t align);
// A hardened huge block's requested size (canary checked), ~0 for a
// zero-byte request; 0 if p is not a live huge block.
size_t huge_requested(const void* p);
// Sized frees of huge blocks (see large_check_size). False if p is not a
// live huge block.
bool huge_check_size(const void* p, size_t size, Fn fn);
// 0 if p is not a live huge block.
size_t huge_usable(const void* p);
void* huge_realloc(void* p, size_t new_size);
void huge_totals(uint64_t* bytes, uint64_t* count);
// For the hardened mode's fault handler: the guard page of a huge block a
// is in (no lock taken).
bool huge_describe_fault(const void* a, const void** block, const char** what);
void huge_prefork();
void huge_postfork_parent();
void huge_postfork_child();

}  // namespace ebb
