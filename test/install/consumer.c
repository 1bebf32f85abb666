/* A program built against an installed ebbmalloc (find_package or
 * pkg-config), run by test/install_test.sh. It prints one line,
 *   consumer: version=<ebb_version()> usable=<n> mapped=<n> library=<path>
 * where library is the libebbmalloc.so mapped into the process
 * (/proc/self/maps) or "none" (linked statically), and exits 0 only if
 * ebbmalloc serves its malloc: glibc's usable size for malloc(20) is 24,
 * ebbmalloc's size class is 32. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ebbmalloc.h>

int main(void) {
  char* p = malloc(20);
  if (!p) return 2;
  strcpy(p, "hello");
  size_t usable = malloc_usable_size(p);
  ebb_stats_t s;
  int rc = ebb_stats(&s);
  free(p);

  char library[4096] = "none";
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[4352];
  while (maps && fgets(line, sizeof line, maps)) {
    char* path = strchr(line, '/');
    if (path && strstr(path, "/libebbmalloc.so")) {
      path[strcspn(path, "\n")] = 0;
      snprintf(library, sizeof library, "%s", path);
      break;
    }
  }
  if (maps) fclose(maps);

  printf("consumer: version=%s usable=%zu mapped=%llu library=%s\n", ebb_version(), usable,
         (unsigned long long)s.mapped_bytes, library);
  if (usable != 32 || rc != 0 || s.version != EBB_STATS_VERSION || s.mapped_bytes == 0) {
    printf("consumer: NOT served by ebbmalloc\n");
    return 1;
  }
  return 0;
}
