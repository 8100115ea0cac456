#!/usr/bin/env bash
# bench_llama.sh - a MeZO step and peak RSS on a SmolLM2-135M-shaped model
# (Llama family: 30 layers of 576, GQA 9 -> 3 heads, SwiGLU; random weights,
# F16 file, GPT-2's 50,257-token vocabulary in a tokenizer.json) beside the
# OPT-125m shape, batch 16 x 64 tokens, 2 threads.  (bench_forward prints
# both forwards.)  Run from the build folder (make bench does).
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
threads=${BENCH_THREADS:-2}
steps=${BENCH_STEPS:-6}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/bench_lib.sh"
. "$srcdir/tests/bench_opt125.sh"   # $tmp/opt125 and $tmp/long.tsv
./mkmodel "$tmp/smollm2" smollm2-135m F16 > /dev/null
echo "# $(uname -srm); $(nproc) CPUs"
printf '%-10s %-8s %14s %14s %12s\n' model method "params" "peak RSS MiB" "step ms"
for m in opt125 smollm2; do
  for opt in mezo helene; do
    /usr/bin/time -v ./helene train --model "$tmp/$m" --task sst2 --data "$tmp/long.tsv" \
      --max-tokens 63 --batch-size 16 --optimizer "$opt" --steps "$steps" --eval-every 0 \
      --threads "$threads" --log "$tmp/$m-$opt.jsonl" --headless > /dev/null 2> "$tmp/time"
    rss=$(printf '%.0f' "$(bench_rss_mib "$tmp/time")")
    params=$(./helene info --model "$tmp/$m" --json | sed -n 's/.*"n_params":\([0-9]*\).*/\1/p')
    ms=$(bench_median_step "$tmp/$m-$opt.jsonl")
    printf '%-10s %-8s %14s %14s %12s\n' "$m" "$opt" "$params" "$rss" "$ms"
  done
done
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "## PyTorch MeZO reference step, SmolLM2-135M shape (tests/ref/bench_mezo_step_llama.py)"
  (cd "$srcdir/tests/ref" && /usr/bin/python3 bench_mezo_step_llama.py --threads "$threads" --runs 2)
else
  echo "## PyTorch reference skipped: apt-get install python3-torch to compare"
fi
