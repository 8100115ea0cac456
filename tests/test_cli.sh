#!/usr/bin/env bash
# test_cli.sh - the command line as a user meets it: every subcommand's help,
# exit statuses, and clear messages for bad flags, files and values.
# Run by `make check` from the build folder.
set -u
h=./helene
fix=${srcdir:-.}/tests/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect STATUS PATTERN -- command...: status and a line of stderr+stdout matching
expect() {
  local want=$1 pat=$2
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $* -> exit $rc, want $want"; echo "$out" | head -5; fail=$((fail + 1)); return
  fi
  if [ -n "$pat" ] && ! grep -qE -- "$pat" <<< "$out"; then
    echo "FAIL: $* -> output lacks /$pat/"; echo "$out" | head -5; fail=$((fail + 1)); return
  fi
  pass=$((pass + 1))
}

expect 0 '^helene [0-9]' -- $h --version
expect 0 'Commands:' -- $h --help
for c in info score eval data train export tui plot race; do
  expect 0 "usage: helene $c" -- $h help "$c"
  expect 0 "usage: helene $c" -- $h "$c" --help
done
expect 2 "no such command" -- $h help nope
expect 2 "unknown command" -- $h frobnicate
expect 0 'lr .*default' -- $h help train

# info / score
expect 2 "--model DIR is required" -- $h info
expect 1 "no such model folder" -- $h info --model "$tmp/none"
expect 2 "expects an integer" -- $h info --model "$fix/models/opt-tiny-f32" --threads two
expect 2 "out of range" -- $h info --model "$fix/models/opt-tiny-f32" --threads 0
expect 2 "unknown option" -- $h info --model "$fix/models/opt-tiny-f32" --jsn
expect 0 '"n_params":54144' -- $h info --model "$fix/models/opt-tiny-f32" --json
expect 2 "one text FILE" -- $h score --model "$fix/models/opt-tiny-f32"
expect 1 "No such file" -- $h score --model "$fix/models/opt-tiny-f32" "$tmp/none.txt"
: > "$tmp/empty.txt"
expect 1 "no tokens to predict" -- $h score --model "$fix/models/gpt2-tiny-f32" "$tmp/empty.txt"
expect 0 '"tokens":50' -- $h score --json --model "$fix/models/gpt2-tiny-f32" "$fix/score.txt"
mkdir "$tmp/pickle" && : > "$tmp/pickle/pytorch_model.bin" && cp "$fix/models/opt-tiny-f32/"{config.json,vocab.json,merges.txt} "$tmp/pickle/"
expect 1 "pytorch_model.bin" -- $h info --model "$tmp/pickle"

# eval / data
expect 2 "--split must be dev or test" -- $h eval --model "$fix/models/opt-tiny-f32" --split train
expect 1 "unknown task" -- $h eval --model "$fix/models/opt-tiny-f32" --task nope
printf 'sentence\tlabel\ngood film\t1\nbad film\t7\n' > "$tmp/bad.tsv"
expect 1 "bad.tsv:3" -- $h eval --model "$fix/models/opt-tiny-f32" --task sst2 --data "$tmp/bad.tsv"
expect 0 "examples  1" -- $h eval --model "$fix/models/opt-tiny-f32" --task sst2 --data "$tmp/bad.tsv" --skip-bad
expect 0 '"n":20' -- $h eval --json --model "$fix/models/opt-tiny-f32" --task sst2 --data "$fix/tasks/sst2.tsv" --predictions "$tmp/pred.tsv"
[ "$(wc -l < "$tmp/pred.tsv")" -eq 20 ] && pass=$((pass + 1)) || { echo "FAIL: predictions lines"; fail=$((fail + 1)); }
expect 0 "train +171 +57 +57 +57" -- $h data
expect 0 "tokens:" -- $h data --task sst2 --data "$fix/tasks/sst2.tsv" --model "$fix/models/opt-tiny-f32"

