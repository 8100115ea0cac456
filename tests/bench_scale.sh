#!/usr/bin/env bash
# bench_scale.sh - ZO training as the model grows: OPT-125m, OPT-350m and
# OPT-1.3B shapes (random weights, F16 files written by ./mkmodel), batch
# 16 x 64 tokens, 2 threads.  For MeZO, HELENE and HELENE with bf16 state:
# load time (the journal's "loaded" event), the first step and the median of
# the later ones (ms_perturb + ms_forward + ms_update), and peak RSS against
# the issue's goals (MeZO <= 1.15 x fp32 weights + 64 MiB, HELENE <= 3.15 x +
# 64; bf16 state halves HELENE's m and h: 2.15 x + 64).  The last column is
# the step time per parameter-token, which stays flat if a step grows
# linearly in parameters x tokens.
#
#   tests/bench_scale.sh [shapes...]    (default: opt-125m opt-350m opt-1.3b)
#   tests/bench_scale.sh convergence    (fp32 vs bf16 state: default task, quadratic)
#
# Needs ~21 GB of RAM for HELENE at 1.3B with fp32 state, 2.6 GB of disk for
# the folder.  Run from the build folder, alone on the machine.
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
. "$srcdir/tests/bench_lib.sh"
threads=${BENCH_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "## machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1 /proc/loadavg)"

if [ "${1:-}" = convergence ]; then
  echo "## fp32 vs bf16 optimizer state: default task (dev accuracy at steps 100, 300, 500)"
  for opt in helene zo-adam hizoo; do
    for st in off on; do
      ./helene train --headless --optimizer $opt --state-bf16 $st --steps 500 --eval-every 100 \
        --threads "$threads" --log "$tmp/c.jsonl" > /dev/null 2>&1
      accs=$(awk -F'"dev_accuracy":' '/"event":"eval"/ { split($2, a, ","); s = $0;
        match(s, /"step":[0-9]+/); st = substr(s, RSTART + 7, RLENGTH - 7) + 0;
        if (st == 100 || st == 300 || st == 500) printf " %5.1f", 100 * a[1] }' "$tmp/c.jsonl")
      printf "%-10s state_bf16 %-3s dev %%:%s\n" $opt $st "$accs"
      rm -f "$tmp/c.jsonl"
    done
  done
  echo "## fp32 vs bf16 optimizer state: quadratic, exact loss after 400 steps"
  for opt in helene zo-adam hizoo; do
    for st in off on; do
      loss=$(./helene train --headless --objective quadratic --optimizer $opt --state-bf16 $st \
        --steps 400 --eval-every 0 --threads "$threads" 2>/dev/null | awk '/best loss/ {print $3}')
      printf "%-10s state_bf16 %-3s exact loss %s\n" $opt $st "$loss"
    done
  done
  exit 0
fi

shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(opt-125m opt-350m opt-1.3b)
BENCH_NO_OPT125=1
. "$srcdir/tests/bench_opt125.sh" # $tmp/long.tsv

printf "%-9s %-12s %8s %9s %9s %6s %9s %9s %7s\n" shape method load_s first_ms step_ms ratio \
  rss_mib goal_mib ns/p.tok
for shape in "${shapes[@]}"; do
  ./mkmodel "$tmp/model" "$shape" F16 > "$tmp/mk.txt"
  params=$(awk '{print $(NF-1)}' "$tmp/mk.txt")
  steps=4
  [ "$shape" = opt-1.3b ] && steps=3
  for cfg in mezo helene helene-bf16; do
    opt=${cfg%-bf16}
    bf=off
    [ "$cfg" = helene-bf16 ] && bf=on
    /usr/bin/time -v ./helene train --model "$tmp/model" --task sst2 --data "$tmp/long.tsv" \
      --max-tokens 63 --batch-size 16 --optimizer "$opt" --state-bf16 $bf --steps $steps \
      --eval-every 0 --dev-size 16 --threads "$threads" --log "$tmp/$shape-$cfg.jsonl" --headless \
      > /dev/null 2> "$tmp/$cfg.time"
    rss=$(bench_rss_mib "$tmp/$cfg.time")
    j="$tmp/$shape-$cfg.jsonl"
    load=$(awk '/"event":"loaded"/ { match($0, /"value":"[0-9.]+"/); print substr($0, RSTART + 9, RLENGTH - 10) }' "$j")
    awk -v shape="$shape" -v cfg="$cfg" -v rss="$rss" -v params="$params" -v load="$load" \
      -v first="$(bench_first_step "$j")" -v med="$(bench_median_step "$j" %.17g)" 'BEGIN {
        w = params * 4 / 1048576;
        mult = cfg == "mezo" ? 1.15 : cfg == "helene" ? 3.15 : 2.15;
        printf "%-9s %-12s %8.1f %9.0f %9.0f %6.2f %9.0f %9.0f %7.3f\n", shape, cfg, load, first,
          med, first / med, rss, mult * w + 64, med * 1e6 / (params * 16 * 64);
      }'
  done
  rm -rf "$tmp/model"
done
