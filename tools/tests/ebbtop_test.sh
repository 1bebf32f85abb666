#!/usr/bin/env bash
# End-to-end tests of the live statistics file and ebbtop. One case per run:
#   ebbtop_test.sh CASE EBBTOP_BIN LIBEBBMALLOC WORKLOAD_BIN
# The workload (live_workload.cpp) is driven line by line through a coproc,
# so every check looks at a known heap. Each case uses a directory of its own
# (EBBMALLOC_LIVE_STATS_DIR). Nothing asserts on time: waits are polls with
# a generous bound that only turns a hang into a failure.
set -u
case_name=$1 ebbtop=$2 lib=$3 wl=$4
tmp=$(mktemp -d)
live=$tmp/live
wpid=""
cleanup() {
  [ -n "$wpid" ] && kill -9 "$wpid" 2>/dev/null
  [ -n "${child:-}" ] && kill -9 "$child" 2>/dev/null
  chmod -R u+rwx "$tmp" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL [$case_name]: $*" >&2
  for f in out err wl.err; do [ -s "$tmp/$f" ] && { echo "--- $f:" >&2; head -c 3000 "$tmp/$f" >&2; }; done
  exit 1
}
ok() { echo "ok   [$case_name] $*"; }
skip() { echo "SKIP [$case_name]: $*"; exit 77; }

