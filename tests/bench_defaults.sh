#!/usr/bin/env bash
# bench_defaults.sh - the grid that chose each method's default learning rate
# (and HELENE's kappa) on the bundled default model and default task, and the
# table of the defaults themselves.
#
# usage (from the build folder, after make):
#   tests/bench_defaults.sh grid  [STEPS]   # every grid point, two runs at a time, 1 thread each
#   tests/bench_defaults.sh table [STEPS]   # zero-shot, then each method at its defaults
#                                           # (no hyperparameter flags), one at a time, 2 threads
#   tests/bench_defaults.sh versus [STEPS]  # layer-newton against MeZO and HELENE at their
#                                           # defaults (best rates), dev every 50 steps, 2 threads
# Each run: STEPS steps (default 1000), dev accuracy every 100 steps from step 0
# (zero-shot), test accuracy of the final state, wall time.  Journals are kept in
# ${BENCH_OUT:-bench_defaults.out}/.
set -euo pipefail
mode=${1:?usage: bench_defaults.sh grid|table|versus [STEPS]}
steps=${2:-1000}
out=${BENCH_OUT:-bench_defaults.out}
mkdir -p "$out"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=$here/../data/default-model
[ -x ./helene ] || { echo "bench_defaults.sh: run from the build folder (./helene)" >&2; exit 2; }

echo "# bench_defaults.sh $mode: model $model, task default, $steps steps, batch 16, seed 42"
echo "# $(uname -m), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ)"

summary() {  # journal name start end [every] -> one line: dev curve, best, final test
  /usr/bin/python3 - "$@" <<'EOF'
import json, sys
path, name = sys.argv[1], sys.argv[2]
secs = float(sys.argv[4]) - float(sys.argv[3])
dev, test = {}, None
for line in open(path):
    d = json.loads(line)
    if d.get("event") == "eval" and "dev_accuracy" in d:
        dev[d["step"]] = d["dev_accuracy"]
    if d.get("event") == "test" and d.get("which", d.get("state")) in (None, "final"):
        test = d.get("test_accuracy", test)
every = int(sys.argv[5]) if len(sys.argv) > 5 else 100
curve = " ".join("%.0f" % (100 * dev[s]) for s in sorted(dev) if s % every == 0)
fw = 0
for line in open(path):
    d = json.loads(line)
    if "forwards" in d and "event" not in d:
        fw += d["forwards"]
best = max(dev.values()) if dev else float("nan")
z = dev.get(0, float("nan"))
print("%-34s dev%% %s | best %.1f (+%.1f) | test %s | %.0f s | %d forwards"
      % (name, curve, 100 * best, 100 * (best - z),
         "%.1f" % (100 * test) if test is not None else "?", secs, fw))
EOF
}

every=100
run() {  # name threads flags... ; prints the summary line
  local name=$1 threads=$2
  shift 2
  local log="$out/${name// /_}.jsonl" start end
  rm -f "$log"
  start=$(date +%s.%N)
  ./helene train --headless --model "$model" --steps "$steps" --eval-every "$every" \
    --threads "$threads" --log "$log" "$@" > /dev/null 2> "$out/${name// /_}.err" || true
  end=$(date +%s.%N)
  summary "$log" "$name" "$start" "$end" "$every"
}

case $mode in
grid)
  points=(
    "mezo lr=1e-5|--optimizer mezo --lr 1e-5"
    "mezo lr=3e-5|--optimizer mezo --lr 3e-5"
    "mezo lr=1e-4|--optimizer mezo --lr 1e-4"
    "helene lr=1e-3 kappa=1|--optimizer helene --lr 1e-3 --kappa 1"
    "helene lr=3e-3 kappa=1|--optimizer helene --lr 3e-3 --kappa 1"
    "helene lr=1e-2 kappa=1|--optimizer helene --lr 1e-2 --kappa 1"
    "helene lr=1e-3 kappa=0.5|--optimizer helene --lr 1e-3 --kappa 0.5"
    "helene lr=3e-3 kappa=0.5|--optimizer helene --lr 3e-3 --kappa 0.5"
    "helene lr=1e-2 kappa=0.5|--optimizer helene --lr 1e-2 --kappa 0.5"
    "helene lr=3e-3 kappa=0.25|--optimizer helene --lr 3e-3 --kappa 0.25"
    "zo-sgd-mmt lr=3e-6|--optimizer zo-sgd-mmt --lr 3e-6"
    "zo-sgd-mmt lr=1e-5|--optimizer zo-sgd-mmt --lr 1e-5"
    "zo-sign lr=3e-4|--optimizer zo-sign --lr 3e-4"
    "zo-sign lr=1e-3|--optimizer zo-sign --lr 1e-3"
    "zo-adam lr=1e-4|--optimizer zo-adam --lr 1e-4"
    "zo-adam lr=3e-4|--optimizer zo-adam --lr 3e-4"
    "hizoo lr=1e-5|--optimizer hizoo --lr 1e-5"
    "hizoo lr=3e-5|--optimizer hizoo --lr 3e-5"
  )
  # two runs at a time, one thread each: the grid compares accuracy, not speed
  i=0
  for p in "${points[@]}"; do
    name=${p%%|*}
    read -r -a flags <<< "${p#*|}"
    run "$name" 1 "${flags[@]}" > "$out/line-$(printf %02d $i)" &
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then wait; fi
  done
  wait
  cat "$out"/line-*
  rm -f "$out"/line-*
  ;;
table)
  ./helene eval --model "$model" --split dev --json | sed 's/^/zero-shot dev  /'
  ./helene eval --model "$model" --split test --json | sed 's/^/zero-shot test /'
  for m in helene mezo zo-sgd-mmt zo-sign zo-adam hizoo layer-newton; do
    run "$m (defaults)" 2 --optimizer "$m"
  done
  ;;
versus)
  every=50
  run "mezo (defaults)" 2 --optimizer mezo
  run "helene (defaults)" 2 --optimizer helene
  run "layer-newton (defaults, eta 0.5)" 2 --optimizer layer-newton
  run "layer-newton eta=1" 2 --optimizer layer-newton --lr 1
  run "layer-newton h_min=3e-2" 2 --optimizer layer-newton --h_min 3e-2
  run "layer-newton sampling=uniform" 2 --optimizer layer-newton --sampling uniform
  # measured per block (6 groups: 1 + 12 forwards every 10 steps), not per tensor (68)
  run "helene precondition=perturbation" 2 --optimizer helene --precondition perturbation \
    --layer_granularity block
  ;;
*)
  echo "usage: bench_defaults.sh grid|table|versus [STEPS]" >&2
  exit 2
  ;;
esac
