#!/bin/bash
# The shared library needs only libc, exports only the allocation API, and
# carries the versioned soname (libebbmalloc.so.MAJOR) its users link against.
#   linkage_test.sh LIBRARY [SONAME]
set -u
lib="$1"
want_soname="${2:-}"
if [ -n "$want_soname" ]; then
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$soname" != "$want_soname" ]; then
    echo "FAIL: SONAME is '$soname' (want $want_soname)"
    exit 1
  fi
fi
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
echo "linkage OK: ${want_soname:+SONAME=$want_soname; }NEEDED=$needed; $(nm -D --defined-only "$lib" | wc -l) exported symbols"
