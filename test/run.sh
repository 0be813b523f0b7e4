#!/usr/bin/env bash
# The whole kdp test suite (the README's test command): bash test/run.sh (re-runs under sudo)
#   setup      config/setup.sh: packages, hugepages, build/ (meson + ninja)
#   format     clang-format --dry-run --Werror on every *.h/*.cc we write
#   thread-safety  clang -Wthread-safety over the files with annotated locks (thread_safety_check.sh)
#   unit+pkt   meson test -C build --suite unit --suite pkt
#   asan       the same suites in build-asan/ (-Db_sanitize=address,undefined); KDP_NO_ASAN=1 skips
#   e2e        every test/e2e/*_test.sh, each its own process (root: netns, hugepages)
# Ends with "N passed, N failed" on a line of its own (one count per phase or e2e script) and
# exits non-zero if anything failed. Prints the elapsed time of each phase.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KDP_BUILD_DIR="${KDP_BUILD_DIR:-build}"
ASAN_DIR="${KDP_ASAN_DIR:-build-asan}"
# As config/setup.sh: ccache shared between clones of the tree (the sanitizer build is most of
# a cold run).
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}" CCACHE_NOHASHDIR=1
JOBS="${KDP_JOBS:-$(nproc)}"
LOG_DIR="$ROOT/$KDP_BUILD_DIR/test-logs"
PASSED=0
FAILED=0
FAILED_NAMES=()
T_START=$SECONDS

# phase NAME CMD...: runs CMD, prints PASS/FAIL with the elapsed time, counts it.
phase() {
    local name=$1 t0=$SECONDS rc
    shift
    printf '\n=== %s\n' "$name"
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then
        PASSED=$((PASSED + 1))
        printf -- '--- PASS %s (%ds)\n' "$name" $((SECONDS - t0))
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf -- '--- FAIL %s (exit %d, %ds)\n' "$name" $rc $((SECONDS - t0))
    fi
    return $rc
}

format_gate() {
    local files
    mapfile -t files < <(git ls-files -- 'dataplane/*.h' 'dataplane/*.cc' 'control/*.h' \
        'control/*.cc' 'cni-shim/*.h' 'cni-shim/*.cc' 'include/*.h' 'include/*.cc' 'test/*.h' \
        'test/*.cc' 'benchmarks/*.h' 'benchmarks/*.cc' 'proto/*.h' 'proto/*.cc' |
        grep -v -e '\.pb\.' -e '\.grpc\.pb\.')
    printf 'clang-format %s on %d files\n' "$(clang-format --version | grep -o '[0-9][0-9.]*' | head -n 1)" ${#files[@]}
    [ ${#files[@]} -eq 0 ] || clang-format --dry-run --Werror "${files[@]}"
}

meson_suites() {
    local dir=$1
    meson test -C "$dir" --suite unit --suite pkt --print-errorlogs --num-processes "$JOBS"
}

asan_build_and_test() {
    # Warnings stay errors here too, except -Wmaybe-uninitialized: GCC 12's sanitizer
    # instrumentation makes it fire falsely inside libstdc++ (<regex>, std::function).
    local opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false
        -Dcpp_args=-Wno-maybe-uninitialized)
    if [ ! -f "$ASAN_DIR/build.ninja" ]; then
        meson setup "$ASAN_DIR" "${opts[@]}" >"$ASAN_DIR.setup.log" 2>&1 \
            || { tail -n 30 "$ASAN_DIR.setup.log"; return 1; }
    else
        meson configure "$ASAN_DIR" "${opts[@]}" >"$ASAN_DIR.setup.log" 2>&1 \
            || { tail -n 30 "$ASAN_DIR.setup.log"; return 1; }
    fi
    local t0=$SECONDS
    ninja -C "$ASAN_DIR" -j"$JOBS" >"$ASAN_DIR.ninja.log" 2>&1 \
        || { grep -m 30 -A 5 -E 'error|FAILED' "$ASAN_DIR.ninja.log"; return 1; }
    printf 'built %s in %ds\n' "$ASAN_DIR" $((SECONDS - t0))
    meson test -C "$ASAN_DIR" --suite unit --suite pkt --print-errorlogs --num-processes "$JOBS"
}

e2e_script() {
    local script=$1 log
    log="$LOG_DIR/$(basename "$script" .sh).log"
    if bash "$script" </dev/null >"$log" 2>&1; then
        grep -E '✔|^PASS' "$log"
        return 0
    fi
    # On failure show the whole log: the failed check, the dataplane logs, the kept work dir.
    cat "$log"
    return 1
}

source "$ROOT/config/as_root.sh"
as_root "$ROOT/test/run.sh" "$@"

if ! phase setup bash config/setup.sh; then
    printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
    exit 1
fi
mkdir -p "$LOG_DIR"
phase format format_gate
phase thread-safety bash test/thread_safety_check.sh
phase "unit+pkt" meson_suites "$KDP_BUILD_DIR"
if [ "${KDP_NO_ASAN:-0}" != 1 ]; then
    phase "asan unit+pkt" asan_build_and_test
fi
for t in test/e2e/*_test.sh; do
    [ -e "$t" ] || continue
    phase "e2e $(basename "$t")" e2e_script "$t"
done

printf '\ntotal %ds' $((SECONDS - T_START))
[ $FAILED -eq 0 ] || printf ', failed: %s' "${FAILED_NAMES[*]}"
printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ $FAILED -eq 0 ]
