# Helpers of the CLI test scripts (cli_test.sh, compare_test.sh), sourced
# after they set $case_name and $tool (the program under test). Each case
# runs in a fresh temporary directory, removed on exit.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

fail() { echo "FAIL [$case_name]: $*" >&2; echo "--- stdout:" >&2; cat out 2>/dev/null >&2
         echo "--- stderr:" >&2; cat err 2>/dev/null >&2; exit 1; }
# run ARGS...: runs $tool, stdout → out, stderr → err, exit code → $rc.
run() { "$tool" "$@" >out 2>err </dev/null; rc=$?; }
expect_rc() { [ "$rc" = "$1" ] || fail "exit code $rc, expected $1"; }
expect_out() { grep -q -- "$1" out || fail "stdout lacks '$1'"; }
expect_err() { grep -q -- "$1" err || fail "stderr lacks '$1'"; }
