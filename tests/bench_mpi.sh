#!/usr/bin/env bash
# bench_mpi.sh - data-parallel ZO steps under mpirun (a --with-mpi build), on
# the OPT-125m shape, batch 16 x 64 tokens, on this machine's cores:
#   one process with 2 threads  vs  2 ranks with 1 thread each (--shards),
#   one process, 2 probes        vs  2 ranks, --probes-per-rank (1 probe each),
# for MeZO and HELENE: the median step (ms_perturb + ms_forward + ms_update
# after the first) and its parts, and the payload each step sends.
# Run from the build folder, alone on the machine.  Skips without mpirun or
# an MPI build.
set -euo pipefail
srcdir=${srcdir:-$(dirname "$0")/..}
steps=${BENCH_STEPS:-6}
if ! command -v mpirun > /dev/null || ! grep -q '^#define HAVE_MPI 1' config.h 2> /dev/null; then
  echo "## bench_mpi skipped: needs mpirun and ./configure --with-mpi"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl=self,vader
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$srcdir/tests/bench_lib.sh"
. "$srcdir/tests/bench_opt125.sh"

echo "## machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1 /proc/loadavg)"
printf "%-8s %-34s %9s %9s %9s %9s %12s\n" method setup step_ms forward perturb update bytes/step
run() { # $1 method, $2 label, $3 bytes, $4 threads, $5 extra flags, rest: launcher
  local opt=$1 label=$2 bytes=$3 threads=$4 extra=$5
  shift 5
  # shellcheck disable=SC2086
  "$@" ./helene train --model "$tmp/opt125" --task sst2 --data "$tmp/long.tsv" --max-tokens 63 \
    --batch-size 16 --optimizer "$opt" --steps "$steps" --eval-every 0 --dev-size 16 \
    --threads "$threads" $extra --log "$tmp/j.jsonl" --headless > /dev/null 2>&1
  # the median step (the lower middle one for an even count) and its parts
  bench_steps "$tmp/j.jsonl" | awk '$1 >= 2' | sort -s -g -k2,2 | awk -v opt="$opt" \
    -v label="$label" -v bytes="$bytes" '{ r[++m] = $0 }
    END { split(r[int((m + 1) / 2)], x, " ");
          printf "%-8s %-34s %9.0f %9.0f %9.0f %9.0f %12s\n", opt, label, x[2], x[4], x[3], x[5], bytes }'
  rm -f "$tmp/j.jsonl"
}
# payload per step: shards: 2 forwards x 16 losses x 8 bytes all-gathered, and
# the leader's 4-byte step word; probes: 2 probes x 2 forwards x 16 losses x 8
# bytes broadcast (plus the word); every 50 steps 8 bytes a rank for the check
MPI=(mpirun -np 2 --bind-to none --oversubscribe)
for opt in mezo helene; do
  run $opt "1 process, 2 threads" 0 2 ""
  run $opt "2 ranks x 1 thread, --shards 2" "256 + 4" 1 "" "${MPI[@]}"
  run $opt "1 process, 2 threads, 2 probes" 0 2 "--n-probes 2"
  run $opt "2 ranks x 1 thread, 2 probes" "512 + 4" 1 "--probes-per-rank true" "${MPI[@]}"
done
