# The metadata figure: a python3 heap of small objects (12 M strings of
# ~64 B by default) served by ebbmalloc, its statistics printed before the
# interpreter exits (os._exit: nothing is freed first).
#   PYTHONMALLOC=malloc LD_PRELOAD=build/release/lib/libebbmalloc.so \
#     python3 bench/python_strings.py [COUNT]
# Read "metadata" against "mapped" (and against the heap of small objects:
# mapped less huge and metadata).
import ctypes
import os
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 12_000_000
strings = [str(i) + "abcdefgh" for i in range(n)]
lib = ctypes.CDLL(None)
if not hasattr(lib, "ebb_print_stats"):
    sys.exit("python_strings.py: ebbmalloc is not loaded (LD_PRELOAD it)")
lib.ebb_print_stats(2, 0)
sys.stderr.flush()
os._exit(0)
