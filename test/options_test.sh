#!/bin/bash
# A bad EBBMALLOC_* value gets one clear line on stderr and the default; the
# program still runs. Good values are taken.
set -u
lib="$1"
fail=0
expect_line() {  # var=value, pattern
  local err
  err=$(env "$1" LD_PRELOAD="$lib" /bin/echo ran 2>&1 >/dev/null)
  local n
  n=$(printf '%s\n' "$err" | grep -c "$2")
  if [ "$n" != 1 ] || [ "$(printf '%s\n' "$err" | grep -c .)" != 1 ]; then
    echo "FAIL ${1:0:80}: expected exactly one line matching '${2:0:80}', got: ${err:0:300}"
    fail=1
  else
    echo "ok   ${1:0:60} -> ${err:0:160}"
  fi
}
expect_line EBBMALLOC_COLD_MS=abc "EBBMALLOC_COLD_MS='abc' is not valid.*using the default 1000"
expect_line EBBMALLOC_COLD_MS= "EBBMALLOC_COLD_MS='' is not valid"
expect_line EBBMALLOC_REPORT_ORDER=99 "EBBMALLOC_REPORT_ORDER='99' is not valid.*default 0"
expect_line EBBMALLOC_BATCH=99999999999999999999999 "EBBMALLOC_BATCH=.* is not valid.*default 32"
expect_line EBBMALLOC_MADVISE=sometimes "EBBMALLOC_MADVISE='sometimes' is not valid.*default dontneed"
expect_line EBBMALLOC_REPORTER=maybe "EBBMALLOC_REPORTER='maybe' is not valid.*default 1"
expect_line EBBMALLOC_LIVE_STATS=maybe "EBBMALLOC_LIVE_STATS='maybe' is not valid.*default 0"
expect_line EBBMALLOC_LIVE_STATS_MS=5 "EBBMALLOC_LIVE_STATS_MS='5' is not valid.*default 500"
expect_line EBBMALLOC_LIVE_STATS_DIR=relative/dir "EBBMALLOC_LIVE_STATS_DIR='relative/dir' is not valid.*absolute path"
expect_line EBBMALLOC_LIMIT_MB=lots "EBBMALLOC_LIMIT_MB='lots' is not valid.*or auto.*using the default auto"
expect_line EBBMALLOC_LIMIT_MB=1073741825 "EBBMALLOC_LIMIT_MB='1073741825' is not valid.*default auto"
expect_line EBBMALLOC_PRESSURE_PCT=0 "EBBMALLOC_PRESSURE_PCT='0' is not valid.*default 90"
expect_line EBBMALLOC_PRESSURE_PCT=101 "EBBMALLOC_PRESSURE_PCT='101' is not valid.*default 90"
expect_line EBBMALLOC_NO_SUCH_THING=1 "unknown option EBBMALLOC_NO_SUCH_THING"
# Every variable with garbage, empty, huge and very long values: one line
# each, never a crash (EBBMALLOC_STATS= empty means off, which is valid).
long=$(head -c 100000 /dev/zero | tr '\0' 7)
for var in REPORTER COLD_MS DELAY_MS REPORT_ORDER BATCH REPORT_MARK_KB MADVISE SPLIT_WARM RESERVE_GB \
           STATS VERBOSE CHECK LIMIT_MB PRESSURE_PCT; do
  expect_line "EBBMALLOC_$var=#!garbage~\$" "EBBMALLOC_$var='#!garbage~\\$' is not valid"
  expect_line "EBBMALLOC_$var=184467440737095516160000" "EBBMALLOC_$var='184467440737095516160000' is not valid"
  expect_line "EBBMALLOC_$var=-1" "EBBMALLOC_$var='-1' is not valid"
  expect_line "EBBMALLOC_$var=$long" "EBBMALLOC_$var='7777.* is not valid"
  [ "$var" = STATS ] || expect_line "EBBMALLOC_$var=" "EBBMALLOC_$var='' is not valid"
done
expect_line "EBBMALLOC_$long=1" "unknown option EBBMALLOC_7777"
expect_line "EBBMALLOC_=1" "unknown option EBBMALLOC_ "
# The program's own output is unaffected.
out=$(EBBMALLOC_COLD_MS=abc LD_PRELOAD="$lib" /bin/echo ran 2>/dev/null)
[ "$out" = ran ] || { echo "FAIL: program output changed: $out"; fail=1; }
# A good value is taken (verbose start-up line shows it).
err=$(EBBMALLOC_VERBOSE=1 EBBMALLOC_COLD_MS=250 EBBMALLOC_REPORT_ORDER=3 LD_PRELOAD="$lib" /bin/echo ran 2>&1 >/dev/null)
if ! printf '%s\n' "$err" | grep -q "cold 250 ms, report order 3"; then
  echo "FAIL: good values not taken: $err"
  fail=1
fi
# A limit given as an option is taken (and shown at start-up with VERBOSE);
# 0 switches limits off, cgroups included.
err=$(EBBMALLOC_VERBOSE=1 EBBMALLOC_LIMIT_MB=300 EBBMALLOC_PRESSURE_PCT=80 LD_PRELOAD="$lib" /bin/echo ran 2>&1 >/dev/null)
if ! printf '%s\n' "$err" | grep -q "memory limit 300.0 MiB (option), pressure at 240.0 MiB"; then
  echo "FAIL: EBBMALLOC_LIMIT_MB not taken: $err"
  fail=1
fi
err=$(EBBMALLOC_VERBOSE=1 EBBMALLOC_LIMIT_MB=0 LD_PRELOAD="$lib" /bin/echo ran 2>&1 >/dev/null)
if printf '%s\n' "$err" | grep -q "memory limit"; then
  echo "FAIL: EBBMALLOC_LIMIT_MB=0 still has a limit: $err"
  fail=1
fi
[ "$fail" = 0 ] && echo "options test OK" || { echo "options test FAILED"; exit 1; }
