#!/usr/bin/env bash
# End-to-end tests of the ebbrun CLI. One case per invocation:
#   cli_test.sh CASE EBBRUN_BIN SHAPE_BIN DUMMY_SO
# Every case uses --alloc glibc (or a fake allocator) so it doesn't depend on
# mimalloc/jemalloc/tcmalloc being installed. The pressure case runs the real
# ebbmalloc and workload, named by $EBBRUN_EBB_LIB and $PRESSURE_BIN.
set -u
case_name=$1 ebbrun=$2 shape=$3 dummy_so=$4
tool=$ebbrun
. "$(dirname "$0")/cli_lib.sh"
expect_nonzero() { [ "$rc" != 0 ] || fail "exit code 0, expected non-zero"; }
# A usage error: non-zero, exactly one line on stderr mentioning $1, no table.
expect_usage_error() {
  [ "$rc" = 2 ] || fail "exit code $rc, expected 2 (usage error)"
  [ "$(wc -l <err)" = 1 ] || fail "expected one line on stderr"
  expect_err "$1"
  [ ! -s out ] || fail "stdout should be empty"
}
# The status cell of ALLOC's row in the table.
status_of() { awk -v a="$1" '$1 == a { print; exit }' out; }

case $case_name in
shape)
  # The helper rises to 200 MiB, holds, munmaps, waits: ebbrun must see both
  # the rise and the fall in its samples.
  run --alloc glibc --interval 20 --csv s.csv --plot s.svg --quiet -- "$shape"
  expect_rc 0
  expect_out "^allocator"
  [ -n "$(status_of glibc)" ] || fail "no glibc row"
  head -1 s.csv | grep -qx 'allocator,run,t_seconds,rss_bytes' || fail "bad CSV header"
  awk -F, 'NR > 1 { if ($1 != "glibc" || $2 != 1) bad = 1; if ($4 > peak) peak = $4; last = $4; n++ }
           END { mib = 1048576
                 printf "samples=%d peak=%.1f MiB final=%.1f MiB\n", n, peak / mib, last / mib
                 exit !(bad == 0 && n >= 20 && peak >= 150 * mib && last < peak / 2) }' s.csv \
    || fail "CSV does not show the rise to >=150 MiB and the fall below half of it"
  grep -q '<polyline' s.svg || fail "SVG has no polyline"
  grep -q 'RSS (MiB)' s.svg && grep -q 'time (s)' s.svg || fail "SVG lacks axis labels"
  if command -v xmllint >/dev/null; then xmllint --noout s.svg || fail "SVG is not well-formed XML"; fi
  ! grep -q 'ebbrun_shape: done' out || fail "--quiet let the command's output through"
  ;;
tree)
  # The memory is in a grandchild (sh forks because of the '; true').
  run --alloc glibc --interval 20 --csv s.csv --quiet -- sh -c "'$shape'; true"
  expect_rc 0
  awk -F, 'NR > 1 && $4 > peak { peak = $4 } END { exit !(peak >= 150 * 1048576) }' s.csv \
    || fail "the grandchild's RSS was not counted"
  ;;
passthrough)
  run --alloc glibc -- sh -c 'echo to-stdout; echo to-stderr >&2'
  expect_rc 0
  expect_out "^to-stdout"
  expect_err "^to-stderr"
  run --alloc glibc --quiet=log.txt -- sh -c 'echo to-stdout; echo to-stderr >&2'
  expect_rc 0
  ! grep -qx 'to-std.*' out err || fail "--quiet=FILE let output through"
  grep -q to-stdout log.txt && grep -q to-stderr log.txt || fail "--quiet=FILE did not capture output"
  ;;
