// The hardened mode (EBBMALLOC_HARDEN=1): what a security-minded user
// switches on for a service, at a cost in speed and memory measured in
// docs/RELIABILITY.md. The default fast path does not test for it: at
// start-up every thread-cache bin gets room 0 (front/thread_cache.cpp), so
// every small malloc and free takes the slow path, which comes here.
//
// Small objects (slabs):
//   - a tail word after each object: the requested size n, encoded with the
//     slot's address and a secret, in the last 8 bytes of the slot (objects
//     take the class of n + 8), and canary bytes from n to the tail word;
//     both are checked on free (an overflow by 1 byte or more) and by
//     realloc and malloc_usable_size;
//   - freed objects are zeroed and sit in a per-class quarantine (delayed
//     reuse: up to kQuarantineBytes per class, at least 8 objects, or until
//     COLD_MS old, when the reporter moves them to their slab so their pages
//     can be given back); every object is checked to still hold zeros when
//     it leaves the quarantine and when it is handed out again (a write
//     after free). Zeros survive free page reporting: a reported page reads
//     as zero, so the check never faults a reported page in, and a write
//     after free into one is found too. The mode forces MADV_DONTNEED.
//   - slots are chosen at random in the slab (resident pages first);
//   - double frees are found in the slab's bitmap or the quarantine, always.
// Large objects (buddy blocks): a PROT_NONE guard page before (unless the
// alignment is above a page) and after each block, canary bytes in the last
// page after the requested size, and a quarantine of freed blocks, made
// inaccessible (PROT_NONE) at once and kept resident (up to 16 MiB: reuse
// does not fault them back in) until they are COLD_MS old, when the
// reporter returns them to the heap and gives them back. Huge
// objects (own mappings) get the same guard pages and canary.
// Zero-size allocations point into a region that is never accessible.
// Faults on guard pages, quarantined blocks and zero-size allocations print
// one line naming what was hit (a SIGSEGV handler, installed only if the
// program has none yet) and kill the process with the signal.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/log.h"

namespace ebb {

// The features of the mode, all on. A build with -DEBB_HARDEN_FEATURES=<mask>
// leaves some out: only to measure what each one costs (docs/RELIABILITY.md).
constexpr unsigned kHfCanary = 1;      // canary bytes after the requested size (small, large, huge)
constexpr unsigned kHfZero = 2;        // freed small objects zeroed, checked on reuse and quarantine exit
constexpr unsigned kHfQuarantine = 4;  // delayed reuse of small objects and large blocks
constexpr unsigned kHfGuards = 8;      // PROT_NONE guard pages around large and huge blocks
constexpr unsigned kHfRandom = 16;     // random slots in slabs
constexpr unsigned kHfZeroSize = 32;   // zero-size allocations in an inaccessible region
constexpr unsigned kHfSizeWord = 64;   // the size word after small objects (exact sizes)
#ifndef EBB_HARDEN_FEATURES
#define EBB_HARDEN_FEATURES 127
#endif
constexpr unsigned kHardenFeatures = EBB_HARDEN_FEATURES;
constexpr bool hf(unsigned f) { return (kHardenFeatures & f) != 0; }

// Memory a class's quarantine may hold.
constexpr size_t kQuarantineBytes = 256 * 1024;
// Bytes after each small object: its encoded size.
constexpr size_t kTailBytes = hf(kHfSizeWord) ? 8 : 0;

// Canary bytes after a block's requested size (large and huge blocks).
void harden_write_canary(void* p, size_t from, size_t to);
// Aborts if the canary in [from, to) of the block at p was overwritten.
void harden_check_canary(const void* p, size_t from, size_t to, Fn fn);

// Aborts unless the `size` bytes at p hold zeros ("write after free",
// naming the first changed byte; `when` says where it was found).
void check_still_zero(const void* p, size_t size, Fn fn, const char* when);

// Start-up (with the options read): secrets, the zero-size region, the
// fault handler; forces MADV_DONTNEED.
void harden_init();

// The api layer's entry points when the mode is on. Each aborts with one
// line on a misuse it finds; the allocating ones return nullptr (errno
// ENOMEM) on exhaustion.
void* harden_malloc(size_t size);  // any size (the small-object slow path comes here)
void* harden_malloc_large(size_t size, size_t align, bool zero);
void* harden_aligned(size_t align, size_t size);  // align a power of two
void* harden_realloc(void* p, size_t size);
size_t harden_usable(const void* p);  // the requested size
// A small object (on a slab page); `size`: what a sized free said, or ~0.
void harden_free_small(void* p, Fn fn, size_t size);
// A large block whose descriptor says hardened (large_free sends it here).
void harden_free_large(void* p, Fn fn, size_t size);
// The reporter's pass (no lock held): quarantined large blocks freed cold_ms
// ago go back to the heap; returns when the next one is due.
uint64_t harden_drain_large(uint64_t now, uint64_t cold_ms);
// A pointer outside the heap: true if it was a zero-size allocation (freed).
bool harden_free_outside(void* p, Fn fn, size_t size);

}  // namespace ebb