# train: flags, config files, resume
expect 2 "lr: bad value" -- $h train --objective quadratic --lr -1 --headless
expect 2 "unknown setting" -- $h train --objective quadratic --bogus 1 --headless
expect 2 "not one of model, quadratic, rosenbrock" -- $h train --objective cubic --headless
expect 2 "needs a value" -- $h train --objective quadratic --steps
expect 2 "takes no value" -- $h train --objective quadratic --headless=yes
expect 0 '"optimizer":[[:space:]]*"mezo"' -- $h train --objective quadratic --optimizer mezo --print-config
expect 2 "time_limit: expected a duration" -- $h train --objective quadratic --time-limit 10x --headless
expect 0 'stopped by --time-limit' -- $h train --objective quadratic --optimizer mezo --steps 1000000000 --time-limit 0.5s --eval-every 0 --threads 1 --headless
echo '{"objective": "quadratic", "steps": "many"}' > "$tmp/bad.json"
expect 1 "bad.json" -- $h train --config "$tmp/bad.json" --headless
echo '[1, 2]' > "$tmp/arr.json"
expect 1 "JSON object" -- $h train --config "$tmp/arr.json" --headless
echo '{"objective": "quadratic", "steps": null}' > "$tmp/null.json"
expect 1 '"steps" is null' -- $h train --config "$tmp/null.json" --headless
echo '{"objective": "quadratic", "steps": 5, "steps": 6}' > "$tmp/dup.json"
expect 1 '"steps" appears twice' -- $h train --config "$tmp/dup.json" --headless
printf '{"objective": "quadratic", "save": "%s"}' "$(head -c 5000 /dev/zero | tr '\0' a)" > "$tmp/long.json"
expect 1 '"save" is too long' -- $h train --config "$tmp/long.json" --headless
echo '{"objective": "quadratic", "save": "a\u0000b"}' > "$tmp/nul.json"
expect 1 'NUL' -- $h train --config "$tmp/nul.json" --headless
echo '{"objective": "quadratic", "optimizer": "zo-sign", "steps": 30, "eval_every": 0}' > "$tmp/ok.json"
expect 0 "optimizer +zo-sign" -- $h train --config "$tmp/ok.json" --headless
expect 0 "steps +40" -- $h train --config "$tmp/ok.json" --steps 40 --headless --save "$tmp/ck"
expect 0 "steps +60" -- $h train --resume "$tmp/ck" --steps 60 --headless
expect 1 "not a helene checkpoint|checkpoint.json" -- $h train --resume "$tmp" --headless
# the journal: one run per file unless --resume continues it or --log-append
expect 0 "steps +20" -- $h train --config "$tmp/ok.json" --steps 20 --log "$tmp/j.jsonl" --save "$tmp/jck" --headless
expect 1 "already holds a run's journal" -- $h train --config "$tmp/ok.json" --log "$tmp/j.jsonl" --headless
expect 0 "steps +30" -- $h train --resume "$tmp/jck" --steps 30 --log "$tmp/j.jsonl" --headless
expect 0 "steps +30" -- $h train --config "$tmp/ok.json" --log "$tmp/j.jsonl" --log-append --headless
runs=$(grep -c '"event":"run"' "$tmp/j.jsonl")
resumed=$(grep -c '"event":"run","step":20,"resumed":true,"version":"[0-9]' "$tmp/j.jsonl")
if [ "$runs" -eq 3 ] && [ "$resumed" -eq 1 ] && head -1 "$tmp/j.jsonl" | grep -q '"config":{"objective":"quadratic"'; then
  pass=$((pass + 1))
else
  echo "FAIL: journal run events: $runs runs, $resumed resumed at step 20"; fail=$((fail + 1))
fi
expect 1 "analytic" -- $h export --checkpoint "$tmp/ck" --out "$tmp/exported"
expect 2 "required" -- $h export --checkpoint "$tmp/ck"
expect 2 "--dtype must be" -- $h export --checkpoint "$tmp/ck" --out "$tmp/x" --dtype F8

