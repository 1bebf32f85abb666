#include "front/free_list.h"

#include <stdlib.h>

#include "common/log.h"
#include "front/harden.h"
#include "os/os.h"

namespace ebb {

void fatal_corrupt_list(Fn fn, const void* p, const char* where) {
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_name(fn)).str("(): corrupted free list: ").str(where);
    out.str(" leads to ").ptr(p).str(", which is not a free object of its size class");
    out.str(" (a write after free or a buffer overflow) (aborting)\n");
  }
  abort();
}

void fatal_not_object_start(Fn fn, const void* p) {
  const unsigned cls = page_class_of(p);
  const SizeClass& sc = class_info(cls);
  const uint64_t off = reinterpret_cast<uintptr_t>(p) & kObjChecks.c[cls].mask;
  const uint64_t i = off / sc.size;
  {
    OutBuf out(2);
    out.str("ebbmalloc: ").str(fn_invalid_pointer(fn)).str(" ").ptr(p).str(": ");
    if (i >= sc.objects) {
      out.str("past the last ").u64(sc.size).str("-byte object of its slab");
    } else {
      const uint64_t in = off - i * sc.size;
      out.u64(in).str(in == 1 ? " byte into a " : " bytes into a ").u64(sc.size).str("-byte object, not at its start");
      if (off % kMinAlign) out.str(" (unaligned)");
    }
    out.str(" (aborting)\n");
  }
  abort();
}

void security_init() {
  // Distinct, and never 0 (a zeroed word, the most common value, must not
  // look free).
  uint64_t key = 0, secret = 0;
  while (key == 0) key = os::random_u64();
  while (secret == 0 || secret == key) secret = os::random_u64();
  g_fast.free_key = key;
  g_fast.link_secret = secret;
  if (g.opts.harden) harden_init();
}

}  // namespace ebb
