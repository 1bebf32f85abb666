/* Objects that go through the slabs: rounds of N (default 1000) malloc(SIZE)
 * then N frees in a fixed random order (or LIFO with a fourth argument).
 * With more live objects than a thread cache holds (SIZE 512: 256, SIZE
 * 8192: 16), every object is flushed to the transfer cache or its slab and
 * refilled again: the instruction count of the slow paths, under callgrind:
 *
 *   cc -O2 -fno-builtin -o /tmp/batch bench/fastpath/batch.c
 *   for n in 10 20; do LD_PRELOAD=build/release/lib/libebbmalloc.so valgrind --tool=callgrind \
 *     --callgrind-out-file=/dev/null /tmp/batch 8192 $n 2>&1 | grep Collected; done
 *
 * (the difference / 10000 is per malloc/free pair). With a large N it is a
 * phase of objects freed at once in scattered order, each freed object's
 * slab metadata cold: time it, interleaved with the build to compare
 * (`perf stat -e task-clock`, least of several runs):
 *
 *   LD_PRELOAD=... /tmp/batch 64 10 400000
 */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: batch SIZE ROUNDS [N [lifo]]\n");
    return 2;
  }
  size_t size = strtoul(argv[1], 0, 10);
  long rounds = strtol(argv[2], 0, 10);
  long n = argc > 3 ? strtol(argv[3], 0, 10) : 1000;
  int lifo = argc > 4;
  void** v = malloc(sizeof(void*) * n);
  unsigned* perm = malloc(sizeof(unsigned) * n);
  if (n <= 0 || !v || !perm) return 2;
  unsigned x = 12345;
  for (long i = 0; i < n; ++i) perm[i] = (unsigned)i;
  for (long i = n - 1; i > 0; --i) {
    x = x * 1103515245 + 12345;
    unsigned j = (x >> 8) % (unsigned)(i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  unsigned long sum = 0;
  for (long r = 0; r < rounds; ++r) {
    for (long i = 0; i < n; ++i) {
      v[i] = malloc(size);
      sum += (unsigned long)v[i] & 1;
    }
    for (long i = 0; i < n; ++i) free(v[lifo ? n - 1 - i : perm[i]]);
  }
  printf("%lu\n", sum);
  free(perm);
  free(v);
  return 0;
}
