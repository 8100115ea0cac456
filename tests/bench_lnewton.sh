#!/usr/bin/env bash
# bench_lnewton.sh - the cost of a layer-newton step on an OPT-125m-shaped model
# (99 groups), against MeZO's step on the same batches: layer-newton perturbs and
# updates one group, and its forwards after the first start at the group's block
# (share_forward on), so a step should cost far less than MeZO's two forwards.
# Batch 16 x 64 tokens, 2 threads.  Prints medians of the journal's ms_perturb,
# ms_forward and ms_update per kind of step, and the forward time in units of
# one full forward (MeZO's ms_forward / 2).  Run from the build folder.
# BENCH_LN_STEPS (default 130: the 99-group warm-up, then sampled steps).
set -euo pipefail
threads=${BENCH_THREADS:-2}
ln_steps=${BENCH_LN_STEPS:-130}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the OPT-125m-shaped folder and 64-token prompts
. "${srcdir:-$(dirname "$0")/..}/tests/bench_opt125.sh"

run() { # NAME STEPS ARGS...
  local name=$1 steps=$2
  shift 2
  ./helene train --model "$tmp/opt125" --task sst2 --data "$tmp/long.tsv" --max-tokens 63 \
    --batch-size 16 --steps "$steps" --eval-every 0 --threads "$threads" \
    --log "$tmp/$name.jsonl" --headless "$@" > /dev/null 2>&1
}
run mezo 6 --optimizer mezo --lr 1e-7
run ln "$ln_steps" --optimizer layer-newton
run ln_full 8 --optimizer layer-newton --share_forward off

echo "## layer-newton step on an OPT-125m-shaped model, batch 16 x 64 tokens, $threads threads"
echo "## $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for name in mezo ln ln_full; do
  awk -v name="$name" '
    function num(k,   r) { if (!match($0, "\"" k "\":[0-9.e+-]+")) return 0;
                          return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0 }
    function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i];
                          for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
                          return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    /"step":/ && !/"event"/ {
      st = num("step"); if (st < 2) next;          # the first step pays first touches
      kind = index($0, "\"refresh\":true") ? "refresh" : "plain";
      n[kind]++;
      P[kind, n[kind]] = num("ms_perturb"); F[kind, n[kind]] = num("ms_forward");
      U[kind, n[kind]] = num("ms_update"); W[kind, n[kind]] = num("forwards");
    }
    END {
      for (kind in n) {
        m = n[kind]; delete a;
        for (i = 1; i <= m; i++) a[i] = P[kind, i]; p = med(a, m);
        for (i = 1; i <= m; i++) a[i] = F[kind, i]; f = med(a, m);
        for (i = 1; i <= m; i++) a[i] = U[kind, i]; u = med(a, m);
        for (i = 1; i <= m; i++) a[i] = W[kind, i]; w = med(a, m);
        printf "%-8s %-7s steps %4d  forwards %d  perturb %7.1f ms  forward %8.1f ms  update %6.1f ms  total %8.1f ms\n",
               name, kind, m, w, p, f, u, p + f + u;
      }
    }' "$tmp/$name.jsonl"
done
# the mix over the whole run (warm-up included) and the forward time in full forwards
awk '
  function num(k) { if (!match($0, "\"" k "\":[0-9.e+-]+")) return 0;
                    return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0 }
  FILENAME ~ /mezo.jsonl$/ && /"step":/ && !/"event"/ && num("step") >= 2 { mf += num("ms_forward"); mn++ }
  FILENAME ~ /ln.jsonl$/ && /"step":/ && !/"event"/ && num("step") >= 2 {
    lt += num("ms_perturb") + num("ms_forward") + num("ms_update"); lf += num("ms_forward"); ln++ }
  END {
    full = mf / mn / 2;
    printf "one full forward (MeZO ms_forward / 2): %.1f ms\n", full;
    printf "layer-newton, mean over %d steps: %.1f ms per step, forwards = %.2f full forwards (MeZO: 2)\n",
           ln, lt / ln, lf / ln / full;
  }' "$tmp/mezo.jsonl" "$tmp/ln.jsonl"
