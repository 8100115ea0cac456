#!/usr/bin/env bash
# bench_train.sh - one ZO training step on an OPT-125m-shaped model, helene beside
# the PyTorch MeZO reference step (tests/ref/bench_mezo_step.py: per-parameter
# torch.normal with a reseeded generator, HF-style full-vocabulary logits), and
# the peak RSS of helene training with MeZO and HELENE.  Batch 16 x 64 tokens,
# 2 threads.  Run from the build folder (make bench does).
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
. "$srcdir/tests/bench_lib.sh"
threads=${BENCH_THREADS:-2}
steps=${BENCH_STEPS:-6}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the OPT-125m-shaped folder and 64-token prompts
. "${srcdir:-$(dirname "$0")/..}/tests/bench_opt125.sh"

weights_mib=$(awk 'BEGIN { printf "%.1f", 125239296 * 4 / 1048576 }')
for opt in mezo helene zo-adam hizoo zo-sgd-mmt; do
  /usr/bin/time -v ./helene train --model "$tmp/opt125" --task sst2 --data "$tmp/long.tsv" \
    --max-tokens 63 --batch-size 16 --optimizer "$opt" --steps "$steps" --eval-every 0 \
    --threads "$threads" --log "$tmp/$opt.jsonl" --headless > /dev/null 2> "$tmp/$opt.time"
  rss=$(bench_rss_mib "$tmp/$opt.time")
  med=$(bench_median_step "$tmp/$opt.jsonl" %.17g)
  first=$(bench_first_step "$tmp/$opt.jsonl")
  awk -v opt="$opt" -v rss="$rss" -v w="$weights_mib" -v med="$med" -v first="$first" 'BEGIN {
      mult = opt == "mezo" ? 1.15 : (opt == "hizoo" || opt == "zo-sgd-mmt") ? 2.15 : 3.15;
      printf "helene_%s_step_ms          %.0f\n", opt, med;
      printf "helene_%s_first_step_ms    %.0f (%.2f x a later step; goal <= 1.5)\n", opt, first, first / med;
      printf "helene_%s_peak_rss_mib     %.0f (goal <= %.2f x %.0f + 64 = %.0f)\n", opt, rss, mult, w, mult * w + 64;
    }'
done

if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "## PyTorch MeZO reference step"
  /usr/bin/time -v /usr/bin/python3 "$srcdir/tests/ref/bench_mezo_step.py" --threads "$threads" 2> "$tmp/torch.time"
  awk -F: '/Maximum resident/ {gsub(/ /, "", $2); printf "torch_mezo_peak_rss_mib     %.0f\n", $2 / 1024}' "$tmp/torch.time"
else
  echo "## PyTorch reference skipped: apt-get install python3-torch to compare"
fi
