// ebbrun_shape — a test workload with a known memory shape:
// rise to ~200 MiB, hold, fall back (munmap, so the fall is real under any
// allocator), hold, exit.
//
//   ebbrun_shape [--mib N] [--hold-ms MS] [--after-ms MS]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <sys/mman.h>
#include <unistd.h>

namespace {

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  long mib = 200, hold_ms = 600, after_ms = 600;
  for (int i = 1; i + 1 < argc; i += 2) {
    long v = atol(argv[i + 1]);
    if (!strcmp(argv[i], "--mib")) mib = v;
    else if (!strcmp(argv[i], "--hold-ms")) hold_ms = v;
    else if (!strcmp(argv[i], "--after-ms")) after_ms = v;
    else {
      fprintf(stderr, "ebbrun_shape: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  size_t bytes = static_cast<size_t>(mib) << 20;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("ebbrun_shape: mmap");
    return 1;
  }
  // Touch every page so it is really resident.
  memset(p, 0x5a, bytes);
  sleep_ms(hold_ms);
  munmap(p, bytes);
  sleep_ms(after_ms);
  printf("ebbrun_shape: done (%ld MiB)\n", mib);
  return 0;
}
