#!/bin/bash
# Installs ebbmalloc the ways its users do and uses what was installed. One
# case per run (ctest -L install; registered by packaging/CMakeLists.txt):
#   install_test.sh CASE BUILD_DIR SOURCE_DIR VERSION
# with the install directories in EBB_BINDIR, EBB_LIBDIR, EBB_INCLUDEDIR,
# EBB_LIBEXECDIR, EBB_MANDIR, EBB_DOCDIR (GNUInstallDirs, relative).
#   layout       cmake --install --prefix, and DESTDIR: files, links, soname,
#                dependencies, no path of the build in what is installed
#   cmake        find_package consumers (ebbmalloc::shared and ::static)
#   pkgconfig    pkg-config consumers (shared, and --static)
#   launcher     the ebbmalloc launcher on python3 and sort
#   tools        the installed ebbrun, ebbtop and phase workload
#   man          the man pages (groff warnings, every EBBMALLOC_* variable)
#   deb          cpack -G DEB: contents (dpkg-deb -c), metadata (dpkg-deb -I)
#   deb_install  dpkg -i, the installed tools, dpkg -r: only as root with
#                CI=true (a disposable machine), else skipped (status 77)
# Every check is a function that is also run on something broken on purpose
# (a wrong prefix, a missing library, a corrupted .pc, ...), which it must
# reject with its message: a check that cannot fail proves nothing. Each case
# installs into a prefix of its own. Nothing asserts on time.
set -u
case_name=$1 build=$2 src=$3 version=$4
: "${EBB_BINDIR:?} ${EBB_LIBDIR:?} ${EBB_INCLUDEDIR:?} ${EBB_LIBEXECDIR:?} ${EBB_MANDIR:?} ${EBB_DOCDIR:?}"
major=${version%%.*}
tmp=$(mktemp -d)
bg_pid=""
cleanup() {
  [ -n "$bg_pid" ] && kill -9 "$bg_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

fail() {
  echo "FAIL [$case_name]: $*" >&2
  exit 1
}
ok() { echo "ok   [$case_name] $*"; }
skip() {
  echo "SKIP [$case_name]: $*"
  exit 77
}
# must_reject WHAT PATTERN CHECK ARGS...: CHECK must fail on WHAT (run in a
# subshell, so its `fail` ends only the subshell), for the reason PATTERN
# (grep -E) says; its FAIL line is shown.
must_reject() {
  local what=$1 pat=$2 out why
  shift 2
  if out=$( ("$@") 2>&1); then
    printf '%s\n' "$out" | tail -5
    fail "the check '$1' passed on $what: it cannot tell a broken installation"
  fi
  why=$(printf '%s\n' "$out" | grep -m1 '^FAIL' | sed 's/^FAIL \[[^]]*\]: //')
  grep -Eq -- "$pat" <<<"$why" || fail "the check '$1' failed on $what, but not for the expected reason ($pat): $why"
  echo "ok   [$case_name] rejects $what: $(cut -c1-200 <<<"$why")"
}
# inside PATH DIR: PATH (resolved) is DIR (resolved) or under it.
inside() {
  local p d
  p=$(realpath -m -- "$1") d=$(realpath -m -- "$2")
  [ "$p" = "$d" ] || [[ $p == "$d"/* ]]
}
# run_logged LOG CMD...: CMD with its output in LOG.
run_logged() {
  local log=$1
  shift
  "$@" >"$log" 2>&1
}
need() { command -v "$1" >/dev/null || fail "$1 is not installed (tools/test installs $2)"; }

lib_so=libebbmalloc.so.$major
install_to() {  # PREFIX
  run_logged "$tmp/install.log" cmake --install "$build" --prefix "$1" ||
    { cat "$tmp/install.log"; fail "cmake --install $build --prefix $1 failed"; }
}
# copy_without PREFIX NEW FILE...: a copy of the installation without FILEs.
copy_without() {
  local from=$1 to=$2
  shift 2
  cp -a "$from" "$to" || fail "cannot copy $from"
  local f
  for f in "$@"; do rm -f "$to/$f"; done
}
# served OUTPUT KIND PREFIX: the consumer's line says ebbmalloc of this
# version served it, from the library under PREFIX (KIND shared) or linked
# in (KIND static).
served() {
  local out=$1 kind=$2 prefix=$3 line lib
  line=$(grep -m1 '^consumer: version=' <<<"$out") || fail "the $kind consumer printed no result: $out"
  [[ $line == *"version=ebbmalloc $version "* ]] || fail "the $kind consumer reports another version: $line"
  grep -q 'NOT served' <<<"$out" && fail "the $kind consumer was not served by ebbmalloc: $line"
  lib=${line##*library=}
  if [ "$kind" = shared ]; then
    [ "$lib" != none ] || fail "the shared consumer has no libebbmalloc.so mapped"
    inside "$lib" "$prefix" || fail "the shared consumer loaded $lib, not the library under $prefix"
  else
    [ "$lib" = none ] || fail "the static consumer mapped $lib"
  fi
}

# live_view EBBTOP PID: EBBTOP --once --json shows PID (a python3 holding
# 16 MiB) within a bounded wait (the process starts, execs, allocates).
live_view() {
  local top=$1 pid=$2
  for _ in $(seq 600); do
    if timeout 30 "$top" --once --json "$pid" >"$tmp/out" 2>"$tmp/err" &&
      python3 -c 'import json,sys; s=json.loads(open(sys.argv[1]).readline()); sys.exit(not (s["pid"] == int(sys.argv[2]) and s["live_bytes"] >= 16 << 20))' \
        "$tmp/out" "$pid" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "the live process exited: $(tail -3 "$tmp/bg.log")"
    sleep 0.1
  done
  fail "$top --once --json $pid never showed the process holding 16 MiB: $(cat "$tmp/err") $(head -c 300 "$tmp/out")"
}

# ---------------------------------------------------------------------------
case $case_name in

layout)
  # Under PREFIX (the configured prefix is CFG: the .pc names it).
  check_layout() {
    local P=$1 cfg=$2 f
    for f in "$EBB_LIBDIR/libebbmalloc.so.$version" "$EBB_LIBDIR/libebbmalloc.a" \
             "$EBB_INCLUDEDIR/ebbmalloc.h" "$EBB_INCLUDEDIR/ebbmalloc_live.h" \
             "$EBB_BINDIR/ebbmalloc" "$EBB_BINDIR/ebbrun" "$EBB_BINDIR/ebbtop" \
             "$EBB_LIBEXECDIR/ebbmalloc/phase" \
             "$EBB_LIBDIR/cmake/ebbmalloc/ebbmalloc-config.cmake" \
             "$EBB_LIBDIR/cmake/ebbmalloc/ebbmalloc-config-version.cmake" \
             "$EBB_LIBDIR/cmake/ebbmalloc/ebbmalloc-targets.cmake" \
             "$EBB_LIBDIR/pkgconfig/ebbmalloc.pc" \
             "$EBB_MANDIR/man1/ebbmalloc.1.gz" "$EBB_MANDIR/man1/ebbrun.1.gz" \
             "$EBB_MANDIR/man1/ebbtop.1.gz" "$EBB_MANDIR/man3/ebbmalloc.3.gz" \
             "$EBB_DOCDIR/README.md" "$EBB_DOCDIR/docs/DESIGN.md" "$EBB_DOCDIR/tools/README.md"; do
      [ -f "$P/$f" ] || fail "$P/$f was not installed"
    done
    for f in ebbmalloc ebbrun ebbtop; do
      [ -x "$P/$EBB_BINDIR/$f" ] || fail "$P/$EBB_BINDIR/$f is not executable"
    done
    [ "$(readlink "$P/$EBB_LIBDIR/$lib_so")" = "libebbmalloc.so.$version" ] ||
      fail "$EBB_LIBDIR/$lib_so is not a link to libebbmalloc.so.$version"
    [ "$(readlink "$P/$EBB_LIBDIR/libebbmalloc.so")" = "$lib_so" ] ||
      fail "$EBB_LIBDIR/libebbmalloc.so (for -lebbmalloc) is not a link to $lib_so"
    local soname needed
    soname=$(readelf -d "$P/$EBB_LIBDIR/libebbmalloc.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "$lib_so" ] || fail "the library's soname is '$soname', not $lib_so"
    needed=$(readelf -d "$P/$EBB_LIBDIR/libebbmalloc.so.$version" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    [ "$needed" = "libc.so.6 " ] || fail "the library needs '$needed', not libc.so.6 alone"
    # The tools carry their C++ runtime: libc (libm, the dynamic linker) only.
    for f in "$EBB_BINDIR/ebbrun" "$EBB_BINDIR/ebbtop" "$EBB_LIBEXECDIR/ebbmalloc/phase"; do
      needed=$(readelf -d "$P/$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -Ev '^(libc\.so\.6|libm\.so\.6|ld-linux.*\.so\.2)$' | tr '\n' ' ')
      [ -z "$needed" ] || fail "$f needs $needed (the package would depend on more than libc6)"
    done
    grep -qx "prefix=$cfg" "$P/$EBB_LIBDIR/pkgconfig/ebbmalloc.pc" ||
      fail "ebbmalloc.pc says $(grep -m1 '^prefix=' "$P/$EBB_LIBDIR/pkgconfig/ebbmalloc.pc"), not prefix=$cfg"
    # No path of the build machine's source or build tree in what runs
    # (debug information aside: it names the sources by design).
    local file text
    while IFS= read -r -d '' file; do
      if [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = "177ELF" ] || [[ $file == *.a ]]; then
        objcopy --strip-debug "$file" "$tmp/stripped" 2>/dev/null || fail "objcopy cannot read $file"
        text=$tmp/stripped
      else
        [[ $file == */"$EBB_DOCDIR"/* ]] && continue
        text=$file
      fi
      grep -qaF -e "$src" -e "$build" "$text" && fail "${file#"$P"/} contains a path of the build tree ($src)"
    done < <(find "$P" -type f -print0)
    return 0
  }
  install_to "$tmp/p"
  check_layout "$tmp/p" "$tmp/p"
  ok "cmake --install --prefix: $(find "$tmp/p" -type f | wc -l) files, $lib_so -> libebbmalloc.so.$version, needs libc.so.6 only"
  cfg=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
  run_logged "$tmp/destdir.log" env DESTDIR="$tmp/dest" cmake --install "$build" ||
    { cat "$tmp/destdir.log"; fail "DESTDIR=... cmake --install failed"; }
  check_layout "$tmp/dest$cfg" "$cfg"
  ok "DESTDIR: everything under \$DESTDIR$cfg, ebbmalloc.pc says prefix=$cfg"
  copy_without "$tmp/p" "$tmp/nolib" "$EBB_LIBDIR/libebbmalloc.so.$version"
  must_reject "an installation without its library" "libebbmalloc.so.$version was not installed" check_layout "$tmp/nolib" "$tmp/p"
  copy_without "$tmp/p" "$tmp/buildpath"
  echo "# $build/lib" >>"$tmp/buildpath/$EBB_BINDIR/ebbmalloc"
  must_reject "a launcher naming the build tree" "ebbmalloc contains a path of the build tree" check_layout "$tmp/buildpath" "$tmp/p"
  must_reject "a .pc of the wrong prefix" "ebbmalloc.pc says prefix=" check_layout "$tmp/p" /usr/elsewhere
  ;;

cmake)
  # A C-only project: find_package, both targets, built and run.
  check_cmake() {  # PREFIX [VERSION]
    local P=$1 want=${2:-} d
    d=$(mktemp -d -p "$tmp")
    run_logged "$d.configure" cmake -S "$src/test/install" -B "$d" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$P" -DEBB_WANT_VERSION="$want" ||
      fail "find_package(ebbmalloc${want:+ $want}) with CMAKE_PREFIX_PATH=$P: $(grep -m1 -A4 'CMake Error' "$d.configure" | tr -s ' \n' ' ' | cut -c1-300)"
    local dir
    dir=$(sed -n 's/^ebbmalloc_DIR:PATH=//p' "$d/CMakeCache.txt")
    inside "$dir" "$P" || fail "find_package found ebbmalloc in $dir, not under $P"
    run_logged "$d.build" cmake --build "$d" --verbose ||
      fail "building the consumers failed: $(grep -m3 -i 'error' "$d.build" | tr '\n' ' ')"
    grep -E -- '-o consumer_static( |$)' "$d.build" | grep -q -- '-pthread' ||
      fail "ebbmalloc::static did not bring -pthread to the link: $(grep -E -- '-o consumer_static' "$d.build")"
    local out
    out=$("$d/consumer_shared" 2>&1) || fail "consumer_shared failed: $out"
    served "$out" shared "$P"
    out=$("$d/consumer_static" 2>&1) || fail "consumer_static failed: $out"
    served "$out" static "$P"
  }
  install_to "$tmp/p"
  check_cmake "$tmp/p" "$major.1"
  ok "find_package(ebbmalloc $major.1): ebbmalloc::shared loads $lib_so from the prefix, ebbmalloc::static links it in with -pthread; both served"
  cp -a "$tmp/p" "$tmp/moved"
  check_cmake "$tmp/moved"
  ok "the package is relocatable: a copy of the prefix is found and used where it is"
  mkdir "$tmp/empty"
  must_reject "a wrong prefix (an empty directory)" "Could not find a package configuration file|not under" check_cmake "$tmp/empty"
  copy_without "$tmp/p" "$tmp/nolib" "$EBB_LIBDIR/libebbmalloc.so.$version"
  must_reject "a prefix without its library" "libebbmalloc.so.$version.* (but this file )?does not exist|references the file" check_cmake "$tmp/nolib"
  must_reject "a request for version $((major + 1)) (SameMajorVersion)" "compatible with requested version" check_cmake "$tmp/p" "$((major + 1)).0"
  ;;

pkgconfig)
  need pkg-config pkg-config
  # PREFIX PCDIR: the .pc in PCDIR (and nothing else) describes PREFIX.
  check_pc() {
    local P=$1 pcdir=$2 out libdir libs
    export PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH=
    out=$(pkg-config --validate ebbmalloc 2>&1) || fail "ebbmalloc.pc does not validate: $(head -1 <<<"$out")"
    [ "$(pkg-config --modversion ebbmalloc)" = "$version" ] ||
      fail "pkg-config --modversion says '$(pkg-config --modversion ebbmalloc)', not $version"
    libdir=$(pkg-config --variable=libdir ebbmalloc)
    inside "$libdir" "$P" || fail "the .pc's libdir is '$libdir', not under $P"
    libs=" $(pkg-config --libs ebbmalloc) "
    [[ $libs == *" -L$libdir "* && $libs == *" -lebbmalloc "* ]] || fail "pkg-config --libs gives '$libs', not -L$libdir -lebbmalloc"
    [[ " $(pkg-config --static --libs ebbmalloc) " == *" -pthread "* ]] ||
      fail "pkg-config --static --libs gives '$(pkg-config --static --libs ebbmalloc)', without -pthread"
    local cflags
    cflags=$(pkg-config --cflags ebbmalloc)
    # shellcheck disable=SC2046,SC2086
    cc -O2 "$src/test/install/consumer.c" $cflags $(pkg-config --libs ebbmalloc) -o "$tmp/pc_shared" 2>"$tmp/cc.log" ||
      fail "cc \$(pkg-config --cflags --libs ebbmalloc) failed: $(head -3 "$tmp/cc.log" | tr '\n' ' ')"
    out=$(LD_LIBRARY_PATH=$libdir "$tmp/pc_shared" 2>&1) || fail "the pkg-config consumer failed: $out"
    served "$out" shared "$P"
    # shellcheck disable=SC2046,SC2086
    cc -O2 -static "$src/test/install/consumer.c" $cflags $(pkg-config --static --libs ebbmalloc) -o "$tmp/pc_static" 2>"$tmp/cc.log" ||
      fail "cc -static \$(pkg-config --static --libs ebbmalloc) failed: $(head -3 "$tmp/cc.log" | tr '\n' ' ')"
    readelf -l "$tmp/pc_static" | grep -q INTERP && fail "the --static consumer is not statically linked"
    out=$("$tmp/pc_static" 2>&1) || fail "the --static consumer failed: $out"
    served "$out" static "$P"
  }
  install_to "$tmp/p"
  pc=$tmp/p/$EBB_LIBDIR/pkgconfig
  check_pc "$tmp/p" "$pc"
  ok "ebbmalloc.pc validates, version $version; cc \$(pkg-config --cflags --libs) loads $lib_so from the prefix; cc -static \$(pkg-config --static --libs) (-pthread) links it in; both served"
  mkdir "$tmp/truncated" "$tmp/undefined" "$tmp/wrongprefix"
  head -c 100 "$pc/ebbmalloc.pc" >"$tmp/truncated/ebbmalloc.pc"
  must_reject "a truncated .pc" "does not validate" check_pc "$tmp/p" "$tmp/truncated"
  sed 's/\${libdir}/${libdirr}/' "$pc/ebbmalloc.pc" >"$tmp/undefined/ebbmalloc.pc"
  must_reject "a .pc whose Libs name an undefined variable" "pkg-config --libs gives" check_pc "$tmp/p" "$tmp/undefined"
  sed 's|^prefix=.*|prefix=/nonexistent|' "$pc/ebbmalloc.pc" >"$tmp/wrongprefix/ebbmalloc.pc"
  must_reject "a .pc of a wrong prefix" "libdir is '/nonexistent" check_pc "$tmp/p" "$tmp/wrongprefix"
  copy_without "$tmp/p" "$tmp/nolib" "$EBB_LIBDIR/libebbmalloc.so.$version" "$EBB_LIBDIR/$lib_so" \
    "$EBB_LIBDIR/libebbmalloc.so" "$EBB_LIBDIR/libebbmalloc.a"
  sed -i "s|^prefix=.*|prefix=$tmp/nolib|" "$tmp/nolib/$EBB_LIBDIR/pkgconfig/ebbmalloc.pc"
  must_reject "a prefix without the libraries" "failed: .*(cannot find -lebbmalloc|undefined reference)" check_pc "$tmp/nolib" "$tmp/nolib/$EBB_LIBDIR/pkgconfig"
  ;;

launcher)
  need python3 python3
  # LAUNCHER PREFIX: runs real programs with the library under PREFIX.
  check_launcher() {
    local L=$1 P=$2 out ref lib
    [ -x "$L" ] || fail "$L is not there"
    # Which library the command got (the command's own /proc/self/maps).
    lib=$("$L" cat /proc/self/maps 2>"$tmp/err" | grep -m1 -o '/.*/libebbmalloc\.so[.0-9]*$')
    [ -n "$lib" ] || fail "the launched command has no libebbmalloc mapped: $(head -2 "$tmp/err" | tr '\n' ' ')"
    inside "$lib" "$P" || fail "the launcher preloaded $lib, not the library under $P"
    # python3 and sort, output identical to a run without it, served.
    local py='import json,hashlib; d={str(i): [i]*10 for i in range(20000)}; print(hashlib.sha256(json.dumps(d).encode()).hexdigest())'
    ref=$(python3 -c "$py")
    out=$("$L" --verbose python3 -c "$py" 2>"$tmp/err") || fail "ebbmalloc python3 failed: $(tail -2 "$tmp/err")"
    [ "$out" = "$ref" ] || fail "python3 printed '$out' under the launcher, '$ref' without"
    grep -q '^ebbmalloc: heap: first allocation served' "$tmp/err" || fail "python3 was not served by ebbmalloc: $(head -3 "$tmp/err" | tr '\n' ' ')"
    seq 1 50000 | awk '{print ($1 * 7919) % 100003}' >"$tmp/numbers"
    ref=$(sort -n "$tmp/numbers" | md5sum)
    out=$("$L" --verbose sort -n "$tmp/numbers" 2>"$tmp/err" | md5sum)
    [ "$out" = "$ref" ] || fail "sort gave other output under the launcher"
    grep -q '^ebbmalloc: heap: first allocation served' "$tmp/err" || fail "sort was not served by ebbmalloc: $(head -3 "$tmp/err" | tr '\n' ' ')"
    "$L" --stats python3 -c 'x = [bytes(100) for _ in range(1000)]' 2>"$tmp/err" || fail "ebbmalloc --stats python3 failed"
    grep -q '^ebbmalloc statistics' "$tmp/err" || fail "--stats printed no statistics: $(head -2 "$tmp/err" | tr '\n' ' ')"
    # sort closes its standard error before it exits (coreutils' close_stdout):
    # the statistics still come, on the copy taken at start-up.
    "$L" --stats sort -n "$tmp/numbers" 2>"$tmp/err" >/dev/null || fail "ebbmalloc --stats sort failed"
    grep -q '^ebbmalloc statistics' "$tmp/err" || fail "--stats sort printed no statistics (stderr closed before exit?)"
  }
  install_to "$tmp/p"
  L=$tmp/p/$EBB_BINDIR/ebbmalloc
  check_launcher "$L" "$tmp/p"
  ok "python3 and sort under the launcher: same output, served, $lib_so from the prefix; --stats prints statistics"
  out=$("$L" --stats=json true 2>&1 >/dev/null)
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["mapped_bytes"] >= 0' "$out" 2>/dev/null ||
    fail "--stats=json printed '$out', not one JSON object"
  "$L" sh -c 'exit 7'
  [ $? = 7 ] || fail "the launcher did not return the command's exit status (7)"
  # (In a subshell that reaps it, so that bash's "Terminated" goes nowhere.)
  rc=$( ("$L" -- sh -c 'kill -TERM $$'; echo $?) 2>/dev/null)
  [ "$rc" = 143 ] || fail "a command killed by SIGTERM gave $rc, not 143"
  cc -shared -fPIC -x c /dev/null -o "$tmp/other.so" || fail "cannot build an empty library"
  out=$(LD_PRELOAD=$tmp/other.so "$L" printenv LD_PRELOAD)
  [ "$out" = "$(realpath "$tmp/p/$EBB_LIBDIR")/$lib_so:$tmp/other.so" ] ||
    fail "LD_PRELOAD under the launcher is '$out', not the library in front of the one already set"
  ok "--stats=json, exit status passed on (7, 143), LD_PRELOAD kept behind the library"
  "$L" --help | grep -q '^usage: ebbmalloc' || fail "--help prints no usage"
  [ "$("$L" --version | head -1)" = "ebbmalloc $version" ] || fail "--version says '$("$L" --version | head -1)'"
  "$L" --version | grep -qF "library: $(realpath "$tmp/p/$EBB_LIBDIR")/$lib_so" || fail "--version names no library in the prefix"
  # Errors: one line each, status 125 (usage) or 127 (no library, no command).
  expect_error() {  # STATUS PATTERN CMD...
    local want=$1 pat=$2 rc
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, not $want"
    [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q -- "$pat" "$tmp/err" ||
      fail "'$*' did not print one line matching '$pat': $(cat "$tmp/err")"
    [ ! -s "$tmp/out" ] || fail "'$*' printed on stdout"
  }
  expect_error 125 "unknown option '--bogus'" "$L" --bogus true
  expect_error 125 "no command" "$L" --stats
  expect_error 125 "takes 'json'" "$L" --stats=xml true
  expect_error 127 "no-such-command: command not found" "$L" no-such-command
  expect_error 127 "library /nonexistent/libebbmalloc.so.0 is missing" env EBB_LIBRARY=/nonexistent/libebbmalloc.so.0 "$L" true
  ok "--help, --version; errors are one line with status 125 or 127"
  # Relocated and symlinked: the library is found from the launcher's real place.
  cp -a "$tmp/p" "$tmp/moved"
  check_launcher "$tmp/moved/$EBB_BINDIR/ebbmalloc" "$tmp/moved"
  mkdir "$tmp/elsewhere"
  ln -s "$tmp/moved/$EBB_BINDIR/ebbmalloc" "$tmp/elsewhere/ebbmalloc"
  check_launcher "$tmp/elsewhere/ebbmalloc" "$tmp/moved"
  ok "a copy of the prefix, and a symlink to its launcher, use the copy's library"
  must_reject "a launcher of another prefix" "not the library under $tmp/p" check_launcher "$tmp/moved/$EBB_BINDIR/ebbmalloc" "$tmp/p"
  copy_without "$tmp/p" "$tmp/nolib" "$EBB_LIBDIR/$lib_so"
  must_reject "an installation without its library" "no libebbmalloc mapped: ebbmalloc: the ebbmalloc library .* is missing" check_launcher "$tmp/nolib/$EBB_BINDIR/ebbmalloc" "$tmp/nolib"
  expect_error 127 "is missing (reinstall ebbmalloc" "$tmp/nolib/$EBB_BINDIR/ebbmalloc" true
  ok "without its library the launcher says so in one line (status 127)"
  ;;

tools)
  need python3 python3
  # FROM EXPECT: the ebbrun installed under FROM preloads the library under
  # EXPECT, and the command is served.
  check_ebbrun() {
    local P=$1 want=$2 lib
    "$P/$EBB_BINDIR/ebbrun" --alloc ebb --env ebb:EBBMALLOC_VERBOSE=1 -- python3 -c 'print(len([bytes(100) for _ in range(10000)]))' \
      >"$tmp/out" 2>"$tmp/err" || fail "ebbrun --alloc ebb failed: $(grep -m2 'ebbrun:' "$tmp/err" | tr '\n' ' ')"
    lib=$(sed -n 's/^ebbrun: \[1\/1\] ebb (LD_PRELOAD \(.*\))$/\1/p' "$tmp/err")
    [ -n "$lib" ] || fail "ebbrun did not say which library it preloaded: $(head -3 "$tmp/err" | tr '\n' ' ')"
    inside "$lib" "$want" || fail "the installed ebbrun preloaded $lib, not the library under $want"
    grep -q '^ebbmalloc: heap: first allocation served' "$tmp/err" || fail "the command was not served by ebbmalloc"
    grep -q '^ebb ' "$tmp/out" || fail "ebbrun printed no table row for ebb"
  }
  install_to "$tmp/p"
  check_ebbrun "$tmp/p" "$tmp/p"
  ok "the installed ebbrun preloads $lib_so from its prefix, and the command is served"
  "$tmp/p/$EBB_BINDIR/ebbrun" --help | grep -q '^usage: ebbrun' || fail "ebbrun --help prints no usage"
  cp -a "$tmp/p" "$tmp/moved"
  check_ebbrun "$tmp/moved" "$tmp/moved"
  must_reject "an ebbrun of another prefix" "not the library under $tmp/p" check_ebbrun "$tmp/moved" "$tmp/p"
  copy_without "$tmp/p" "$tmp/nolib" "$EBB_LIBDIR/$lib_so"
  must_reject "an installation without its library" "ebbrun --alloc ebb failed: ebbrun: skipping ebb" check_ebbrun "$tmp/nolib" "$tmp/nolib"
  "$tmp/nolib/$EBB_BINDIR/ebbrun" --alloc ebb -- true >/dev/null 2>"$tmp/err" && fail "ebbrun without its library exited 0"
  grep -q "skipping ebb: $tmp/nolib/$EBB_LIBDIR/$lib_so not found (it is installed with this ebbrun" "$tmp/err" ||
    fail "ebbrun without its library did not say so: $(cat "$tmp/err")"
  ok "relocated it uses the copy's library; without it, it says which file is missing"
  # The phase workload of `ebbrun demo`, installed beside it.
  out=$("$tmp/p/$EBB_BINDIR/ebbmalloc" "$tmp/p/$EBB_LIBEXECDIR/ebbmalloc/phase" --scale 0.01 --idle-ms 50 --tail-idle-ms 10 2>&1)
  grep -q '^verify phase checksum=[0-9a-f]* OK' <<<"$out" || fail "the installed phase workload failed: $(tail -2 <<<"$out")"
  copy_without "$tmp/p" "$tmp/nophase" "$EBB_LIBEXECDIR/ebbmalloc/phase"
  "$tmp/nophase/$EBB_BINDIR/ebbrun" demo --alloc glibc >/dev/null 2>"$tmp/err" && fail "ebbrun demo without phase exited 0"
  grep -q "phase workload is missing: $tmp/nophase/$EBB_LIBEXECDIR/ebbmalloc/phase not found" "$tmp/err" ||
    fail "ebbrun demo looked for phase elsewhere: $(cat "$tmp/err")"
  ok "the installed phase workload runs under the launcher; ebbrun demo looks for it in its prefix"
  # ebbtop against a live process started by the installed launcher.
  live=$tmp/live
  EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR=$live EBBMALLOC_LIVE_STATS_MS=50 \
    "$tmp/p/$EBB_BINDIR/ebbmalloc" python3 -c 'import time; x = [bytes(4096) for _ in range(4096)]; time.sleep(120)' \
    >"$tmp/bg.log" 2>&1 &
  bg_pid=$!
  live_view "$tmp/p/$EBB_BINDIR/ebbtop" "$bg_pid"
  timeout 30 "$tmp/p/$EBB_BINDIR/ebbtop" --once "$bg_pid" >"$tmp/out" 2>&1 || fail "ebbtop --once failed: $(cat "$tmp/out")"
  grep -q 'process RSS' "$tmp/out" || fail "ebbtop --once printed no view: $(head -3 "$tmp/out")"
  kill "$bg_pid"
  wait "$bg_pid" 2>/dev/null
  bg_pid=""
  ok "the installed ebbtop shows a process started by the installed launcher (EBBMALLOC_LIVE_STATS=1)"
  ;;

man)
  command -v groff >/dev/null || skip "groff is not installed (tools/test installs groff-base)"
  install_to "$tmp/p"
  # PAGE.gz: renders without a single groff warning, with a NAME section.
  check_page() {
    local page=$1 out
    [ -f "$page" ] || fail "$page was not installed"
    out=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1) || fail "groff failed on $page"
    [ -z "$out" ] || fail "groff warns on ${page##*/}: $(head -2 <<<"$out" | tr '\n' ' ')"
    zcat "$page" | groff -man -Tascii -P-cbu 2>/dev/null | grep -qx 'NAME' || fail "${page##*/} has no NAME section"
    zcat "$page" | grep -q "^\.TH .*\"ebbmalloc $version\"" || fail "${page##*/} does not carry version $version"
  }
  for p in man1/ebbmalloc.1 man1/ebbrun.1 man1/ebbtop.1 man3/ebbmalloc.3; do
    check_page "$tmp/p/$EBB_MANDIR/$p.gz"
    if command -v man >/dev/null; then
      MANWIDTH=80 man -l "$tmp/p/$EBB_MANDIR/$p.gz" 2>/dev/null | grep -q . || fail "man -l ${p##*/} shows nothing"
    fi
  done
  ok "ebbmalloc(1), ebbrun(1), ebbtop(1), ebbmalloc(3): no groff warning (-ww), version $version"
  zcat "$tmp/p/$EBB_MANDIR/man3/ebbmalloc.3.gz" | sed 's/^\.SH NAME/.XX bogus\n\\qNAME/' | gzip >"$tmp/broken.3.gz"
  must_reject "a page with an unknown macro and escape" "groff warns on" check_page "$tmp/broken.3.gz"
  # Every EBBMALLOC_* variable the library reads, and every one in the
  # README's tuning table, is described in ebbmalloc(3).
  vars=$( (sed -n 's/^ *{"\([A-Z_]*\)", &Options::.*/\1/p; s/.*strcmp(key, "\([A-Z_]*\)").*/\1/p' "$src/lib/api/options.cpp" |
    sed 's/^/EBBMALLOC_/'; grep -o '^| `EBBMALLOC_[A-Z_]*`' "$src/README.md" | tr -d '|` ') | sort -u)
  [ "$(wc -l <<<"$vars")" -ge 15 ] || fail "found only $(wc -l <<<"$vars") EBBMALLOC_* variables in options.cpp and README"
  check_vars() {  # PAGE.gz: an entry for each of $vars
    local text v
    text=$(zcat "$1" | groff -man -Tascii -P-cbu 2>/dev/null)
    for v in $vars; do
      grep -q "^ *$v " <<<"$text" || fail "${1##*/} does not describe $v (options.cpp, README)"
    done
  }
  check_vars "$tmp/p/$EBB_MANDIR/man3/ebbmalloc.3.gz"
  ok "ebbmalloc(3) describes all $(wc -l <<<"$vars") EBBMALLOC_* variables of options.cpp and the README"
  zcat "$tmp/p/$EBB_MANDIR/man3/ebbmalloc.3.gz" | sed 's/^\.BR EBBMALLOC_BATCH /.BR EBBMALLOC_BATCHES /' | gzip >"$tmp/nobatch.3.gz"
  must_reject "a page without EBBMALLOC_BATCH" "does not describe EBBMALLOC_BATCH" check_vars "$tmp/nobatch.3.gz"
  ;;

deb | deb_install)
  need dpkg-deb dpkg
  command -v dpkg-shlibdeps >/dev/null || fail "dpkg-shlibdeps is not installed (tools/test installs dpkg-dev): the .deb would have no Depends"
  if [ "$case_name" = deb_install ]; then
    if [ "$(id -u)" != 0 ] || [ "${CI:-}" != true ]; then
      skip "dpkg -i of the package needs root and CI=true (a disposable machine); here uid=$(id -u), CI='${CI:-}'"
    fi
    dpkg -s ebbmalloc >/dev/null 2>&1 && skip "a package ebbmalloc is installed already: not replacing it"
  fi
  run_logged "$tmp/cpack.log" cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" ||
    { tail -20 "$tmp/cpack.log"; fail "cpack -G DEB failed"; }
  arch=$(dpkg --print-architecture)
  deb=$tmp/pkg/ebbmalloc_${version}_$arch.deb
  [ -f "$deb" ] || fail "cpack made no $deb: $(ls "$tmp/pkg")"
  # DEB: the metadata and the files a user of the package needs.
  check_deb() {
    local deb=$1 info
    info=$(dpkg-deb -I "$deb") || fail "dpkg-deb -I cannot read $deb"
    field() { sed -n "s/^ $1: //p" <<<"$info"; }
    [ "$(field Package)" = ebbmalloc ] || fail "Package is '$(field Package)'"
    [ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', not $version"
    [ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)'"
    [ -n "$(field Maintainer)" ] || fail "no Maintainer"
    grep -Eqx 'libc6 \(>= [0-9.]+\)' <<<"$(field Depends)" ||
      fail "Depends is '$(field Depends)', not libc6 alone (is dpkg-shlibdeps installed?)"
    local files f
    files=$(dpkg-deb -c "$deb" | awk '{print $6}') || fail "dpkg-deb -c cannot read $deb"
    for f in "usr/$EBB_LIBDIR/libebbmalloc.so.$version" "usr/$EBB_LIBDIR/$lib_so" "usr/$EBB_LIBDIR/libebbmalloc.so" \
             "usr/$EBB_LIBDIR/libebbmalloc.a" "usr/$EBB_INCLUDEDIR/ebbmalloc.h" "usr/$EBB_INCLUDEDIR/ebbmalloc_live.h" \
             "usr/$EBB_BINDIR/ebbmalloc" "usr/$EBB_BINDIR/ebbrun" "usr/$EBB_BINDIR/ebbtop" \
             "usr/$EBB_LIBEXECDIR/ebbmalloc/phase" \
             "usr/$EBB_LIBDIR/cmake/ebbmalloc/ebbmalloc-config.cmake" "usr/$EBB_LIBDIR/pkgconfig/ebbmalloc.pc" \
             "usr/$EBB_MANDIR/man1/ebbmalloc.1.gz" "usr/$EBB_MANDIR/man1/ebbrun.1.gz" \
             "usr/$EBB_MANDIR/man1/ebbtop.1.gz" "usr/$EBB_MANDIR/man3/ebbmalloc.3.gz" \
             "usr/$EBB_DOCDIR/README.md"; do
      grep -qx "\./$f" <<<"$files" || fail "the package lacks /$f"
    done
    f=$(grep -v '^\./usr/' <<<"$files" | grep -vx '\./') && fail "the package has files outside /usr: $f"
    return 0
  }
  check_deb "$deb"
  size=$(stat -c %s "$deb")
  ok "$(basename "$deb") ($size bytes): Package ebbmalloc, Version $version, Depends: $(dpkg-deb -f "$deb" Depends); library, headers, CMake package, .pc, tools, launcher, man pages, docs"
  mkdir "$tmp/x"
  dpkg-deb -x "$deb" "$tmp/x" || fail "dpkg-deb -x failed"
  grep -qx 'prefix=/usr' "$tmp/x/usr/$EBB_LIBDIR/pkgconfig/ebbmalloc.pc" || fail "the packaged ebbmalloc.pc is not for /usr"
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./shlibs 2>/dev/null | grep -q "^libebbmalloc $major ebbmalloc" ||
    fail "the package has no shlibs entry for $lib_so"
  ok "the packaged .pc is for /usr; shlibs names $lib_so"
  # The same check on packages that are wrong on purpose.
  dpkg-deb -R "$deb" "$tmp/bad" || fail "dpkg-deb -R failed"
  sed -i 's/^Depends: .*/&, libstdc++6 (>= 12)/' "$tmp/bad/DEBIAN/control"
  dpkg-deb --root-owner-group -b "$tmp/bad" "$tmp/bad-depends.deb" >/dev/null || fail "cannot rebuild a package"
  must_reject "a package that depends on libstdc++6 too" "Depends is .*libstdc" check_deb "$tmp/bad-depends.deb"
  sed -i 's/, libstdc++6 (>= 12)//' "$tmp/bad/DEBIAN/control"
  rm "$tmp/bad/usr/$EBB_LIBDIR/libebbmalloc.so.$version"
  dpkg-deb --root-owner-group -b "$tmp/bad" "$tmp/bad-nolib.deb" >/dev/null || fail "cannot rebuild a package"
  must_reject "a package without the library" "lacks /usr/$EBB_LIBDIR/libebbmalloc.so.$version" check_deb "$tmp/bad-nolib.deb"

  [ "$case_name" = deb_install ] || exit 0
  # ---- on a disposable machine: install it, use it, remove it ----
  removed=0
  remove_pkg() { [ "$removed" = 1 ] || dpkg -r ebbmalloc >/dev/null 2>&1; }
  trap 'remove_pkg; cleanup' EXIT
  run_logged "$tmp/dpkg.log" dpkg -i "$deb" || { cat "$tmp/dpkg.log"; fail "dpkg -i $deb failed"; }
  [ "$(dpkg-query -W -f '${Status} ${Version}' ebbmalloc)" = "install ok installed $version" ] ||
    fail "dpkg says: $(dpkg-query -W -f '${Status} ${Version}' ebbmalloc)"
  sys_lib=/usr/$EBB_LIBDIR/$lib_so
  # (The cache may name it by another path to the same file: /lib -> usr/lib.)
  cached=$(ldconfig -p | sed -n "s|^[[:space:]]*$lib_so (.*) => ||p" | head -1)
  [ -n "$cached" ] && [ "$(realpath "$cached")" = "$(realpath "$sys_lib")" ] ||
    fail "$lib_so is not in the dynamic linker's cache after dpkg -i (ldconfig): '$cached'"
  ok "dpkg -i: installed, $sys_lib in the linker cache"
  for t in ebbmalloc ebbrun ebbtop; do
    [ "$(command -v "$t")" = "/usr/$EBB_BINDIR/$t" ] || fail "$t on PATH is '$(command -v "$t")', not /usr/$EBB_BINDIR/$t"
  done
  py='import json,hashlib; d={str(i): [i]*10 for i in range(20000)}; print(hashlib.sha256(json.dumps(d).encode()).hexdigest())'
  ref=$(python3 -c "$py")
  out=$(EBBMALLOC_VERBOSE=1 ebbmalloc python3 -c "$py" 2>"$tmp/err") || fail "ebbmalloc python3 failed: $(tail -2 "$tmp/err")"
  [ "$out" = "$ref" ] || fail "python3 printed '$out' under ebbmalloc, '$ref' without"
  grep -q '^ebbmalloc: heap: first allocation served' "$tmp/err" || fail "ebbmalloc python3 was not served by ebbmalloc"
  lib=$(ebbmalloc cat /proc/self/maps | grep -m1 -o '/.*/libebbmalloc\.so[.0-9]*$')
  inside "$lib" /usr || fail "the installed launcher preloaded $lib"
  ok "ebbmalloc python3 -c ...: same output, served by $lib"
  ebbrun --help | grep -q '^usage: ebbrun' || fail "ebbrun --help prints no usage"
  ebbrun --alloc ebb --quiet -- python3 -c 'print(1)' >"$tmp/out" 2>"$tmp/err" || fail "ebbrun --alloc ebb failed: $(tail -2 "$tmp/err")"
  grep -qF "ebb (LD_PRELOAD $sys_lib)" "$tmp/err" || fail "the installed ebbrun did not preload $sys_lib: $(head -2 "$tmp/err")"
  ok "ebbrun --help; ebbrun --alloc ebb preloads $sys_lib"
  EBBMALLOC_LIVE_STATS=1 EBBMALLOC_LIVE_STATS_DIR=$tmp/live EBBMALLOC_LIVE_STATS_MS=50 \
    ebbmalloc python3 -c 'import time; x = [bytes(4096) for _ in range(4096)]; time.sleep(120)' >"$tmp/bg.log" 2>&1 &
  bg_pid=$!
  live_view ebbtop "$bg_pid"
  kill "$bg_pid"
  wait "$bg_pid" 2>/dev/null
  bg_pid=""
  ok "ebbtop --once --json shows a live process (EBBMALLOC_LIVE_STATS=1)"
  if command -v man >/dev/null; then
    [ "$(man -w 3 ebbmalloc)" = "/usr/$EBB_MANDIR/man3/ebbmalloc.3.gz" ] || fail "man -w 3 ebbmalloc finds '$(man -w 3 ebbmalloc 2>&1)'"
    ok "man finds ebbmalloc(3)"
  fi
  run_logged "$tmp/dpkg.log" dpkg -r ebbmalloc || { cat "$tmp/dpkg.log"; fail "dpkg -r ebbmalloc failed"; }
  removed=1
  [ ! -e "$sys_lib" ] && [ ! -e "/usr/$EBB_BINDIR/ebbmalloc" ] || fail "dpkg -r left files behind"
  ldconfig -p | grep -q "^[[:space:]]*$lib_so (" && fail "$lib_so is still in the linker cache after dpkg -r"
  ok "dpkg -r: the files and the linker cache entry are gone"
  ;;

*)
  fail "unknown case"
  ;;
esac
exit 0
