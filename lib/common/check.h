// Assertions in two tiers, both reporting through the non-allocating writer:
//   EBB_CHECK(c)   always on: cheap conditions whose failure means corruption.
//   EBB_ASSERT(c)  debug builds (EBB_DEBUG) only: internal invariants.
// Whole-heap invariant walks (Buddy::check and friends) are called from debug
// builds when the EBBMALLOC_CHECK option is on.
#pragma once
#include "common/log.h"

#define EBB_STR2(x) #x
#define EBB_STR(x) EBB_STR2(x)
#define EBB_CHECK(c)                                                             \
  do {                                                                           \
    if (__builtin_expect(!(c), 0))                                               \
      ::ebb::fatal("check failed: " #c " at " __FILE__ ":" EBB_STR(__LINE__)); \
  } while (0)

#ifdef EBB_DEBUG
#define EBB_ASSERT(c) EBB_CHECK(c)
constexpr bool kDebugBuild = true;
#else
#define EBB_ASSERT(c) \
  do {                \
  } while (0)
constexpr bool kDebugBuild = false;
#endif
