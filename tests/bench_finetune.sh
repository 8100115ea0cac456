#!/usr/bin/env bash
# bench_finetune.sh - HELENE against MeZO (and ft-adam) fine-tuning a model on the
# bundled default task: zero-shot accuracy, then for each method the best
# learning rate from a small grid at a fixed step budget, its best dev
# accuracy, the steps and forward passes it needs to reach MeZO's best dev
# accuracy, and the test accuracy of its best-dev state.
# usage: bench_finetune.sh MODEL_DIR [STEPS] [EVAL_EVERY]   (from the build folder)
set -euo pipefail
model=${1:?usage: bench_finetune.sh MODEL_DIR [STEPS] [EVAL_EVERY]}
steps=${2:-1000}
every=${3:-50}
threads=${BENCH_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "# model $model, default task, $steps steps per run, dev eval every $every, $threads threads"
./helene eval --model "$model" --split dev --json | sed 's/^/zero_shot_dev /'
./helene eval --model "$model" --split test --json | sed 's/^/zero_shot_test /'

declare -A grid=([mezo]="1e-5 3e-5 1e-4 3e-4" [helene]="1e-5 3e-5 1e-4 3e-4" [ft-adam]="1e-5 1e-4")
for m in mezo helene ft-adam; do
  for lr in ${grid[$m]}; do
    log="$tmp/$m-$lr.jsonl"
    start=$(date +%s.%N)
    ./helene train --model "$model" --optimizer "$m" --lr "$lr" --steps "$steps" \
      --eval-every "$every" --threads "$threads" --log "$log" --headless > /dev/null 2>&1 || true
    end=$(date +%s.%N)
    awk -v m="$m" -v lr="$lr" -v secs="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" '
      /"event":"eval"/ { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7) + 0;
                         match($0, /"dev_accuracy":[0-9.e+-]+/); a = substr($0, RSTART + 15, RLENGTH - 15) + 0;
                         if (a > best) { best = a; bstep = s } }
      /"event":"test"/ { match($0, /"test_accuracy":[0-9.e+-]+/); v = substr($0, RSTART + 16, RLENGTH - 16);
                         if (/best_dev/) t = v; else final = v }
      END { if (t == "") t = final; # the best dev state was the final one
            printf "run %-8s lr %-6s best_dev %.4f at step %d  test_of_best %s  %.0f s\n", m, lr, best, bstep, t, secs }' "$log"
    cp "$log" "./bench_finetune-$m-$lr.jsonl"
  done
done | tee "$tmp/runs.txt"

# MeZO's best dev accuracy over its grid, then steps/forwards for each method's best lr to reach it
target=$(awk '$2 == "mezo" { if ($6 > b) b = $6 } END { print b }' "$tmp/runs.txt")
echo "target (MeZO's best dev accuracy over its grid) $target"
for m in mezo helene ft-adam; do
  best_lr=$(awk -v m="$m" '$2 == m { if ($6 > b) { b = $6; l = $4 } } END { print l }' "$tmp/runs.txt")
  awk -v m="$m" -v lr="$best_lr" -v tg="$target" '
    /"step":[0-9]+,"seed"/ { match($0, /"forwards":[0-9]+/); f += substr($0, RSTART + 11, RLENGTH - 11) }
    /"event":"eval"/ && !done { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7) + 0;
                     match($0, /"dev_accuracy":[0-9.e+-]+/); a = substr($0, RSTART + 15, RLENGTH - 15) + 0;
                     if (a >= tg) { done = 1; printf "reach %-8s (lr %s): step %d, %d forward passes\n", m, lr, s, f } }
    END { if (!done) printf "reach %-8s (lr %s): not reached in the budget\n", m, lr }' "./bench_finetune-$m-$best_lr.jsonl"
done
rm -f ./bench_finetune-*.jsonl