# a model run, exported and loaded again
expect 0 "saved" -- $h train --model "$fix/models/gpt2-tiny-f32" --task sst2 --data "$fix/tasks/sst2.tsv" --steps 4 --eval-every 2 --batch-size 4 --save "$tmp/m" --headless
mkdir -p "$tmp/split" && for f in train dev test; do cp "$fix/tasks/sst2.tsv" "$tmp/split/$f.tsv"; done
expect 0 "^test acc +[0-9.]+ of the final state" -- $h train --model "$fix/models/gpt2-tiny-f32" --task sst2 --data "$tmp/split" --steps 2 --eval-every 1 --batch-size 4 --headless
expect 0 "tuning .* in 8 of 37 tensors" -- $h train --model "$fix/models/opt-tiny-f32" --task sst2 --data "$fix/tasks/sst2.tsv" --trainable 'fc[12]' --steps 2 --batch-size 4 --headless
expect 1 "trainable: 'nomatch' matches none" -- $h train --model "$fix/models/opt-tiny-f32" --task sst2 --data "$fix/tasks/sst2.tsv" --trainable nomatch --steps 2 --headless
expect 1 "not a valid regular expression" -- $h train --model "$fix/models/opt-tiny-f32" --task sst2 --data "$fix/tasks/sst2.tsv" --trainable 'fc(' --steps 2 --headless
expect 0 "tuned .* in 4 of 37" -- $h info --model "$fix/models/opt-tiny-f32" --trainable 'fc1'
expect 0 '"tuned":false' -- $h info --json --model "$fix/models/opt-tiny-f32" --tensors --trainable 'fc1'
expect 2 "matches none" -- $h info --model "$fix/models/opt-tiny-f32" --trainable nomatch
expect 0 '"grad_alignment":[[:space:]]*true' -- $h train --objective quadratic --grad-alignment --print-config
expect 0 '"skip_bad":[[:space:]]*false' -- $h train --objective quadratic --skip-bad false --print-config
expect 0 "exported" -- $h export --checkpoint "$tmp/m" --out "$tmp/gpt2-tuned" --dtype BF16
expect 0 "storage +BF16" -- $h info --model "$tmp/gpt2-tuned"
expect 1 "already exists" -- $h export --checkpoint "$tmp/m" --out "$tmp/gpt2-tuned"
# an export that fails half-way (a tokenizer file it cannot read) leaves
# nothing behind, so the next export is not refused as "already exists"
rm -rf "$tmp/g2" && cp -r "$fix/models/gpt2-tiny-f32" "$tmp/g2"
expect 0 "saved" -- $h train --model "$tmp/g2" --task sst2 --data "$fix/tasks/sst2.tsv" --steps 2 --eval-every 0 --batch-size 4 --save "$tmp/m2" --headless
rm -rf "$tmp/g2/special_tokens_map.json" && mkdir "$tmp/g2/special_tokens_map.json"
expect 1 "special_tokens_map.json into the export; nothing written" -- $h export --checkpoint "$tmp/m2" --out "$tmp/g2-out"
if [ -e "$tmp/g2-out" ] || ls -d "$tmp"/g2-out.export-* >/dev/null 2>&1; then
  echo "FAIL: a failed export left $(ls -d "$tmp"/g2-out* 2>/dev/null)"; fail=$((fail + 1))
else
  echo "ok: a failed export leaves nothing"; pass=$((pass + 1))
fi
rmdir "$tmp/g2/special_tokens_map.json"
expect 0 "exported" -- $h export --checkpoint "$tmp/m2" --out "$tmp/g2-out"

# RoBERTa (masked LM) end to end, and PEFT: a LoRA run evaluated from its
# checkpoint scores the same as its merged export; adapters in PEFT's layout
rob="$fix/models/roberta-tiny-f32"
sst="$fix/tasks/sst2.tsv"
expect 0 "family +roberta .*masked LM" -- $h info --model "$rob"
expect 0 '"objective":"masked_lm"' -- $h info --model "$rob" --json
expect 0 "pseudo-log-likelihood" -- $h score --model "$rob" "$fix/score.txt"
expect 0 "It was<mask>\.</s>" -- $h data --model "$rob" --task sst2 --data "$sst"
expect 0 "^accuracy +0\.6500" -- $h eval --model "$rob" --task sst2 --data "$sst"
expect 1 "no masked-LM template" -- $h eval --model "$rob" --task boolq --data "$sst"
for m in mezo helene ft-adam; do
  expect 0 "saved" -- $h train --model "$rob" --task sst2 --data "$sst" --optimizer $m --steps 3 --batch-size 4 --eval-every 0 --save "$tmp/rob-$m" --headless
