#!/usr/bin/env bash
# test_mpi.sh - data-parallel training under mpirun (engine/dist.c), on the
# bundled default model and task, 2 ranks on this machine (--oversubscribe).
#
#  1. mpirun -np 2 gives parameters and optimizer state bit-identical to one
#     process with --shards 2 (the same batches, each shard one forward), for
#     HELENE, MeZO and layer-newton (its staged forwards);
#  2. runs with the same --shards are bit-identical whatever the number of
#     ranks (np 2 with --shards 4 = one process with --shards 4; HiZOO);
#  2b. --probes-per-rank (each rank probes the whole batch with its own
#     seeds) = one process with the same n_probes; layer-newton refused;
#  3. a run checkpointed under np 2 and resumed in one process ends
#     bit-identical to the uninterrupted np 2 run;
#  4. only rank 0 writes the journal, and it has each step once;
#  5. ranks started with different options are refused before any step;
#  6. a rank whose parameters differ (fault injected with HELENE_DIST_FAULT)
#     stops the job with a message naming the rank and the step;
#  7. a rank killed mid-run ends the job with mpirun's message, and the last
#     checkpoint is intact (a resume from it runs).
# Exit 0 pass, 1 fail, 77 skip (no mpirun).
set -u

HELENE=${HELENE:-./helene}
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: no mpirun (Debian: apt-get install openmpi-bin)"
    exit 77
fi
# CI runs as root; containers lack the single-copy mechanism; 2 slots on 2 cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader
MPIRUN=(timeout 300 mpirun --oversubscribe)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/helene-mpi-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
say() { printf '%s\n' "$*"; }
bad() { say "FAIL: $*"; fail=1; }

same_state() { # $1 $2 = checkpoint folders
    cmp -s "$1/params.safetensors" "$2/params.safetensors" &&
        cmp -s "$1/optim.safetensors" "$2/optim.safetensors"
}

RUN=(train --headless --threads 1 --eval-every 0 --check-every 1)

# 1. np 2 = one process with --shards 2
for m in helene mezo layer-newton; do
    "$HELENE" "${RUN[@]}" --optimizer $m --steps 4 --shards 2 --save "$tmp/$m-1" \
        > "$tmp/$m-1.out" 2>&1 || bad "$m: one process failed: $(tail -3 "$tmp/$m-1.out")"
    "${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --optimizer $m --steps 4 --save "$tmp/$m-2" \
        --log "$tmp/$m-2.jsonl" > "$tmp/$m-2.out" 2>&1 ||
        bad "$m: mpirun -np 2 failed: $(tail -5 "$tmp/$m-2.out")"
    if same_state "$tmp/$m-1" "$tmp/$m-2"; then
        say "ok: $m, np 2 = one process with --shards 2 (parameters and state, bit for bit)"
    else
        bad "$m: np 2 and one process with --shards 2 differ"
    fi
done

# 2. the same shards, any number of ranks
"$HELENE" "${RUN[@]}" --optimizer hizoo --steps 3 --shards 4 --save "$tmp/hz-1" \
    > "$tmp/hz-1.out" 2>&1 || bad "hizoo: one process failed"
"${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --optimizer hizoo --steps 3 --shards 4 \
    --save "$tmp/hz-2" > "$tmp/hz-2.out" 2>&1 || bad "hizoo: np 2 failed: $(tail -5 "$tmp/hz-2.out")"
if same_state "$tmp/hz-1" "$tmp/hz-2"; then
    say "ok: hizoo, --shards 4: np 2 = one process"
else
    bad "hizoo: --shards 4 with np 2 and with one process differ"
fi

# 2b. --probes-per-rank: each rank its probes on the whole batch = one process
# with the same n_probes (every rank makes every perturbation)
for m in helene hizoo; do
    for q in 2 4; do
        "$HELENE" "${RUN[@]}" --optimizer $m --steps 12 --n-probes $q --save "$tmp/pr-$m-$q-1" \
            > "$tmp/pr-1.out" 2>&1 || bad "probes: one process failed: $(tail -3 "$tmp/pr-1.out")"
        np_q=(); [ $q -ne 2 ] && np_q=(--n-probes $q) # default: one per rank
        "${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --optimizer $m --steps 12 --probes-per-rank \
            "${np_q[@]}" --save "$tmp/pr-$m-$q-2" > "$tmp/pr-2.out" 2>&1 ||
            bad "probes: np 2 failed: $(tail -5 "$tmp/pr-2.out")"
        if same_state "$tmp/pr-$m-$q-1" "$tmp/pr-$m-$q-2"; then
            say "ok: $m, --probes-per-rank with $q probes on np 2 = one process with --n-probes $q"
        else
            bad "$m: --probes-per-rank ($q probes) differs from one process"
        fi
    done
