#!/bin/bash
# Memory pressure end to end, with the `pressure` workload (live memory at
# most 0.8 L by construction, RSS above L under glibc, jemalloc, mimalloc):
#  1. EBBMALLOC_LIMIT_MB=L: the RSS sampled from /proc every 2 ms stays at
#     most L + SLACK; with EBBMALLOC_LIMIT_MB=0 (no limit) it goes above L,
#     so this check can fail (ebbmalloc without a limit: ~270 MiB).
#  2. A real cgroup, where the test can make one (root, and a writable
#     cgroup v2 hierarchy or v1 memory hierarchy; otherwise skipped with a
#     message): under memory.high = L (v2) or memory.limit_in_bytes = L
#     (v1), ebbmalloc finds the limit by itself (EBBMALLOC_STATS names it)
#     and the workload is never throttled or killed (memory.events `high`
#     and `oom_kill` stay 0 / memory.failcnt stays 0); glibc in the same
#     cgroup is (so this check can fail too).
# Usage: pressure_limit_test.sh LIBEBBMALLOC PRESSURE_WORKLOAD
set -u
lib="$1"
wl="$2"
# The workload's own bound is 0.8 x 128 MiB = 102 MiB of requested bytes
# (--scale 0.5 --limit-mb 256); live small objects take ~10% more in their
# size classes, so the process needs ~125 MiB at its peaks: the limit given
# to ebbmalloc is L = 144 MiB (pressure from 130 MiB), 0.71 L live.
L=144        # MiB
SLACK=2      # MiB over L: sampling; documented in README "Memory limits"
args=(--scale 0.5 --limit-mb 256)
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs a command, sampling its RSS every 2 ms; prints "peak_kib exit_status".
sampled() {
  python3 - "$@" <<'EOF'
import os, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak = 0
page = os.sysconf("SC_PAGE_SIZE") // 1024
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/statm") as f:
            peak = max(peak, int(f.read().split()[1]) * page)
    except (OSError, ValueError, IndexError):
        pass
    time.sleep(0.002)
print(peak, p.returncode)
EOF
}

check_option() {
  read -r peak rc < <(sampled env LD_PRELOAD="$lib" EBBMALLOC_LIMIT_MB=$L "$wl" "${args[@]}")
  if [ "$rc" != 0 ] || [ "$peak" -gt $(((L + SLACK) * 1024)) ]; then
    echo "FAIL EBBMALLOC_LIMIT_MB=$L: peak RSS $((peak / 1024)) MiB (limit $L + $SLACK), exit $rc"
    fail=1
  else
    echo "ok   EBBMALLOC_LIMIT_MB=$L: peak RSS $((peak / 1024)) MiB <= $L + $SLACK MiB"
  fi
  read -r peak rc < <(sampled env LD_PRELOAD="$lib" EBBMALLOC_LIMIT_MB=0 "$wl" "${args[@]}")
  if [ "$rc" != 0 ] || [ "$peak" -le $((L * 1024)) ]; then
    echo "FAIL without a limit the workload should exceed $L MiB: peak $((peak / 1024)) MiB, exit $rc"
    fail=1
  else
    echo "ok   without a limit: peak RSS $((peak / 1024)) MiB > $L MiB (the check can fail)"
  fi
}

# The cgroup part. Prints why it is skipped, if it is.
cg=""
cg_kind=""
make_cgroup() {
  [ "$(id -u)" = 0 ] || { echo "skip cgroup: not root"; return 1; }
  local v2 v1
  # mountinfo: the file system type is the field after the lone "-" (the
  # optional fields before it vary in number).
  local fs='{t = ""; for (i = 7; i <= NF; i++) if ($i == "-") {t = $(i + 1); break}}'
  v2=$(awk "$fs"' t == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
  v1=$(awk "$fs"' t == "cgroup" && $NF ~ /(^|,)memory(,|$)/ {print $5; exit}' /proc/self/mountinfo)
  # v1 memory wins where it is mounted (the memory controller is there).
  if [ -n "$v1" ] && [ -w "$v1" ]; then
    cg="$v1/ebbmalloc-test-$$"
    mkdir "$cg" 2>/dev/null || { echo "skip cgroup: cannot create $cg"; return 1; }
    echo $((L << 20)) >"$cg/memory.limit_in_bytes" || { echo "skip cgroup: cannot set a limit"; return 1; }
    cg_kind=v1
  elif [ -n "$v2" ] && [ -w "$v2" ] && grep -qw memory "$v2/cgroup.controllers" 2>/dev/null; then
    # The test's cgroup sits under the root, where memory may need enabling.
    grep -qw memory "$v2/cgroup.subtree_control" || echo +memory >"$v2/cgroup.subtree_control" 2>/dev/null
    cg="$v2/ebbmalloc-test-$$"
    mkdir "$cg" 2>/dev/null || { echo "skip cgroup: cannot create $cg"; return 1; }
    [ -e "$cg/memory.high" ] || { echo "skip cgroup: no memory controller in $cg"; return 1; }
    echo $((L << 20)) >"$cg/memory.high" || { echo "skip cgroup: cannot set memory.high"; return 1; }
    cg_kind=v2
  else
    echo "skip cgroup: no writable cgroup v2 or v1 memory hierarchy"
    return 1
  fi
}
remove_cgroup() {
  [ -n "$cg" ] && [ -d "$cg" ] || return 0
  for _ in 1 2 3 4 5; do rmdir "$cg" 2>/dev/null && return 0; sleep 0.2; done
  echo "note: could not remove $cg"
}
# Hits of the limit so far: v2 `high` + `oom_kill` events, v1 failcnt.
limit_hits() {
  if [ "$cg_kind" = v2 ]; then
    awk '$1 == "high" || $1 == "oom_kill" {n += $2} END {print n + 0}' "$cg/memory.events"
  else
    cat "$cg/memory.failcnt"
  fi
}
# Runs the workload inside the cgroup: cgroup, then exec (the limit is found
# at start-up).
in_cgroup() {
  sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}

check_cgroup() {
  make_cgroup || { remove_cgroup; return 0; }
  local before after rc
  before=$(limit_hits)
  in_cgroup env LD_PRELOAD="$lib" EBBMALLOC_STATS=1 "$wl" "${args[@]}" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  after=$(limit_hits)
  local want="memory.limit_in_bytes of $cg"
  [ "$cg_kind" = v2 ] && want="memory.high of $cg"
  if [ "$rc" != 0 ] || [ "$after" != "$before" ] || ! grep -q "memory limit .*144.0 MiB  ($want" "$tmp/err"; then
    echo "FAIL cgroup $cg_kind ($cg): exit $rc, limit hits $before -> $after; statistics:"
    grep -E "memory limit|limit usage|pressure" "$tmp/err" | head -5
    fail=1
  else
    echo "ok   cgroup $cg_kind: found by itself ($(grep -o "memory limit .*" "$tmp/err" | head -1)), never hit"
  fi
  # glibc in the same cgroup goes over (throttled, or killed under v1).
  before=$(limit_hits)
  in_cgroup "$wl" "${args[@]}" >/dev/null 2>&1
  rc=$?
  after=$(limit_hits)
  if [ "$after" = "$before" ] && [ "$rc" = 0 ]; then
    echo "FAIL glibc in the cgroup never hit the limit: the check cannot fail"
    fail=1
  else
    echo "ok   glibc in the cgroup hit the limit ($before -> $after, exit $rc)"
  fi
  remove_cgroup
}

check_option
check_cgroup
[ "$fail" = 0 ] && echo "pressure limit test OK" || { echo "pressure limit test FAILED"; exit 1; }