done
expect 0 "saved" -- $h train --model "$rob" --task sst2 --data "$sst" --peft lora:r=2,targets=q+v+fc2 --lr 1e-3 --steps 6 --batch-size 4 --eval-every 0 --save "$tmp/rl" --headless
expect 0 '"eps":[[:space:]]*0.01' -- $h train --model "$rob" --task sst2 --peft lora --print-config
expect 0 '"eps":[[:space:]]*0.001' -- $h train --model "$rob" --task sst2 --peft prefix --eps 1e-3 --print-config
expect 2 "unknown target" -- $h train --model "$rob" --task sst2 --peft lora:targets=q+w --headless
expect 0 '"lr":[[:space:]]*0.003,' -- $h train --model "$rob" --task sst2 --peft lora --optimizer mezo --print-config
expect 0 '"lr":[[:space:]]*1,' -- $h train --model "$rob" --task sst2 --peft prefix --optimizer mezo --print-config
expect 0 '"lr":[[:space:]]*1e-05,' -- $h train --model "$rob" --task sst2 --peft lora --optimizer mezo --lr 1e-5 --print-config
a=$($h eval --checkpoint "$tmp/rl" --data "$sst" --json 2>&1)
expect 0 "LoRA merged into the base weights" -- $h export --checkpoint "$tmp/rl" --out "$tmp/rl-merged"
b=$($h eval --model "$tmp/rl-merged" --task sst2 --data "$sst" --json 2>&1)
c=$($h eval --model "$rob" --task sst2 --data "$sst" --json 2>&1)
la=$(sed -n 's/.*"loss":\([0-9.]*\).*/\1/p' <<< "$a"); lb=$(sed -n 's/.*"loss":\([0-9.]*\).*/\1/p' <<< "$b")
lc=$(sed -n 's/.*"loss":\([0-9.]*\).*/\1/p' <<< "$c")
if [ -n "$la" ] && [ -n "$lb" ] && awk -v a="$la" -v b="$lb" -v c="$lc" 'BEGIN { d = a - b; if (d < 0) d = -d; e = a - c; if (e < 0) e = -e; exit !(d <= 2e-6 && e > 1e-5) }'; then
  echo "ok: LoRA checkpoint loss $la = merged export $lb (base $lc)"; pass=$((pass + 1))
else
  echo "FAIL: LoRA checkpoint '$a' vs merged export '$b' (base '$c')"; fail=$((fail + 1))
fi
expect 0 "of adapters \(PEFT library layout\)" -- $h export --checkpoint "$tmp/rl" --out "$tmp/rl-adapter" --adapter
expect 0 '"peft_type":[[:space:]]*"LORA"' -- cat "$tmp/rl-adapter/adapter_config.json"
expect 0 "base_model.model.roberta.encoder.layer.1.output.dense.lora_B.weight" -- grep -ao 'base_model[^"]*' "$tmp/rl-adapter/adapter_model.safetensors"
expect 0 "saved" -- $h train --model "$fix/models/opt-tiny-f32" --task sst2 --data "$sst" --peft prefix:tokens=2 --steps 2 --batch-size 4 --eval-every 0 --save "$tmp/op" --headless
expect 1 "cannot be merged" -- $h export --checkpoint "$tmp/op" --out "$tmp/op-merged"
expect 0 "PEFT library layout" -- $h export --checkpoint "$tmp/op" --out "$tmp/op-adapter" --adapter
expect 0 '"num_virtual_tokens":[[:space:]]*2' -- cat "$tmp/op-adapter/adapter_config.json"
expect 1 "full-parameter run has no adapter" -- $h export --checkpoint "$tmp/m" --out "$tmp/m-adapter" --adapter
expect 0 "^accuracy" -- $h eval --checkpoint "$tmp/op"
rm -rf "$tmp/rob2" && cp -r "$rob" "$tmp/rob2" && cp "$fix/models/roberta-tiny-f16/model.safetensors" "$tmp/rob2/"
expect 1 "other base weights" -- $h eval --checkpoint "$tmp/rl" --model "$tmp/rob2" --data "$sst"

