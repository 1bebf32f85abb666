/* A workload driven line by line from stdin, for the ebbtop tests: the test
 * knows exactly what the heap holds when it looks. Prints "pid N" at start
 * and "ok" after each command (the child of "fork" prints "child N" first).
 *   alloc MIB   allocate MIB MiB in 64 KiB objects and touch them
 *   free        free them all
 *   trim        malloc_trim(0): report all free memory now
 *   fork        fork a child that sleeps until killed (or 60 s)
 *   exit / EOF  return from main (the library's destructor runs) */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define MAX_OBJECTS 65536

static char* objects[MAX_OBJECTS];
static int nobjects;

int main(void) {
  char line[128];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pid %d\n", (int)getpid());
  while (fgets(line, sizeof(line), stdin)) {
    if (!strncmp(line, "alloc ", 6)) {
      long n = atol(line + 6) * (1024 * 1024 / CHUNK);
      for (long i = 0; i < n && nobjects < MAX_OBJECTS; ++i) {
        char* p = (char*)malloc(CHUNK);
        if (!p) return 3;
        memset(p, 0x5a, CHUNK);
        objects[nobjects++] = p;
      }
    } else if (!strncmp(line, "free", 4)) {
      while (nobjects > 0) free(objects[--nobjects]);
    } else if (!strncmp(line, "trim", 4)) {
      malloc_trim(0);
    } else if (!strncmp(line, "fork", 4)) {
      pid_t c = fork();
      if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        free(malloc(1000)); /* the child uses the allocator */
        sleep(60);
        _exit(0);
      }
      printf("child %d\n", (int)c);
    } else if (!strncmp(line, "exit", 4)) {
      break;
    }
    printf("ok\n");
  }
  return 0;
}
