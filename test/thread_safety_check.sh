#!/usr/bin/env bash
# Clang's thread-safety analysis over the files whose locks carry annotations
# (include/common/thread_annotations.h): state KDP_GUARDED_BY a mutex touched without it, or a
# KDP_REQUIRES function called without it, fails. Syntax only (no code generated), with each
# file's include paths and defines taken from the GCC build's compile_commands.json; only the
# thread-safety warnings are enabled and made errors, the GCC build owns every other warning.
# First it checks the check: a probe with one unguarded access must be refused.
#   bash test/thread_safety_check.sh            (KDP_BUILD_DIR: a configured build, default build)
# Needs clang (Debian's clang-14).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${KDP_BUILD_DIR:-build}"
CXX="${KDP_CLANG:-$(command -v clang++-14 || command -v clang++ || true)}"
[ -n "$CXX" ] || { echo "thread-safety: clang++ not found (apt-get install clang-14)" >&2; exit 1; }
DB="$BUILD_DIR/compile_commands.json"
[ -f "$DB" ] || { echo "thread-safety: $DB missing (configure $BUILD_DIR first)" >&2; exit 1; }

# Every source file that takes an annotated lock (the state it guards is touched there).
mapfile -t FILES < <(git ls-files -- 'dataplane/*.cc' 'control/*.cc' 'cni-shim/*.cc' 'include/*.cc' |
    xargs grep -l -E '\b(LockGuard|ReaderLock|WriterLock|KDP_REQUIRES)\b' || true)
[ ${#FILES[@]} -gt 0 ] || { echo "thread-safety: no annotated files found" >&2; exit 1; }

# Boost 1.74's asio looks for coroutines under clang in <experimental/coroutine>, which
# libstdc++ does not have; clang 14 implements C++20's <coroutine>, which GCC's build uses.
CHECK=(-fsyntax-only -Wno-everything -Wthread-safety -Wthread-safety-beta -Werror
    -DBOOST_ASIO_HAS_CO_AWAIT=1 -DBOOST_ASIO_HAS_STD_COROUTINE=1)

# The -I/-isystem/-D/-std arguments GCC compiles FILE with (any target that builds it).
flags_of() {
    python3 - "$DB" "$1" <<'EOF'
import json, os, shlex, sys
db, want = sys.argv[1], os.path.realpath(sys.argv[2])
for e in json.load(open(db)):
    f = os.path.realpath(os.path.join(e["directory"], e["file"]))
    if f != want:
        continue
    args = shlex.split(e["command"])
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("-I", "-isystem", "-D", "-include"):
            v = args[i + 1]
            if a in ("-I", "-isystem") and not os.path.isabs(v):
                v = os.path.join(e["directory"], v)
            out += [a, v]
            i += 2
            continue
        if a.startswith("-I") or a.startswith("-isystem"):
            p = a[2:] if a.startswith("-I") else a[8:]
            if not os.path.isabs(p):
                p = os.path.join(e["directory"], p)
            out.append(("-I" if a.startswith("-I") else "-isystem") + p)
        elif a.startswith("-D") or a.startswith("-std="):
            out.append(a)
        i += 1
    print("\n".join(out))
    sys.exit(0)
sys.exit(f"{sys.argv[2]} is not in {db}")
EOF
}

# The check must be able to fail: the probe touches guarded state without its mutex.
probe_log=$(mktemp)
trap 'rm -f "$probe_log"' EXIT
if "$CXX" "${CHECK[@]}" -std=c++20 -Iinclude test/thread_safety_probe.cc 2>"$probe_log"; then
    echo "thread-safety: the probe with an unguarded access compiled: the analysis is off" >&2
    exit 1
fi
grep -q "requires holding mutex 'mu_'" "$probe_log" || {
    cat "$probe_log" >&2
    echo "thread-safety: the probe failed for another reason than the analysis" >&2
    exit 1
}

failed=0
for f in "${FILES[@]}"; do
    mapfile -t fl < <(flags_of "$f")
    if ! "$CXX" "${CHECK[@]}" "${fl[@]}" "$f"; then
        failed=$((failed + 1))
    fi
done
printf 'thread-safety (%s): %d files, %d failed; probe refused as it must be\n' \
    "$(basename "$CXX")" ${#FILES[@]} $failed
[ $failed -eq 0 ]