options)
  run --bogus -- true;                      expect_usage_error "unknown option '--bogus'"
  run --alloc glibc true;                   expect_usage_error "missing '--'"
  run --alloc glibc;                        expect_usage_error "missing '--"
  run --alloc glibc --;                     expect_usage_error "no command after '--'"
  run --runs 0 -- true;                     expect_usage_error "--runs"
  run --runs abc -- true;                   expect_usage_error "--runs"
  run --runs 3x -- true;                    expect_usage_error "--runs"
  run --runs -- true;                       expect_usage_error "--runs"
  run --interval -5 -- true;                expect_usage_error "--interval"
  run --interval 0 -- true;                 expect_usage_error "--interval"
  run --alloc glibc,nosuch -- true;         expect_usage_error "unknown allocator 'nosuch'"
  run --env glibc-FOO=1 -- true;            expect_usage_error "ALLOC:VAR=VALUE"
  run --env nosuch:FOO=1 -- true;           expect_usage_error "unknown allocator 'nosuch'"
  run --env glibc:1BAD=1 -- true;           expect_usage_error "bad variable name"
  run --timeout never -- true;              expect_usage_error "--timeout"
  run --limit-mb 0 -- true;                 expect_usage_error "--limit-mb"
  run --limit-mb 1.5 -- true;               expect_usage_error "--limit-mb"
  run demo -- true;                         expect_usage_error "takes no command"
  run --help;                               expect_rc 0; expect_out "usage: ebbrun"
  ;;
badcmd)
  run --alloc glibc --runs 2 -- ./no-such-command-here
  expect_rc 1
  [ "$(grep -c 'command not found' out)" = 1 ] || fail "table should say 'command not found'"
  status_of glibc | grep -q 'command not found (2/2 runs)' || fail "status cell wrong"
  ;;
crash)
  run --alloc glibc -- sh -c 'kill -SEGV $$'
  expect_rc 1
  status_of glibc | grep -q 'signal SIGSEGV' || fail "status should show signal SIGSEGV"
  expect_err "glibc: signal SIGSEGV"
  run --alloc glibc -- sh -c 'exit 7'
  expect_rc 1
  status_of glibc | grep -q 'exit 7' || fail "status should show exit 7"
  run --alloc glibc --timeout 0.3 -- sleep 20
  expect_rc 1
  status_of glibc | grep -q 'timeout' || fail "status should show the timeout"
  ;;
unwritable)
  # Checked before anything runs: the marker file must not appear.
  run --alloc glibc --plot /nonexistent/dir/x.svg -- touch marker
  expect_usage_error "--plot: cannot write /nonexistent/dir/x.svg"
  [ ! -e marker ] || fail "the command ran before the plot path was checked"
  run --alloc glibc --csv /nonexistent/dir/x.csv -- touch marker
  expect_usage_error "--csv: cannot write"
  run --alloc glibc --plot . -- touch marker
  expect_usage_error "is a directory"
  [ ! -e marker ] || fail "the command ran before the csv path was checked"
  ;;
missing)
  # ebb pointed at a library that isn't there: skipped with one note, glibc
  # still runs, and that's not a failure.
  EBBRUN_EBB_LIB=/nonexistent/libebbmalloc.so run --alloc glibc,ebb -- true
  expect_rc 0
  [ "$(grep -c 'skipping ebb' err)" = 1 ] || fail "expected one 'skipping ebb' note"
  expect_err "/nonexistent/libebbmalloc.so not found"
  [ -n "$(status_of glibc)" ] || fail "no glibc row"
  [ -z "$(status_of ebb)" ] || fail "skipped ebb should have no row"
  EBBRUN_EBB_LIB=/nonexistent/libebbmalloc.so run --alloc ebb -- true
  expect_rc 1
  expect_err "none of the requested allocators"
  # --install has nothing to do when only glibc is asked for.
  run --install --alloc glibc -- true
  expect_rc 0
  expect_err "already installed"
  ;;
env)
  # The preload goes in front of an existing LD_PRELOAD; --env reaches only
  # its allocator's runs; runs are interleaved (glibc, ebb, glibc, ebb).
  export EBBRUN_EBB_LIB=$dummy_so
  LD_PRELOAD=$dummy_so.theirs
  cp "$dummy_so" "$LD_PRELOAD"
  export LD_PRELOAD
  run --alloc glibc,ebb --runs 2 --env ebb:EBBT=only-ebb --env all:EBBA=everyone \
      -- sh -c 'echo "$LD_PRELOAD|${EBBT:-}|$EBBA" >> order.log'
  unset LD_PRELOAD
  expect_rc 0
  printf '%s\n' "$dummy_so.theirs||everyone" "$dummy_so:$dummy_so.theirs|only-ebb|everyone" \
                "$dummy_so.theirs||everyone" "$dummy_so:$dummy_so.theirs|only-ebb|everyone" >want.log
  diff want.log order.log >&2 || fail "environment or run order wrong"
  expect_out "time/glibc"
  ;;