# the Llama family from tokenizer.json alone
lla="$fix/models/llama-tiny-f32"
expect 0 "family +llama \(llama: RMSNorm, rotary .*grouped-query" -- $h info --model "$lla"
expect 0 "q/k/v biases" -- $h info --model "$fix/models/qwen2-tiny-f16"
expect 0 "^nll +[0-9.]+ nats/token" -- $h score --model "$lla" "$fix/score.txt"
expect 0 "^accuracy" -- $h eval --model "$fix/models/mistral-tiny-f32" --task sst2 --data "$sst"
expect 0 "saved" -- $h train --model "$fix/models/llama-tiny-bf16" --task sst2 --data "$sst" --peft lora:r=2 --steps 3 --batch-size 4 --eval-every 0 --save "$tmp/ll" --headless
expect 0 "LoRA merged" -- $h export --checkpoint "$tmp/ll" --out "$tmp/ll-merged"
expect 0 "^accuracy" -- $h eval --model "$tmp/ll-merged" --task sst2 --data "$sst"
expect 0 "model.layers.0.self_attn.q_proj.lora_A.weight" -- bash -c "$h export --checkpoint '$tmp/ll' --out '$tmp/ll-ad' --adapter >/dev/null && grep -ao 'base_model[^\"]*' '$tmp/ll-ad/adapter_model.safetensors'"
expect 0 "saved" -- $h train --model "$lla" --task sst2 --data "$sst" --optimizer ft-adam --steps 3 --batch-size 4 --eval-every 0 --save "$tmp/lla-ft" --headless

# MeZO's k-shot protocol and the data-seed sweep
expect 0 "^train +8 +4 +4" -- $h data --k-shot 4 --task sst2 --data "$sst" --model "$rob"
expect 0 "^test +4 +2 +2" -- $h data --k-shot 4 --task sst2 --data "$sst" --model "$rob"
expect 1 "class 0 has only 10 examples" -- $h data --k-shot 20 --task sst2 --data "$sst" --model "$rob"
expect 1 "drop train_size" -- $h train --k-shot 4 --train-size 8 --model "$rob" --task sst2 --data "$sst" --steps 1 --headless
expect 0 "^mean \(std\) +[0-9.]+ \([0-9.]+\)" -- $h train --data-seeds 13,21 --k-shot 4 --model "$rob" --task sst2 --data "$sst" --peft lora:r=2 --steps 2 --batch-size 4 --eval-every 0 --save "$tmp/sweep"
expect 0 "" -- test -d "$tmp/sweep/seed-21"
expect 2 "comma-separated" -- $h train --data-seeds 13,,21 --model "$rob" --task sst2
expect 2 "not both" -- $h train --data-seeds 13,21 --data-seed 5 --model "$rob" --task sst2

# hostile files: FIFOs given as any config, tokenizer, task, data or
# checkpoint file are refused at once instead of blocking forever (issue 15)
for f in config.json vocab.json merges.txt tokenizer_config.json; do
  rm -rf "$tmp/fifo" && cp -r "$fix/models/opt-tiny-f32" "$tmp/fifo" && rm "$tmp/fifo/$f" && mkfifo "$tmp/fifo/$f"
  expect 1 "$f: not a regular file" -- timeout 20 $h info --model "$tmp/fifo"