# start PRE VAR=VALUE...: starts the workload with ebbmalloc preloaded and the
# variables set; PRE (a function, or :) runs first in the same process, whose
# pid ($BASHPID) the workload will have. Sets $wpid.
start() {
  local pre=$1
  shift
  coproc W { "$pre"; export LD_PRELOAD="$lib" "$@"; exec "$wl" 2>"$tmp/wl.err"; }
  local line
  read -t 60 -r line <&"${W[0]}" || fail "the workload did not start"
  wpid=${line#pid }
}
# cmd LINE: sends a command to the workload and waits for its "ok".
cmd() {
  local line
  echo "$1" >&"${W[1]}"
  while read -t 60 -r line <&"${W[0]}"; do
    [ "$line" = ok ] && return 0
    reply=$line
  done
  fail "the workload did not answer '$1'"
}
# stop: ends the workload normally (its destructors run) and waits for it.
stop() {
  echo exit >&"${W[1]}"
  local pid=$wpid
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "the workload did not exit"
  wpid=""
}
# top ARGS...: runs ebbtop (bounded: a hang is a failure), stdout/stderr to
# $tmp/out and $tmp/err, exit code in $rc.
top() {
  timeout 30 "$ebbtop" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  [ "$rc" = 124 ] && fail "ebbtop $* hung"
  return 0
}
expect_error() {  # RC PATTERN: exit code RC, one line on stderr matching PATTERN, no stdout
  [ "$rc" = "$1" ] || fail "exit code $rc, expected $1"
  [ "$(wc -l <"$tmp/err")" = 1 ] || fail "expected exactly one line on stderr"
  grep -q -- "$2" "$tmp/err" || fail "stderr lacks '$2'"
  [ ! -s "$tmp/out" ] || fail "stdout should be empty"
}
# field NAME: a number from the JSON snapshot in $tmp/out.
field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$tmp/out" "$1"; }
# poll_json PYTHON-CONDITION: ebbtop --once --json until the condition on
# the snapshot `s` holds (bounded).
poll_json() {
  for _ in $(seq 300); do
    top --once --json "$wpid"
    [ "$rc" = 0 ] && python3 -c "import json,sys; s=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if ($1) else 1)" \
      "$tmp/out" && return 0
    sleep 0.2
  done
  fail "the snapshot never satisfied: $1"
}
mib=1048576
opt_in=(EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR="$live")

case $case_name in
view)
  # Live grows with the allocation; after the free, free-reported memory
  # grows and live falls; the text view shows every figure.
  start : "${opt_in[@]}"
  cmd "alloc 64"
  poll_json "s['live_bytes'] >= 64*$mib and s['process_rss_bytes'] >= 64*$mib and s['resident_bytes'] >= 64*$mib"
  ok "after alloc 64: live $(($(field live_bytes) / mib)) MiB, process RSS $(($(field process_rss_bytes) / mib)) MiB"
  # The resident floor: the 64 KiB objects are large blocks, all of their
  # pages live; the floor is below the process's RSS.
  poll_json "s['floor_age_ms'] >= 0 and s['floor_large_bytes'] >= 64*$mib and s['floor_bytes'] >= 64*$mib and s['floor_bytes'] <= s['process_rss_bytes'] and s['floor_exact'] == 1"
  ok "after alloc 64: floor $(($(field floor_bytes) / mib)) MiB (large $(($(field floor_large_bytes) / mib)) MiB), walk $(field floor_walk_us) us"
  top --once "$wpid"
  [ "$rc" = 0 ] || fail "ebbtop --once exit code $rc"
  for label in "process RSS" "heap resident~" mapped live "free warm" "free reported" "order  block" \
               passes returned "madvise calls" fallbacks "thread caches" "floor  " "x floor" pinned; do
    grep -q -- "$label" "$tmp/out" || fail "the text view lacks '$label'"
  done
  [ "$(grep -cE '^ +[0-9]+  [0-9.]+ [KMG]iB +[0-9]+ +[0-9]+$' "$tmp/out")" = 14 ] || fail "the order table lacks rows"
  cmd free
  poll_json "s['free_reported_bytes'] >= 60*$mib and s['live_bytes'] < 16*$mib and s['reported_bytes_total'] >= 60*$mib and s['madvise_calls'] > 0 and s['reporter_passes'] > 0"
  ok "after free: free reported $(($(field free_reported_bytes) / mib)) MiB, returned $(($(field reported_bytes_total) / mib)) MiB in $(field madvise_calls) madvise calls"
  poll_json "s['floor_bytes'] < 8*$mib"
  ok "after free: floor $(($(field floor_bytes) / 1024)) KiB"
  # Refreshing: ebbtop keeps printing until the process exits, then exits 0.
  timeout 60 "$ebbtop" --interval 100 "$wpid" >"$tmp/out" 2>"$tmp/err" </dev/null &
  top_pid=$!
  for _ in $(seq 300); do [ "$(grep -c '^ebbtop  pid' "$tmp/out")" -ge 2 ] && break; sleep 0.1; done
  [ "$(grep -c '^ebbtop  pid' "$tmp/out")" -ge 2 ] || fail "ebbtop did not refresh"
  grep -q $'\033\[2J' "$tmp/out" && fail "the screen was cleared although stdout is not a tty"
  stop
  wait "$top_pid"
  rc=$?
  [ "$rc" = 0 ] || fail "ebbtop exit code $rc after the process exited (124: it did not notice)"
  grep -q "process .* exited" "$tmp/err" || fail "ebbtop did not say the process exited"
  ok "ebbtop refreshed $(grep -c '^ebbtop  pid' "$tmp/out") times and exited with the process"
  ;;
file)
  # Mode, owner and place; removed at exit.
  start : "${opt_in[@]}"
  f=$live/$wpid.stats
  [ -f "$f" ] && [ ! -L "$f" ] || fail "$f missing"
  [ "$(stat -c %a "$f")" = 600 ] || fail "file mode $(stat -c %a "$f"), expected 600"
  [ "$(stat -c %u "$f")" = "$(id -u)" ] || fail "file owner $(stat -c %u "$f")"
  [ "$(stat -c %a "$live")" = 700 ] || fail "directory mode $(stat -c %a "$live"), expected 700"
  ok "$f: mode 600, owner $(id -u), directory 700"
  stop
  [ ! -e "$f" ] || fail "the file was not removed at exit"
  ok "removed at exit"
  # The default directory is /dev/shm/ebbmalloc-<euid>.
  start : EBBMALLOC_LIVE_STATS=1
  f=/dev/shm/ebbmalloc-$(id -u)/$wpid.stats
  [ -f "$f" ] || fail "$f missing (default directory)"
  top --once "$wpid"
  [ "$rc" = 0 ] || fail "ebbtop on the default directory: exit code $rc"
  stop
  [ ! -e "$f" ] || fail "$f was not removed at exit"
  ok "default directory $f"
  ;;
