#!/usr/bin/env bash
# bench_model.sh - helene beside the PyTorch reference, in one run on one machine:
# forward pass speed (bench_forward vs tests/ref/bench_forward.py) and the peak
# RSS of `helene score` on an OPT-125m-shaped F16 model folder (made by mkmodel).
# Run from the build folder (make bench does).  The torch half is skipped, with a
# note, when Debian's python3-torch is not installed.
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
threads=${BENCH_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "## forward pass: helene"
./bench_forward "$threads" 16 64 5
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "## forward pass: PyTorch reference (HF-style full-vocab logits)"
  /usr/bin/python3 "$srcdir/tests/ref/bench_forward.py" --threads "$threads"
else
  echo "## PyTorch reference skipped: apt-get install python3-torch to compare"
fi

echo "## peak RSS of helene score on an OPT-125m-shaped F16 model"
./mkmodel "$tmp/opt125" opt-125m F16
python3 -c "print('The quick brown fox jumps over the lazy dog. ' * 60)" > "$tmp/text.txt" 2>/dev/null ||
  yes 'The quick brown fox jumps over the lazy dog.' | head -60 > "$tmp/text.txt"
/usr/bin/time -v ./helene score --threads "$threads" --model "$tmp/opt125" "$tmp/text.txt" \
  2> "$tmp/time.txt"
rss_kib=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}' "$tmp/time.txt")
params=125239296
awk -v rss="$rss_kib" -v p="$params" 'BEGIN {
  w = p * 4 / 1048576; lim = 1.15 * w + 64;
  printf "fp32_weights_mib          %.1f\n", w;
  printf "score_peak_rss_mib        %.1f\n", rss / 1024;
  printf "limit_1.15w_plus_64_mib   %.1f\n", lim;
}'