done
mkfifo "$tmp/fifo-task.json" "$tmp/fifo-data.tsv" "$tmp/fifo-run.json"
expect 1 "fifo-task.json: not a regular file" -- timeout 20 $h data --task "$tmp/fifo-task.json"
expect 1 "fifo-data.tsv: not a regular file" -- timeout 20 $h data --task sst2 --data "$tmp/fifo-data.tsv"
expect 1 "fifo-run.json: not a regular file" -- timeout 20 $h train --config "$tmp/fifo-run.json" --headless
mkdir -p "$tmp/fifo-ck" && mkfifo "$tmp/fifo-ck/checkpoint.json"
expect 1 "checkpoint.json: not a regular file" -- timeout 20 $h train --resume "$tmp/fifo-ck" --headless

# plot: figures from journals
expect 0 "usage: helene plot" -- $h plot --help
expect 2 "-o FILE.png" -- $h plot "$tmp/j.jsonl"
expect 2 "at least one journal" -- $h plot -o "$tmp/x.png"
expect 1 "must end in .png, .svg or .pdf" -- $h plot "$tmp/j.jsonl" -o "$tmp/x.gif"
expect 1 "no step lines" -- $h plot "$tmp/null.json" -o "$tmp/x.png"
expect 0 "plotted 2 runs to" -- $h plot "$tmp/j.jsonl" -o "$tmp/x.png" --title "runs"
[ "$(head -c 4 "$tmp/x.png" | tail -c 3)" = "PNG" ] && pass=$((pass + 1)) || { echo "FAIL: plot wrote no PNG"; fail=$((fail + 1)); }

# race: arms on identical data and probes
expect 2 "give 2 to 4 arms" -- $h race --objective quadratic --arm mezo --headless
expect 2 "time-limit does not apply" -- $h race --objective quadratic --arm mezo --arm helene --time-limit 10s --headless
expect 2 "optimizer" -- $h race --objective quadratic --arm mezo --arm sgd --headless
expect 2 "is not KEY=VALUE" -- $h race --objective quadratic --arm mezo --arm mezo:lr --headless
expect 2 "lr: bad value" -- $h race --objective quadratic --arm mezo --arm mezo:lr=-1 --headless
expect 1 "more than the 1 MiB --max-memory allows" -- $h race --objective quadratic --arm mezo --arm helene --max-memory 1 --headless
expect 0 '"arms":\[' -- $h race --objective quadratic --arm helene --arm mezo --steps 30 --eval-every 10 --json --headless
strip() { grep "\"arm\":$1,\"step\"" "$2" | sed 's/"arm":[0-9],//; s/,"ms_[a-z]*":[0-9.e+-]*//g'; }
# identical arms give identical journals
$h race --objective quadratic --arm zo-adam --arm zo-adam --steps 200 --eval-every 50 --log "$tmp/same.jsonl" --headless > /dev/null 2>&1
if [ "$(strip 0 "$tmp/same.jsonl" | md5sum)" = "$(strip 1 "$tmp/same.jsonl" | md5sum)" ] && [ "$(strip 0 "$tmp/same.jsonl" | wc -l)" -eq 200 ]; then
  pass=$((pass + 1))
else
  echo "FAIL: identical race arms gave different journals"; fail=$((fail + 1))
fi
# an arm of a race is the same method run alone, bit for bit (parameters,
# optimizer state and every journal step line)
$h race --objective quadratic --arm helene:kappa=1 --arm mezo --steps 200 --eval-every 50 --save "$tmp/race" --log "$tmp/race.jsonl" --headless > /dev/null 2>&1
$h train --objective quadratic --optimizer helene --kappa 1 --steps 200 --eval-every 50 --save "$tmp/solo" --log "$tmp/solo.jsonl" --headless > /dev/null 2>&1
grep '^{"step"' "$tmp/solo.jsonl" | sed 's/,"ms_[a-z]*":[0-9.e+-]*//g' > "$tmp/solo.steps"
if cmp -s "$tmp/race/arm-0/params.safetensors" "$tmp/solo/params.safetensors" &&
   cmp -s "$tmp/race/arm-0/optim.safetensors" "$tmp/solo/optim.safetensors" &&
   [ "$(strip 0 "$tmp/race.jsonl" | md5sum)" = "$(md5sum < "$tmp/solo.steps")" ]; then
  pass=$((pass + 1))