symlink)
  # A symlink planted at the path is refused and not followed.
  mkdir -m 700 "$live"
  echo "precious" >"$tmp/target"
  plant() { ln -s "$tmp/target" "$live/$BASHPID.stats"; }
  start plant "${opt_in[@]}"
  cmd "alloc 1"
  [ "$(cat "$tmp/target")" = precious ] || fail "the symlink's target was changed"
  [ -L "$live/$wpid.stats" ] || fail "the symlink was removed"
  grep -q "EBBMALLOC_LIVE_STATS: .*$wpid.stats: is a symlink (not followed); running without live statistics" \
    "$tmp/wl.err" || fail "no refusal line on the workload's stderr"
  [ "$(wc -l <"$tmp/wl.err")" = 1 ] || fail "expected one line on the workload's stderr"
  top --once "$wpid"
  expect_error 1 "is a symlink; not following it"
  ok "symlink refused, target untouched; ebbtop refuses it too"
  stop
  # A symlinked directory is refused too.
  mkdir -m 700 "$tmp/real"
  ln -s "$tmp/real" "$tmp/linkdir"
  start : EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR="$tmp/linkdir"
  grep -q "linkdir: is a symlink (not followed)" "$tmp/wl.err" || fail "a symlinked directory was not refused"
  [ -z "$(ls -A "$tmp/real")" ] || fail "a file was created through the symlinked directory"
  stop
  ok "symlinked directory refused"
  ;;
foreign)
  # Other users' files and directories, and directories open to others.
  [ "$(id -u)" = 0 ] || skip "needs root to make files of another user"
  mkdir -m 700 "$live"
  echo "theirs" >"$tmp/theirs"
  plant() { cp "$tmp/theirs" "$live/$BASHPID.stats"; chown 65534 "$live/$BASHPID.stats"; }
  start plant "${opt_in[@]}"
  grep -q "$wpid.stats: exists and is not a file of this user's" "$tmp/wl.err" || fail "another user's file was not refused"
  [ "$(cat "$live/$wpid.stats")" = theirs ] || fail "another user's file was changed"
  top --once "$wpid"
  expect_error 1 "belongs to uid 65534, not to the owner"
  stop
  ok "another user's file refused by the library and by ebbtop"
  mkdir -m 700 "$tmp/theirdir" && chown 65534 "$tmp/theirdir"
  start : EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR="$tmp/theirdir"
  grep -q "theirdir: belongs to another user" "$tmp/wl.err" || fail "another user's directory was not refused"
  stop
  mkdir -m 777 "$tmp/opendir" && chmod 777 "$tmp/opendir"
  start : EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR="$tmp/opendir"
  grep -q "opendir: belongs to another user or is open to group/others" "$tmp/wl.err" || fail "an open directory was not refused"
  [ -z "$(ls -A "$tmp/opendir")" ] || fail "a file was created in an open directory"
  stop
  ok "another user's directory and an open directory refused"
  # ebbtop run by another user: permission denied.
  start : EBBMALLOC_LIVE_STATS=1
  top --once "$wpid"
  [ "$rc" = 0 ] || fail "ebbtop as root: exit code $rc"
  timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups "$ebbtop" --once "$wpid" >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  expect_error 1 "permission denied reading .*run ebbtop as that user"
  stop
  ok "ebbtop as another user: $(cat "$tmp/err")"
  ;;
