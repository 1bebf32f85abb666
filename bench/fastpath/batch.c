/* Objects that go through the slabs: rounds of 1000 malloc(SIZE) then 1000
 * frees in a fixed random order (or LIFO with a third argument). With more
 * live objects than a thread cache holds (SIZE 512: 256, SIZE 8192: 16),
 * every object is flushed to the transfer cache or its slab and refilled
 * again: the instruction count of the slow paths, under callgrind:
 *
 *   cc -O2 -fno-builtin -o /tmp/batch bench/fastpath/batch.c
 *   for n in 10 20; do LD_PRELOAD=build/release/lib/libebbmalloc.so valgrind --tool=callgrind \
 *     --callgrind-out-file=/dev/null /tmp/batch 8192 $n 2>&1 | grep Collected; done
 *
 * (the difference / 10000 is per malloc/free pair). */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
  size_t size = strtoul(argv[1], 0, 10); long rounds = strtol(argv[2], 0, 10);
  int lifo = argc > 3;
  void* v[1000]; unsigned perm[1000];
  unsigned x = 12345;
  for (int i = 0; i < 1000; ++i) perm[i] = i;
  for (int i = 999; i > 0; --i) { x = x * 1103515245 + 12345; unsigned j = (x >> 8) % (i + 1); unsigned t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
  unsigned long sum = 0;
  for (long r = 0; r < rounds; ++r) {
    for (int i = 0; i < 1000; ++i) { v[i] = malloc(size); sum += (unsigned long)v[i] & 1; }
    for (int i = 0; i < 1000; ++i) free(v[lifo ? 999 - i : perm[i]]);
  }
  printf("%lu\n", sum);
  return 0;
}
