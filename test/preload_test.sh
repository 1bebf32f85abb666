#!/bin/bash
# Real programs run under LD_PRELOAD=libebbmalloc.so give exactly the output
# they give without it, and ebbmalloc really served them (with
# EBBMALLOC_VERBOSE=1 each preloaded process says when its heap first served
# an allocation).
set -u
lib="$(readlink -f "$1")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0

# Inputs.
seq 1 300000 | awk '{print ($1 * 7919) % 100003}' > numbers.txt
head -c 20000000 /dev/urandom | od -An -tx1 | head -c 8000000 > data.txt
cat > hello.c <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(void) { long s = 0; for (int i = 0; i < 1000; ++i) { int* p = malloc(64 * (i + 1)); p[0] = i; s += p[0]; free(p); } printf("sum %ld\n", s); return 0; }
C

run_case() {
  local name="$1"
  shift
  if ! command -v "$name" > /dev/null 2>&1; then
    echo "SKIP $name: not installed"
    return
  fi
  (eval "$*") > "ref.$name" 2> "referr.$name"
  local ref_status=$?
  (export LD_PRELOAD="$lib" EBBMALLOC_VERBOSE=1; eval "$*") > "out.$name" 2> "err.$name"
  local status=$?
  if [ "$status" != "$ref_status" ]; then
    echo "FAIL $name: exit status $status under ebbmalloc, $ref_status without"
    tail -5 "err.$name"
    fail=1
    return
  fi
  if ! cmp -s "ref.$name" "out.$name"; then
    echo "FAIL $name: output differs under ebbmalloc"
    diff "ref.$name" "out.$name" | head -5
    fail=1
    return
  fi
  local served
  served=$(grep -c '^ebbmalloc: heap: first allocation served' "err.$name")
  if [ "$served" -lt 1 ]; then
    echo "FAIL $name: ebbmalloc's heap never served it"
    tail -5 "err.$name"
    fail=1
    return
  fi
  echo "ok   $name: identical output ($(wc -c < "out.$name") bytes), $served process(es) served by ebbmalloc"
}

run_case python3 "python3 -c 'import json,hashlib; d={str(i): [i]*10 for i in range(100000)}; s=json.dumps(d); print(hashlib.sha256(s.encode()).hexdigest()); print(len(sorted(d.values())))'"
run_case sort "sort -n numbers.txt | md5sum"
run_case gcc "gcc -O2 hello.c -o hello.bin && ./hello.bin"
run_case git "export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z' GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e; rm -rf repo && git init -q repo && cp numbers.txt data.txt repo/ && git -C repo add . && git -C repo commit -qm m && git -C repo log --format=%H && git -C repo gc -q && git -C repo count-objects -v | grep -v size"
run_case xz "xz -T2 -c data.txt | md5sum"

if [ "$fail" != 0 ]; then
  echo "preload test FAILED"
  exit 1
fi
echo "preload test OK"