stale)
  # Files of dead processes are removed; files of live ones are kept; a
  # file left at our own pid (dead process with the same pid, or this
  # process before an exec) is replaced.
  mkdir -m 700 "$live"
  echo stale >"$live/99999999.stats"
  echo alive >"$live/$$.stats"
  echo notours >"$live/notes.txt"
  plant() { head -c 4096 /dev/urandom >"$live/$BASHPID.stats"; }
  start plant "${opt_in[@]}"
  [ ! -e "$live/99999999.stats" ] || fail "the file of a dead process was not removed"
  [ -e "$live/$$.stats" ] || fail "the file of a live process was removed"
  [ -e "$live/notes.txt" ] || fail "an unrelated file was removed"
  top --once "$wpid"
  [ "$rc" = 0 ] || fail "the file left at the workload's pid was not replaced (ebbtop exit code $rc)"
  [ ! -s "$tmp/wl.err" ] || fail "unexpected stderr from the workload"
  stop
  ok "stale file removed, live and unrelated files kept, own-pid leftover replaced"
  ;;
noopt)
  # Without the opt-in ebbtop says how to enable it.
  start : EBBMALLOC_LIVE_STATS_DIR="$live"
  top --once "$wpid"
  expect_error 1 "runs ebbmalloc without live statistics: start it with EBBMALLOC_LIVE_STATS=1"
  ok "$(cat "$tmp/err")"
  stop
  [ ! -e "$live" ] || fail "the directory was created without the opt-in"
  # A process without ebbmalloc at all.
  coproc S { exec "$wl"; }
  read -t 30 -r line <&"${S[0]}" || fail "the plain workload did not start"
  spid=${line#pid }
  top --once "$spid"
  expect_error 1 "libebbmalloc.so is not loaded in it"
  ok "$(cat "$tmp/err")"
  kill "$spid"
  ;;
badpid)
  for bad in abc 0 -5 12x "" 99999999999; do
    top --once "$bad"
    expect_error 2 "is not a process id\|unknown option"
  done
  top --once
  expect_error 2 "missing PID"
  top 1 2
  expect_error 2 "one PID only"
  top --interval 0 1
  expect_error 2 "--interval"
  top --bogus 1
  expect_error 2 "unknown option '--bogus'"
  ok "malformed PIDs and options: usage errors"
  # A pid that does not exist (the largest possible one, above pid_max).
  top --once 2147483647
  expect_error 1 "no process with pid 2147483647"
  sh -c 'exit 0' &
  gone=$!
  wait "$gone"
  if ! kill -0 "$gone" 2>/dev/null; then
    top "$gone"
    expect_error 1 "no process with pid $gone"
  fi
  ok "nonexistent PIDs: clear error, exit 1"
  ;;
version)
  # Files that are not ours to read: bad magic, another layout, another pid.
  start : EBBMALLOC_LIVE_STATS_DIR="$live"
  mkdir -m 700 "$live"
  write() {  # MAGIC LAYOUT PID
    python3 - "$live/$wpid.stats" "$@" <<'EOF'
import struct, sys
path, magic, layout, pid = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3]), int(sys.argv[4])
head = struct.pack("<QIIiIII Q32s", magic, layout, 1000, pid, 0, 500, 1, 0, b"ebbmalloc 9.9.9")
open(path, "wb").write(head + b"\0" * (4096 - len(head)))
EOF
  }
  write 0x314556494c424245 99 "$wpid"
  top --once "$wpid"
  expect_error 1 "has layout 99 (written by 'ebbmalloc 9.9.9'), this ebbtop reads layout 3"
  ok "$(cat "$tmp/err")"
  write 0x1234 3 "$wpid"
  top --once "$wpid"
  expect_error 1 "is not an ebbmalloc live statistics file (bad magic)"
  write 0x314556494c424245 3 1
  top --once "$wpid"
  expect_error 1 "belongs to pid 1, not $wpid"
  head -c 100 /dev/zero >"$live/$wpid.stats"
  top --once "$wpid"
  expect_error 1 "not an ebbmalloc live statistics file (too short)"
  stop
  ok "bad magic, wrong pid and short files refused"
  ;;