done
"${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --optimizer layer-newton --steps 2 --probes-per-rank \
    > "$tmp/pr-ln.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "probes-per-rank splits the SPSA probes" "$tmp/pr-ln.out"; then
    say "ok: --probes-per-rank with layer-newton refused (exit $rc)"
else
    bad "--probes-per-rank with layer-newton: exit $rc"
fi

# 3. checkpointed under np 2, resumed in one process
"${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --optimizer helene --steps 4 --shards 2 \
    --checkpoint-every 2 --keep-last 5 --save "$tmp/rs" > "$tmp/rs.out" 2>&1 ||
    bad "resume: np 2 failed: $(tail -5 "$tmp/rs.out")"
"$HELENE" train --headless --threads 2 --resume "$tmp/rs/step-2" --steps 4 \
    --save "$tmp/rs-1" > "$tmp/rs-1.out" 2>&1 || bad "resume: one process failed: $(tail -3 "$tmp/rs-1.out")"
if same_state "$tmp/rs" "$tmp/rs-1" && same_state "$tmp/rs" "$tmp/helene-2"; then
    say "ok: np 2 to step 2, then one process to step 4 = np 2 throughout"
else
    bad "resume across rank counts differs"
fi

# 4. one journal, from rank 0, each step once
runs=$(grep -c '"event":"run"' "$tmp/helene-2.jsonl")
steps=$(grep -c '^{"step":' "$tmp/helene-2.jsonl")
if [ "$runs" = 1 ] && [ "$steps" = 4 ]; then
    say "ok: the journal has 1 run and 4 steps"
else
    bad "journal: $runs run records and $steps step records (want 1 and 4)"
fi

# 5. different options on the ranks
"${MPIRUN[@]}" -np 1 "$HELENE" "${RUN[@]}" --steps 3 --save "$tmp/cf" : \
    -np 1 "$HELENE" "${RUN[@]}" --steps 3 --save "$tmp/cf" --lr 0.01 > "$tmp/cf.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "rank 1's configuration (its options) differs from rank 0's" \
    "$tmp/cf.out" && [ ! -e "$tmp/cf" ]; then
    say "ok: ranks with different options refused (exit $rc), nothing written"
else
    bad "different options: exit $rc, $(head -3 "$tmp/cf.out")"
fi

# 6. a rank whose parameters drift
HELENE_DIST_FAULT=1:3 "${MPIRUN[@]}" -np 2 -x HELENE_DIST_FAULT "$HELENE" "${RUN[@]}" \
    --steps 6 --save "$tmp/ft" > "$tmp/ft.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "step 3: the parameters of rank 1 (hash [0-9a-f]*) differ from rank 0's" \
    "$tmp/ft.out"; then
    say "ok: a rank with different parameters stops the job at step 3 (exit $rc)"
else
    bad "fault injection: exit $rc, $(grep -m3 helene "$tmp/ft.out")"
fi

# 7. a rank killed mid-run
"${MPIRUN[@]}" -np 2 "$HELENE" "${RUN[@]}" --steps 100000 --checkpoint-every 5 \
    --save "$tmp/kl" > "$tmp/kl.out" 2>&1 &
mp=$!
for _ in $(seq 300); do
    [ -d "$tmp/kl/step-10" ] && break
    sleep 0.1
done
victim=""
for p in $(pgrep -f -- "--save $tmp/kl"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
        victim=$p
    fi
done
if [ -z "$victim" ]; then
    bad "kill: rank 1 not found"
    kill "$mp" 2>/dev/null
else
    kill -9 "$victim"
fi
wait "$mp"
rc=$?
last=$(for d in "$tmp"/kl/step-*; do [ -d "$d" ] && echo "${d##*step-} $d"; done |
    sort -n | tail -1 | cut -d' ' -f2-)
if [ $rc -ne 0 ] && grep -q "rank 1 .*exited on signal 9" "$tmp/kl.out" && [ -n "$last" ] &&
    "$HELENE" train --headless --threads 2 --resume "$last" --steps "$(( ${last##*-} + 1 ))" \
        > "$tmp/kl-resume.out" 2>&1; then
    say "ok: rank 1 killed: the job ended (exit $rc) and $(basename "$last") resumes"
else
    bad "kill: exit $rc, last checkpoint '$last': $(grep -m3 -i "signal\|error" "$tmp/kl.out") $(tail -2 "$tmp/kl-resume.out" 2>/dev/null)"
fi

exit $fail
