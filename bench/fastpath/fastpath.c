/* The malloc/free fast path's instruction count, for callgrind.
 *
 *   fastpath SIZE PAIRS
 *
 * warms up, then does PAIRS malloc(SIZE)/free pairs. bench/fastpath runs it
 * under valgrind --tool=callgrind with two PAIRS values and divides the
 * difference, so start-up and warm-up cancel out: what is left is the
 * instructions of one pair (loop overhead included, a handful). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fastpath SIZE PAIRS\n");
    return 2;
  }
  const size_t size = strtoul(argv[1], NULL, 10);
  const long pairs = strtol(argv[2], NULL, 10);
  void* warm[64];
  for (int i = 0; i < 64; ++i) warm[i] = malloc(size);
  for (int i = 0; i < 64; ++i) free(warm[i]);
  unsigned long sum = 0;
  for (long i = 0; i < pairs; ++i) {
    void* volatile p = malloc(size);
    sum += (unsigned long)p & 1;
    free(p);
  }
  printf("%lu\n", sum);
  return 0;
}
