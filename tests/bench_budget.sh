#!/usr/bin/env bash
# bench_budget.sh - HELENE against MeZO at a fixed budget of running time on
# the bundled default task (issue 5's comparison): zero-shot accuracy, then
# each method alone on the machine for MINUTES of running time (train
# --time-limit), one after the other, with its dev accuracy every EVAL_EVERY
# steps, the test accuracy of its best-dev state and of its final state,
# the steps it managed and its peak RSS.
#
# usage: bench_budget.sh MODEL_DIR [MINUTES] [MEZO_LR] [HELENE_LR] [EVAL_EVERY]
#        (from the build folder; BENCH_THREADS sets the threads, default 2;
#        BENCH_ANNEAL sets HELENE's annealing horizon T, default 1000, since
#        a time-limited run has no step count to take a tenth of)
set -euo pipefail
model=${1:?usage: bench_budget.sh MODEL_DIR [MINUTES] [MEZO_LR] [HELENE_LR] [EVAL_EVERY]}
minutes=${2:-10}
mezo_lr=${3:-3e-5}
helene_lr=${4:-3e-3}
every=${5:-500}
threads=${BENCH_THREADS:-2}
anneal=${BENCH_ANNEAL:-1000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "# $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# model $model, default task, $minutes min each, $threads threads, dev every $every steps"
./helene eval --model "$model" --split dev --json | sed 's/^/zero_shot_dev  /'
./helene eval --model "$model" --split test --json | sed 's/^/zero_shot_test /'

for run in "mezo $mezo_lr" "helene $helene_lr"; do
  set -- $run
  m=$1 lr=$2
  log="$tmp/$m.jsonl"
  /usr/bin/time -v -o "$tmp/$m.time" ./helene train --model "$model" --optimizer "$m" --lr "$lr" \
    --steps 100000000 --time-limit "${minutes}m" --anneal-horizon "$anneal" \
    --eval-every "$every" --threads "$threads" --log "$log" --headless > "$tmp/$m.out" 2>&1 || true
  rss=$(awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$tmp/$m.time")
  secs=$(awk '/^running time/ { print $3 }' "$tmp/$m.out")
  steps=$(awk '/^steps/ { print $2 }' "$tmp/$m.out")
  awk -v m="$m" -v lr="$lr" -v rss="$rss" -v secs="$secs" -v steps="$steps" '
    /"event":"eval"/ { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7) + 0;
                       match($0, /"dev_accuracy":[0-9.e+-]+/); a = substr($0, RSTART + 15, RLENGTH - 15) + 0;
                       match($0, /"dev_loss":[0-9.e+-]+/); l = substr($0, RSTART + 11, RLENGTH - 11) + 0;
                       curve = curve sprintf(" %d:%.3f/%.4f", s, a, l);
                       if (a > best) { best = a; bstep = s } }
    /"event":"test"/ { match($0, /"test_accuracy":[0-9.e+-]+/); v = substr($0, RSTART + 16, RLENGTH - 16);
                       if (/best_dev/) t = v; else final = v }
    END { if (t == "") t = final; # the best dev state was the final one
          printf "run %-7s lr %-6s steps %-6s in %s s  best_dev %.4f at step %d  test_of_best %s  test_final %s  peak_rss %s MiB\n",
                 m, lr, steps, secs, best, bstep, t, final, rss
          printf "curve %-7s (step:dev_acc/dev_loss)%s\n", m, curve }' "$log"
done
