/* Linked with libebbmalloc.a: malloc must be ebbmalloc's. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebbmalloc.h"

int main(void) {
  char* p = malloc(20);
  strcpy(p, "hello");
  /* glibc would report 24 usable bytes; ebbmalloc's class is 32. */
  size_t usable = malloc_usable_size(p);
  ebb_stats_t s;
  ebb_stats(&s);
  char* big = malloc(10 << 20);
  memset(big, 7, 10 << 20);
  /* The compiler may drop a malloc/memset/free whose memory nobody reads. */
  __asm__ volatile("" : : "r"(big) : "memory");
  free(big);
  size_t given = ebb_report_now();
  free(p);
  if (usable != 32 || s.mapped_bytes == 0 || given == 0) {
    printf("static link FAILED: usable=%zu mapped=%llu given=%zu\n", usable,
           (unsigned long long)s.mapped_bytes, given);
    return 1;
  }
  printf("static link OK: usable=%zu mapped=%llu given=%zu\n", usable, (unsigned long long)s.mapped_bytes,
         given);
  return 0;
}
