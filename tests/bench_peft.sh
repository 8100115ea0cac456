#!/usr/bin/env bash
# bench_peft.sh - memory and step time of full-parameter vs PEFT fine-tuning
# (issue 16's table), and PEFT's accuracy on the default task.
#
#   tests/bench_peft.sh memory     peak RSS and median step time of MeZO, HELENE,
#                                  zo-adam and ft-adam, each full / LoRA / prefix,
#                                  on an OPT-125m-shaped and a RoBERTa-large-shaped
#                                  model (random weights, F16 files; batch 16 x 64
#                                  tokens, 2 threads)
#   tests/bench_peft.sh accuracy [STEPS]
#                                  dev accuracy vs steps of MeZO and HELENE on the
#                                  default model and task: full, LoRA, prefix
#   tests/bench_peft.sh            both
#
# Run from the build folder (make bench runs both).  BENCH_METHODS="mezo ..."
# picks the methods of the memory table.  Each run is alone on the machine:
# nothing else should run meanwhile.
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
. "$srcdir/tests/bench_lib.sh"
threads=${BENCH_THREADS:-2}
what=${1:-all}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "# $(uname -srm); $(nproc) CPUs; $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "# $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"


memory() {
  . "$srcdir/tests/bench_opt125.sh"   # $tmp/opt125 and $tmp/long.tsv (64-token prompts)
  ./mkmodel "$tmp/roberta-large" roberta-large F16 > /dev/null
  printf '%-14s %-8s %-22s %12s %14s %12s\n' model method peft "tuned params" "peak RSS MiB" "step ms"
  for m in opt125 roberta-large; do
    steps=4
    [ "$m" = roberta-large ] && steps=3
    for opt in ${BENCH_METHODS:-mezo helene zo-adam ft-adam}; do
      for peft in none lora:r=8,alpha=16 prefix:tokens=5; do
        log="$tmp/$m-$opt-${peft%%:*}.jsonl"
        if /usr/bin/time -v ./helene train --model "$tmp/$m" --task sst2 --data "$tmp/long.tsv" \
             --max-tokens 63 --batch-size 16 --optimizer "$opt" --peft "$peft" --steps "$steps" \
             --eval-every 0 --threads "$threads" --log "$log" --headless \
             > "$tmp/out" 2> "$tmp/time"; then
          rss=$(printf '%.0f' "$(bench_rss_mib "$tmp/time")")
          tuned=$(grep -o 'tuning [0-9]* adapter' "$tmp/time" | awk '{print $2}' | head -1 || true)
          [ -n "$tuned" ] || tuned=$(./helene info --model "$tmp/$m" --json | sed -n 's/.*"n_params":\([0-9]*\).*/\1/p')
          printf '%-14s %-8s %-22s %12s %14s %12s\n' "$m" "$opt" "$peft" "$tuned" "$rss" "$(bench_median_step "$log")"
        else
          why=$(grep -o 'the backward pass[^;]*' "$tmp/time" | head -1 || true)
          printf '%-14s %-8s %-22s %12s %14s %12s   (%s)\n' "$m" "$opt" "$peft" - - - "${why:-failed}"
        fi
      done
    done
  done
}

accuracy() {
  local steps=${1:-500}
  printf '%-8s %-22s' method peft
  for s in $(seq 0 50 "$steps"); do printf ' %5s' "$s"; done
  printf '  (dev accuracy %% at step)\n'
  for opt in mezo helene; do
    for peft in none lora prefix; do
      ./helene train --optimizer "$opt" --peft "$peft" --steps "$steps" --eval-every 50 \
        --threads "$threads" --log "$tmp/acc.jsonl" --headless > /dev/null 2>&1
      printf '%-8s %-22s' "$opt" "$peft"
      awk '/"event":"eval"/ { match($0, /"dev_accuracy":[0-9.e+-]+/); printf " %5.1f", 100 * substr($0, RSTART + 15, RLENGTH - 15) }' "$tmp/acc.jsonl"
      printf '\n'
      rm -f "$tmp/acc.jsonl"
    done
  done
}

case $what in
  memory) memory ;;
  accuracy) accuracy "${2:-500}" ;;
  all) memory; accuracy "${2:-500}" ;;
  *) echo "usage: $0 [memory|accuracy [STEPS]|all]" >&2; exit 2 ;;
esac
