/* A short-lived thread's cost in instructions, under callgrind: N times,
 * create a thread that makes 64 mallocs of 16 B .. 2 KiB and frees them,
 * and join it (the first allocations of a new thread: its cache set-up and
 * first refills; its exit: the cache flushed).
 *
 *   cc -O2 -fno-builtin -pthread -o /tmp/threads bench/fastpath/threads.c
 *   for n in 100 200; do LD_PRELOAD=build/release/lib/libebbmalloc.so valgrind --tool=callgrind \
 *     --callgrind-out-file=/dev/null /tmp/threads $n 2>&1 | grep Collected; done
 *
 * (the difference / 100 is per thread: 111,000 before exiting threads handed
 * their lists to the transfer caches, 26,000 after, 29,300 at b1e83bb, 25,100
 * since a flush hands a whole bin on unwalked; mimalloc 2.0.9 114,000,
 * tcmalloc_minimal 2.10 71,000). */
#include <pthread.h>
#include <stdlib.h>

static void* run(void* arg) {
  const long k = (long)arg;
  void* v[64];
  for (int i = 0; i < 64; ++i) v[i] = malloc(16 + (i * 37 + k) % 2000);
  for (int i = 0; i < 64; ++i) free(v[i]);
  return 0;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 100;
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    if (pthread_create(&t, 0, run, (void*)(long)i) != 0) return 1;
    pthread_join(t, 0);
  }
  return 0;
}
