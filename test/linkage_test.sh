#!/bin/bash
# The shared library needs only libc and exports only the allocation API.
set -u
lib="$1"
needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $5}' | tr -d '[]' | sort | tr '\n' ' ')
if [ "$needed" != "libc.so.6 " ]; then
  echo "FAIL: NEEDED entries are: $needed (want only libc.so.6)"
  exit 1
fi
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' |
  grep -Ev '^(malloc|free|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc|valloc|pvalloc|malloc_usable_size|free_sized|free_aligned_sized|malloc_trim|mallinfo2?|malloc_stats|mallopt|__libc_[a-z]+|__posix_memalign|__malloc_trim|ebb_[a-z_]+|_Zn[wa]m.*|_Zd[la]Pv.*)(@.*)?$' || true)
if [ -n "$bad" ]; then
  echo "FAIL: unexpected exported symbols:"
  echo "$bad"
  exit 1
fi
echo "linkage OK: NEEDED=$needed; $(nm -D --defined-only "$lib" | wc -l) exported symbols"