else
  echo "FAIL: race arm 0 differs from the same run alone"; fail=$((fail + 1))
fi

# a race resumed equals the race run through, bit for bit (every arm's
# parameters and state, every journal step line); the annealing horizon is
# fixed, as for helene train, so --steps does not stretch it
$h race --objective quadratic --arm helene --arm zo-adam --anneal-horizon 20 --steps 200 --eval-every 50 --save "$tmp/rfull" --log "$tmp/rfull.jsonl" --headless > /dev/null 2>&1
$h race --objective quadratic --arm helene --arm zo-adam --anneal-horizon 20 --steps 100 --eval-every 50 --save "$tmp/rr" --log "$tmp/rr.jsonl" --headless > /dev/null 2>&1
expect 0 "zo-adam \(resumed\)" -- $h race --resume "$tmp/rr" --steps 200 --log "$tmp/rr.jsonl" --headless
steps_of() { grep -v '"event"' "$1" | sed 's/,"ms_[a-z]*":[0-9.e+-]*//g' | md5sum; }
if cmp -s "$tmp/rr/arm-0/params.safetensors" "$tmp/rfull/arm-0/params.safetensors" &&
   cmp -s "$tmp/rr/arm-1/optim.safetensors" "$tmp/rfull/arm-1/optim.safetensors" &&
   [ "$(steps_of "$tmp/rr.jsonl")" = "$(steps_of "$tmp/rfull.jsonl")" ]; then
  pass=$((pass + 1))
else
  echo "FAIL: a resumed race differs from the race run through"; fail=$((fail + 1))
fi
expect 2 "give no --arm" -- $h race --resume "$tmp/rr" --arm mezo --steps 300 --headless
expect 2 "holds no race" -- $h race --resume "$tmp" --steps 300 --headless
expect 1 "already holds a journal" -- $h race --objective quadratic --arm helene --arm mezo --log "$tmp/rr.jsonl" --headless

# a race interrupted: every arm checkpointed, exit 130
$h race --objective quadratic --arm helene --arm mezo --steps 100000000 --eval-every 0 --save "$tmp/rint" --headless > /dev/null 2> "$tmp/rint.err" &
pid=$!
for _ in $(seq 100); do grep -q "step" "$tmp/rint.err" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && [ -f "$tmp/rint/arm-0/checkpoint.json" ] && [ -f "$tmp/rint/arm-1/checkpoint.json" ] &&
   grep -q "helene train --resume $tmp/rint/arm-1" "$tmp/rint.err"; then
  pass=$((pass + 1))
else
  echo "FAIL: race SIGINT -> exit $rc"; tail -3 "$tmp/rint.err"; fail=$((fail + 1))
fi

# started by mpirun as one of 2 ranks: a build without MPI says so and runs
# nothing (an MPI build's mpirun tests are tests/test_mpi.sh)
if ! grep -q '^#define HAVE_MPI 1' config.h 2>/dev/null; then
  expect 2 "built without MPI .*--with-mpi" -- env OMPI_COMM_WORLD_SIZE=2 $h train --objective quadratic --steps 2 --headless
fi
expect 2 "--data-seeds runs one process" -- env OMPI_COMM_WORLD_SIZE=2 $h train --data-seeds 1,2 --headless
expect 2 "--shards: shards: expected a non-negative" -- $h train --shards -1 --headless
expect 1 "quadratic objective cannot be evaluated in shards" -- $h train --objective quadratic --shards 2 --steps 1 --headless
# SIGINT: checkpoint and exit 130 with the resume command
$h train --objective quadratic --steps 100000000 --eval-every 0 --save "$tmp/int" --headless > /dev/null 2> "$tmp/int.err" &
pid=$!
for _ in $(seq 100); do grep -q "step" "$tmp/int.err" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q "helene train --resume $tmp/int" "$tmp/int.err" && [ -f "$tmp/int/checkpoint.json" ]; then
  pass=$((pass + 1))
else
  echo "FAIL: SIGINT -> exit $rc"; cat "$tmp/int.err" | tail -3; fail=$((fail + 1))
fi

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