fork)
  # A fork child has no file of its own and leaves the parent's alone.
  start : "${opt_in[@]}"
  cmd fork
  child=${reply#child }
  top --once "$child"
  expect_error 1 "was started with EBBMALLOC_LIVE_STATS=1 but has no .*fork child"
  kill -9 "$child"
  # Killed, not yet reaped by the workload: a zombie.
  for _ in $(seq 300); do grep -q '^State:.*Z' "/proc/$child/status" 2>/dev/null && break; sleep 0.1; done
  top --once "$child"
  expect_error 1 "process $child has exited (a zombie"
  child=""
  poll_json "s['publishes'] > 2"
  [ -f "$live/$wpid.stats" ] || fail "the parent's file disappeared"
  stop
  [ ! -e "$live/$wpid.stats" ] || fail "the parent's file was not removed at exit"
  ok "fork child: no file; parent's file intact and removed at the parent's exit"
  ;;
killed)
  # A process killed by a signal leaves its file; ebbtop still notices the
  # death, and the next process of the user removes the file.
  start : "${opt_in[@]}"
  dead=$wpid
  timeout 60 "$ebbtop" --interval 100 "$dead" >"$tmp/out" 2>"$tmp/err" </dev/null &
  top_pid=$!
  for _ in $(seq 300); do grep -q '^ebbtop  pid' "$tmp/out" && break; sleep 0.1; done
  kill -9 "$dead"
  wpid=""
  wait "$top_pid"
  rc=$?
  [ "$rc" = 0 ] || fail "ebbtop exit code $rc after the process was killed (124: it did not notice)"
  grep -q "process $dead exited" "$tmp/err" || fail "ebbtop did not say the process exited"
  [ -e "$live/$dead.stats" ] || fail "expected the killed process's file to be left behind"
  start : "${opt_in[@]}"
  [ ! -e "$live/$dead.stats" ] || fail "the killed process's file was not cleaned up"
  stop
  ok "ebbtop exits when the process is killed; its file is removed by the next process"
  ;;
reporter_off)
  # With reporting off the reporter thread still publishes.
  start : "${opt_in[@]}" EBBMALLOC_REPORTER=0
  cmd "alloc 8"
  poll_json "s['publishes'] >= 3 and s['live_bytes'] >= 8*$mib and s['reporter_passes'] == 0"
  top --once "$wpid"
  grep -q "off (EBBMALLOC_REPORTER=0)" "$tmp/out" || fail "the view does not say the reporter is off"
  stop
  ok "snapshots keep coming with EBBMALLOC_REPORTER=0"
  ;;
limit)
  # A memory limit (EBBMALLOC_LIMIT_MB): the view and the JSON show it, its
  # source and the usage; without one the view says none.
  start : "${opt_in[@]}" EBBMALLOC_LIMIT_MB=512
  cmd "alloc 8"
  poll_json "s['publishes'] >= 2 and s['limit_bytes'] == 512*$mib and s['limit_source'] == 'option' and s['limit_usage_bytes'] > 8*$mib and s['limit_headroom_bytes'] == s['limit_bytes'] - s['limit_usage_bytes'] and s['pressure_mark_bytes'] == 512*$mib*9//10"
  top --once "$wpid"
  grep -q "memory limit    512.0 MiB, option" "$tmp/out" || fail "the view does not show the limit"
  grep -q "pressure at 460.[0-9] MiB" "$tmp/out" || fail "the view does not show the pressure mark"
  stop
  start : "${opt_in[@]}" EBBMALLOC_LIMIT_MB=0
  poll_json "s['publishes'] >= 1"
  top --once "$wpid"
  grep -q "memory limit    none" "$tmp/out" || fail "the view does not say there is no limit"
  stop
  ok "the limit, its source, usage and mark are shown"
  ;;
*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac
echo "PASS [$case_name]"
