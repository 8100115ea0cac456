#!/usr/bin/env bash
# build.sh - build the libFuzzer targets (make fuzz runs this).
#
#   tests/fuzz/build.sh SRCDIR BUILDDIR [TARGET...]
#
# Compiles base/, engine/ and data/ once with clang, coverage and ASan + UBSan
# (-fsanitize=fuzzer-no-link,address,undefined), then links each target
# tests/fuzz/fuzz_TARGET.c with libFuzzer into BUILDDIR/tests/fuzz/fuzz_TARGET.
# Needs clang with libFuzzer (Debian: apt-get install clang) and the usual
# build dependencies (pkg-config finds cJSON and OpenBLAS).  Exits 77 (skip)
# when clang cannot build a fuzzer.
set -euo pipefail
src=$(cd "${1:?usage: build.sh SRCDIR BUILDDIR [TARGET...]}" && pwd)
build=$(cd "${2:?usage: build.sh SRCDIR BUILDDIR [TARGET...]}" && pwd)
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$src"/tests/fuzz/fuzz_*.c; do
        t=$(basename "$f" .c)
        targets+=("${t#fuzz_}")
    done
fi
CLANG=${CLANG:-clang}
out=$build/tests/fuzz
obj=$out/obj
mkdir -p "$obj"

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    > "$probe/p.c"
if ! command -v "$CLANG" > /dev/null ||
    ! "$CLANG" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2> /dev/null; then
    echo "fuzz: $CLANG with libFuzzer is not available (Debian: apt-get install clang); skipped"
    exit 77
fi

san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
cflags=(-std=c11 -g -O1 -pthread -include "$build/config.h" -I"$src/base" -I"$src/engine" -I"$src/data"
        -DHELENE_DATADIR="\"$src/data\"" -DHELENE_SRCDATADIR="\"$src/data\""
        -DHELENE_TESTDIR="\"$src/tests\"" $(pkg-config --cflags libcjson openblas))
libs=($(pkg-config --libs libcjson openblas) -lm -pthread)

# the library once, instrumented for coverage (no main: libFuzzer brings it)
objs=()
for f in "$src"/base/*.c "$src"/engine/*.c "$src"/data/*.c; do
    o=$obj/$(basename "$(dirname "$f")")-$(basename "$f" .c).o
    if [ ! -e "$o" ] || [ "$f" -nt "$o" ] || [ "$build/config.h" -nt "$o" ]; then
        "$CLANG" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c "$f" -o "$o"
    fi
    objs+=("$o")
done
for t in "${targets[@]}"; do
    "$CLANG" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer "$src/tests/fuzz/fuzz_$t.c" \
        "${objs[@]}" "${libs[@]}" -o "$out/fuzz_$t"
    echo "fuzz: built $out/fuzz_$t"
done
