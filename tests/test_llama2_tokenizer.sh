#!/usr/bin/env bash
# test_llama2_tokenizer.sh - Llama 2's real vocabulary against the goldens of
# an independent implementation, npm llama-tokenizer-js@1.2.2.
#
# Its vocabulary is under Meta's licence, so it is fetched here at test time
# and never committed: from the npm registry with `npm pack`, else curl or
# wget on the registry's tarball address, checked against the tarball's
# SHA-256 pinned below.  tests/ltjs_golden then rebuilds Llama 2's
# tokenizer.json from it and checks the package's 12 golden encodings (and
# that each decodes back).  Offline users can point HELENE_LLAMA_TOKENIZER_JS
# at a llama-tokenizer.js they have.  Exit 0 pass, 1 fail, 77 skip (the
# registry unreachable and no local copy).
set -u

PKG=llama-tokenizer-js
VER=1.2.2
SHA256=ee83014ac8b379b16cf8d81e99ffcdb23dfade8c0d2e751bd06e7dc0b8476e72
URL=https://registry.npmjs.org/$PKG/-/$PKG-$VER.tgz
CHECK=${LTJS_GOLDEN:-./tests/ltjs_golden}

work=$(mktemp -d "${TMPDIR:-/tmp}/helene-ltjs-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

js=${HELENE_LLAMA_TOKENIZER_JS:-}
if [ -z "$js" ]; then
    tgz=$work/$PKG-$VER.tgz
    if command -v npm >/dev/null 2>&1 &&
        (cd "$work" && timeout 60 npm pack --silent --fetch-retries=1 --fetch-timeout=20000 "$PKG@$VER" >/dev/null 2>&1) &&
        [ -s "$tgz" ]; then
        how="npm pack"
    elif command -v curl >/dev/null 2>&1 &&
        timeout 60 curl --connect-timeout 15 -fsSL -o "$tgz" "$URL" 2>/dev/null && [ -s "$tgz" ]; then
        how=curl
    elif command -v wget >/dev/null 2>&1 &&
        timeout 60 wget -q --timeout=15 --tries=2 -O "$tgz" "$URL" 2>/dev/null && [ -s "$tgz" ]; then
        how=wget
    else
        echo "SKIP: $PKG@$VER is not reachable (no npm registry, curl or wget);" \
            "set HELENE_LLAMA_TOKENIZER_JS to a local llama-tokenizer.js"
        exit 77
    fi
    got=$(sha256sum "$tgz" | cut -d' ' -f1)
    if [ "$got" != "$SHA256" ]; then
        echo "FAIL: $PKG-$VER.tgz (by $how) has SHA-256 $got, want $SHA256"
        exit 1
    fi
    tar -xzf "$tgz" -C "$work" package/llama-tokenizer.js || exit 1
    js=$work/package/llama-tokenizer.js
    echo "fetched $PKG@$VER by $how (SHA-256 checked)"
fi
"$CHECK" "$js" "$work"