limit)
  # --limit-mb: EBBMALLOC_LIMIT_MB reaches the ebb runs only (an --env of the
  # same variable wins), and the table gets the columns of RSS against L: the
  # helper holds ~200 MiB for a while, so with L = 100 MiB it is above L for
  # some time and its peak is about twice L.
  export EBBRUN_EBB_LIB=$dummy_so
  run --alloc glibc,ebb --limit-mb 100 -- sh -c 'echo "${EBBMALLOC_LIMIT_MB:-unset}" >> limit.log'
  expect_rc 0
  printf '%s\n' unset 100 >want.log
  diff want.log limit.log >&2 || fail "EBBMALLOC_LIMIT_MB should be 100 for ebb only"
  rm limit.log
  run --alloc ebb --limit-mb 100 --env ebb:EBBMALLOC_LIMIT_MB=7 -- sh -c 'echo "$EBBMALLOC_LIMIT_MB" >> limit.log'
  [ "$(cat limit.log)" = 7 ] || fail "--env should override --limit-mb's variable"
  run --alloc glibc --limit-mb 100 --interval 20 --quiet -- "$shape"
  expect_rc 0
  expect_out "Limit L = 100 MiB"
  head=$(grep '^allocator' out)
  grep -q 'over L s  *peak/L' <<<"$head" || fail "no 'over L s' and 'peak/L' columns"
  # The two cells before the status (0) and the two ratios to glibc.
  status_of glibc | awk '{ over = $(NF-4); ratio = $(NF-3)
                           printf "over L s=%s peak/L=%s\n", over, ratio
                           exit !(over > 0.1 && ratio > 1.5 && ratio < 2.5) }' \
    || fail "glibc's over L s / peak/L are not those of a 200 MiB peak against 100 MiB"
  # Without the option the columns are not there.
  run --alloc glibc -- true
  ! grep -q 'over L s' out || fail "'over L s' column without --limit-mb"
  ;;
pressure)
  # The pressure workload's smoke run prints its verify line under glibc and
  # under the preloaded ebbmalloc (the same checksum), its live peak stays
  # within the bound it reports, and ebbrun shows RSS against L.
  run --alloc glibc,ebb --limit-mb 16 -- "$PRESSURE_BIN" --scale 0.05 --report-live
  expect_rc 0
  [ "$(grep -c '^verify pressure checksum=[0-9a-f]* OK$' out)" = 2 ] || fail "expected two verify lines"
  [ "$(grep '^verify pressure' out | sort -u | wc -l)" = 1 ] || fail "the checksums differ"
  grep '\[pressure\].* live peak=' err | awk '{ for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) v[kv[1]] = kv[2]
      if (!(v["peak"] + 0 > 0 && v["peak"] + 0 <= v["bound"] + 0 && v["bound"] + 0 < v["limit"] + 0)) bad = 1; n++ }
      END { exit !(n == 2 && !bad) }' || fail "live peak above the bound, or no --report-live line"
  grep -q 'over L s  *peak/L' out || fail "no limit columns"
  for a in glibc ebb; do
    status_of "$a" | grep -q ' 0 ' || fail "$a did not run the workload"
  done
  ;;
demo)
  # A fake phase workload: the demo must run it, write ebbrun-demo.svg and
  # print a reading; a run without the verify line counts as failed.
  printf '#!/bin/sh\necho "verify phase checksum=1 OK"\n' >phase && chmod +x phase
  EBBRUN_PHASE_BIN=$PWD/phase EBBRUN_EBB_LIB=$dummy_so run demo --alloc glibc,ebb
  expect_rc 0
  [ -s ebbrun-demo.svg ] || fail "no ebbrun-demo.svg"
  expect_out "^Reading:"
  expect_out "ebb's mean RSS"
  printf '#!/bin/sh\necho wrong\n' >phase
  EBBRUN_PHASE_BIN=$PWD/phase run demo --alloc glibc
  expect_rc 1
  status_of glibc | grep -q "no 'verify" || fail "a run without the verify line must fail"
  EBBRUN_PHASE_BIN=$PWD/nothing run demo --alloc glibc
  expect_rc 1
  expect_err "phase workload is missing"
  ;;
*)
  echo "unknown case $case_name" >&2; exit 2 ;;
esac
echo "PASS [$case_name]"
