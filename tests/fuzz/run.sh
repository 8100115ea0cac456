#!/usr/bin/env bash
# run.sh - run the fuzz targets built by build.sh on seed corpora made from
# the committed fixtures.
#
#   tests/fuzz/run.sh SRCDIR BUILDDIR smoke            # every target, a fixed number of runs
#   tests/fuzz/run.sh SRCDIR BUILDDIR campaign SECONDS [TARGET...]
#
# smoke: each target runs FUZZ_RUNS (default 2000) inputs, mutated from its
# seeds with a fixed seed, so CI is repeatable; any crash, leak, UBSan report
# or timeout fails it.  campaign: each target for SECONDS, corpus kept in
# BUILDDIR/tests/fuzz/corpus/TARGET (it grows across campaigns); prints
# executions and coverage per target.  Findings are written to
# BUILDDIR/tests/fuzz/findings/.
set -uo pipefail
src=$(cd "${1:?usage}" && pwd)
build=$(cd "${2:?usage}" && pwd)
mode=${3:?usage: run.sh SRCDIR BUILDDIR smoke|campaign [SECONDS] [TARGET...]}
shift 3
secs=60
if [ "$mode" = campaign ]; then
    secs=${1:?campaign needs SECONDS}
    shift
fi
fix=$src/tests/fixtures
out=$build/tests/fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$out"/fuzz_*; do
        [ -x "$f" ] && targets+=("$(basename "$f" | sed 's/^fuzz_//')")
    done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: nothing built (make fuzz)"; exit 77; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# seeds: the fixtures that each reader is meant to read, and a few malformed
seed() {  # seed TARGET -> directory of seed files
    local t=$1 d=$out/seeds/$1 m=$fix/models/opt-tiny-f32
    rm -rf "$d"
    mkdir -p "$d"
    case $t in
    safetensors)
        for f in "$fix"/models/*/model.safetensors "$fix"/models/*/expected.safetensors; do
            [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 1000000 ] && cp "$f" "$d/$(basename "$(dirname "$f")")-$(basename "$f")"
        done ;;
    st_index)
        s=$fix/models/opt-tiny-sharded
        { cat "$s/model.safetensors.index.json"; printf '\377'; cat "$(ls "$s"/model-0000*.safetensors | head -1)"; } > "$d/sharded" ;;
    model_config)
        for mm in "$fix"/models/*/; do
            { cat "$mm/config.json"; printf '\377'; cat "$mm/tokenizer_config.json" 2>/dev/null; } > "$d/$(basename "$mm")"
        done ;;
    bpe)
        { cat "$m/vocab.json"; printf '\377'; cat "$m/merges.txt"; } > "$d/opt-tiny" ;;
    tokenizer_json)
        for mm in llama-tiny-f32 llama-tiny-bf16 qwen2-tiny-f16; do
            cp "$fix/models/$mm/tokenizer.json" "$d/$mm"
        done
        cp "$fix/tokenizers/spm-bpe/tokenizer.json" "$d/spm-bpe"
        cp "$fix/tokenizers/spm-bpe-metaspace/tokenizer.json" "$d/spm-metaspace" ;;
    dataset)
        { printf '\000'; cat "$fix/tasks/sst2.tsv"; } > "$d/sst2"
        { printf '\001'; cat "$fix/tasks/sst5-kshot/train.csv"; } > "$d/sst5"
        { printf '\002'; cat "$fix/tasks/superglue/rte.jsonl"; } > "$d/rte"
        { printf '\003'; cat "$fix/tasks/superglue/multirc.jsonl"; } > "$d/multirc" ;;
    task)
        for f in "$src"/data/tasks/*.json "$fix"/tasks/*.json; do cp "$f" "$d/"; done ;;
    runcfg)
        echo '{"objective": "quadratic", "optimizer": "helene", "steps": 30, "lambda_abs": [0.1, 0.2], "save": "x"}' > "$d/a.json"
        echo '{"model": "m", "task": "sst2", "lr": 1e-6, "eval_every": 0, "grad_alignment": true}' > "$d/b.json" ;;
    checkpoint)
        printf '\000{"format":"helene-checkpoint","version":1,"step":3,"n_params":22,"journal":{"path":"","offset":0},"run":{"objective":"model"}}' > "$d/json" ;;
    journal)
        printf '{"event":"run","step":0,"config":{}}\n{"step":1,"loss":0.5,"loss_plus":0.6,"loss_minus":0.4,"proj_grad":1,"alpha":1,"lr":0.001}\n{"event":"eval","step":1,"dev_accuracy":0.5}\n' > "$d/j" ;;
    esac
    echo "$d"
}

fail=0
mkdir -p "$out/findings"
for t in "${targets[@]}"; do
    exe=$out/fuzz_$t
    [ -x "$exe" ] || { echo "fuzz: $exe is not built"; fail=1; continue; }
    s=$(seed "$t")
    if [ "$mode" = smoke ]; then
        work=$(mktemp -d)
        log=$out/smoke-$t.log
        "$exe" -seed=1 -runs="${FUZZ_RUNS:-2000}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$out/findings/$t-" "$work" "$s" > "$log" 2>&1
        rc=$?
        rm -rf "$work"
    else
        corpus=$out/corpus/$t
        mkdir -p "$corpus"
        log=$out/campaign-$t.log
        "$exe" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$out/findings/$t-" "$corpus" "$s" > "$log" 2>&1
        rc=$?
    fi
    stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1)
    execs=$(grep -E 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ok ${execs:+$execs runs, }${stats}"
    else
        echo "fuzz $t: FAILED (exit $rc), log $log"
        grep -E 'ERROR|runtime error|SUMMARY' "$log" | head -5
        fail=1
    fi
done
exit $fail
