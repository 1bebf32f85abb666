/* How often a blind overflow past a fresh small object is caught, over
 * random allocation histories: the census (misuse_probes.cpp) runs each probe
 * once, after the census's own history, which decides whether the object
 * after the overflowed one is free in a cache list (caught when it is popped)
 * or not (silent). Not a test: a measurement to compare builds with.
 *
 *   cc -O2 -o /tmp/misuse_odds test/misuse_odds.c
 *   for phases in 1 5 20; do
 *     LD_PRELOAD=build/release/lib/libebbmalloc.so /tmp/misuse_odds 300 $phases 12000
 *   done
 *
 * Per seed, in a child: `phases` times, grow to a random count (below MAX) of
 * 16..31-byte objects and shrink in random order to a random lower count;
 * then p = malloc(24), flip the 32 bytes past its end, free(p), and two rounds
 * of 64 mallocs of 24 bytes (freed again). Prints how many children aborted
 * (the allocator caught the overflow) of how many seeds. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(unsigned seed, int phases, int max) {
  srand(seed);
  char** live = malloc(sizeof(char*) * (size_t)max);
  int n = 0;
  for (int i = 0; i < phases; ++i) {
    const int target = rand() % max;
    while (n < target) {
      live[n] = malloc(16 + (size_t)(rand() % 16));
      memset(live[n], 1, 16);
      ++n;
    }
    const int low = target ? rand() % (target + 1) : 0;
    while (n > low) {
      const int k = rand() % n;
      free(live[k]);
      live[k] = live[--n];
    }
  }
  char* p = malloc(24);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds" /* the overflow is the point */
  for (int i = 24; i < 56; ++i) ((volatile char*)p)[i] ^= 0x41;
#pragma GCC diagnostic pop
  free(p);
  for (int r = 0; r < 2; ++r) {
    void* v[64];
    for (int i = 0; i < 64; ++i) {
      v[i] = malloc(24);
      memset(v[i], 2, 24);
    }
    for (int i = 64; i-- > 0;) free(v[i]);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: misuse_odds SEEDS PHASES MAX\n");
    return 2;
  }
  const int seeds = atoi(argv[1]), phases = atoi(argv[2]), max = atoi(argv[3]);
  int caught = 0;
  for (int s = 1; s <= seeds; ++s) {
    const pid_t pid = fork();
    if (pid == 0) {
      const int fd = open("/dev/null", O_WRONLY);
      dup2(fd, 2);
      _exit(child((unsigned)s, phases, max));
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) ++caught;
  }
  printf("%d of %d caught\n", caught, seeds);
  return 0;
}
