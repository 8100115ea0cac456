#!/usr/bin/python3
"""SentencePiece-BPE tokenizer fixtures (Llama 2 / TinyLlama / Mistral v0.1-0.3 style).

Trains a tiny SentencePiece BPE model with Llama 2's trainer settings on public-domain
text (the King James Bible, Debian `bible-kjv`), converts it to Hugging Face
`tokenizer.json` the way transformers' LlamaConverter does (legacy Prepend+Replace
normalizer layout, and the newer Metaspace pre-tokenizer layout), and writes golden
encodings computed by Google's sentencepiece library (the independent reference).

Before writing anything, every golden is re-encoded by a small Python re-implementation of
Hugging Face tokenizers' BPE model on the generated tokenizer.json; any text where the two
disagree is dropped (and printed).

Needs: Debian `python3-sentencepiece` (0.1.97) and `bible-kjv`; run with /usr/bin/python3
from the repository root:

    /usr/bin/python3 tests/ref/spm_fixtures.py [--out tests/fixtures/tokenizers]

Deterministic: regenerating gives identical bytes (checked by training twice).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import sentencepiece as spm

VOCAB_SIZE = 600
SPIECE = "\u2581"  # ▁

# Llama 2's trainer settings (from its tokenizer.model's trainer_spec), vocab shrunk.
TRAINER = dict(
    model_type="bpe",
    vocab_size=VOCAB_SIZE,
    byte_fallback=True,
    split_digits=True,
    split_by_unicode_script=True,
    split_by_number=True,
    split_by_whitespace=True,
    treat_whitespace_as_suffix=False,
    allow_whitespace_only_pieces=True,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    character_coverage=0.9995,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,
    max_sentence_length=4192,
    num_threads=1,
    minloglevel=2,
)

LONG = (
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of such "
    "a man may be on his first entering a neighbourhood, this truth is so well fixed in the "
    "minds of the surrounding families, that he is considered as the rightful property of "
    "some one or other of their daughters. In 1813 the price was 18 shillings; by 2024 a "
    "copy cost $7.99 (or 6,50 \u20ac) \u2014 \u00abplus \u00e7a change\u00bb.\n\n"
    "And the second paragraph\tends here!  "
)

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "And Jacob said unto Laban, Give me my wife, for my days are fulfilled.",
    "ALL CAPS SHOUTING and lowercase whispering",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "double  space  here",
    "line one\nline two",
    "\nstarts with a newline",
    "tab\tseparated\tvalues",
    "In 2026 it cost 3.50",
    "Call 555-0199 at 10:45, ok?",
    "Wait... what?! (Yes); \"quoted\" & 'single' [brackets] {braces} #tag @user 100%",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "\u00dcber gr\u00fcne Br\u00fccken",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "smile \U0001F642 please",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03b3\u03c1\u03ac\u03bc\u03bc\u03b1\u03c4\u03b1",
    "mixed: KJV 1611, \u00fc, \U0001F642, \u65e5\u672c",
    "combining e\u0301 accent",
    " ",
    "  ",
    "   ",
    "      ",
    "    four leading spaces",
    "a   b    c",
    "code:\n    indented line\n\tand a tab",
    "  10 And God called the dry land Earth",
    "a",
    "ooooooooo",
    "thethethe",
    LONG,
]


def kjv_corpus(path):
    """Every 10th non-empty line of `bible -l10000 gen1:1-rev22:21`, keeping its indentation
    (two spaces before the verse number) so that whitespace runs are seen in training."""
    out = subprocess.run(["bible", "-l10000", "gen1:1-rev22:21"], check=True,
                         capture_output=True, text=True).stdout
    lines = [l.rstrip() for l in out.splitlines() if l.strip()]
    keep = lines[::10]
    with open(path, "w", encoding="utf-8") as f:
        for l in keep:
            f.write(l + "\n")
    return len(keep)


def train(tmp):
    """Relative names, so the trainer_spec stored in the model is the same on any machine."""
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        spm.SentencePieceTrainer.train(input="kjv.txt", model_prefix="spm", **TRAINER)
        with open("spm.model", "rb") as f:
            return f.read()
    finally:
        os.chdir(cwd)


def extract_merges(sp):
    """HF SentencePieceExtractor: every (l, r) with l+r, l, r pieces; sorted by
    (id of l+r, id of l, id of r)."""
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    merges = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                merges.append((pid, vocab[l], vocab[r], l, r))
    merges.sort()
    # transformers >= 4.36 sorts by score (descending, stable) instead; for a BPE model the
    # scores of normal pieces fall with the id, so the order is the same. Check it.
    by_score = sorted(merges, key=lambda m: -sp.get_score(m[0]))
    assert [m[:3] for m in by_score] == [m[:3] for m in merges], "score order != id order"
    return [(l, r) for _, _, _, l, r in merges]


def tokenizer_json(sp, merges, layout):
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    assert len(vocab) == n
    added = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i in (0, 1, 2)]
    assert [a["content"] for a in added] == ["<unk>", "<s>", "</s>"]
    if layout == "legacy":
        normalizer = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPIECE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPIECE}]}
        pre = None
    else:
        normalizer = None
        pre = {"type": "Metaspace", "replacement": SPIECE, "prepend_scheme": "first",
               "split": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPIECE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "vocab": vocab,
            "merges": [f"{l} {r}" for l, r in merges],
        },
    }


# ---- independent re-implementation of HF tokenizers' pipeline for these files ----

def hf_normalize(tj, text):
    """Returns the one 'word' the BPE model sees."""
    if tj["normalizer"] is not None:  # legacy: Prepend("▁") (non-empty input only), Replace
        s = text
        if s:
            s = SPIECE + s
        return s.replace(" ", SPIECE)
    # Metaspace(replacement="▁", prepend_scheme="first", split=false)
    s = text.replace(" ", SPIECE)
    if not s.startswith(SPIECE):
        s = SPIECE + s
    return s


def hf_bpe(tj, word):
    m = tj["model"]
    vocab = m["vocab"]
    ranks = {}
    for r, mg in enumerate(m["merges"]):
        l, rr = mg.split(" ")
        ranks.setdefault((l, rr), r)
    # initial symbols: characters; unknown char -> <0xXX> bytes (all present) else <unk>
    syms = []
    for ch in word:
        if ch in vocab:
            syms.append(ch)
        else:
            bs = [f"<0x{b:02X}>" for b in ch.encode("utf-8")]
            if m["byte_fallback"] and all(b in vocab for b in bs):
                syms.extend(bs)
            elif m["fuse_unk"] and syms and syms[-1] is None:
                pass
            else:
                syms.append(None)  # <unk>
    while True:
        best = None
        for i in range(len(syms) - 1):
            if syms[i] is None or syms[i + 1] is None:
                continue
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    return [vocab[s] if s is not None else vocab[m["unk_token"]] for s in syms]


def hf_encode(tj, text):
    if text == "":
        return []
    return hf_bpe(tj, hf_normalize(tj, text))


def fuzz_check(sp, legacy, meta, n=30000, seed=1):
    """sentencepiece vs hf_encode on random strings, both layouts; returns the mismatches."""
    rng = random.Random(seed)
    alpha = list("ethaoinsrdl  " + SPIECE + "  THEAND,.;:0123456789\n\t\u00e9\u65e5\U0001F642-!")
    words = [sp.id_to_piece(i).replace(SPIECE, " ") for i in range(259, sp.get_piece_size())]
    bad = []
    for k in range(n):
        if k % 2:
            t = "".join(rng.choice(alpha) for _ in range(rng.randint(1, 30)))
        else:
            t = "".join(rng.choice(words + alpha) for _ in range(rng.randint(1, 8)))
        if hf_encode(legacy, t) != sp.encode(t):
            bad.append(("legacy", t))
        if t.strip(" ") and not t.startswith(SPIECE):
            ref = sp.encode(t[1:] if t.startswith(" ") else t)
            if hf_encode(meta, t) != ref:
                bad.append(("metaspace", t))
    return bad


def uses_bytes(sp, ids):
    return any(sp.is_byte(i) for i in ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tokenizers")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="spm_fixtures.")
    try:
        corpus = os.path.join(tmp, "kjv.txt")
        nlines = kjv_corpus(corpus)
        csize = os.path.getsize(corpus)
        blob = train(tmp)
        assert blob == train(tmp), "training is not deterministic"
        model = os.path.join(tmp, "spm.model")
        print(f"corpus: {nlines} lines, {csize} bytes, sha256 "
              f"{hashlib.sha256(open(corpus, 'rb').read()).hexdigest()}")
        print(f"model: {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}")

        sp = spm.SentencePieceProcessor(model_file=model)
        assert sp.get_piece_size() == VOCAB_SIZE
        merges = extract_merges(sp)
        legacy = tokenizer_json(sp, merges, "legacy")
        meta = tokenizer_json(sp, merges, "metaspace")

        bad = fuzz_check(sp, legacy, meta)
        for layout, t in bad[:20]:
            print(f"FUZZ DISAGREE [{layout}] {t!r}")
        assert not bad, f"{len(bad)} random strings disagree"
        print("fuzz: 30000 random strings agree in both layouts")

        goldens, meta_goldens, dropped = [], [], []
        for t in TEXTS:
            ids = sp.encode(t)
            mine = hf_encode(legacy, t)
            if mine != ids:
                dropped.append(("spm-bpe", t, ids, mine))
            else:
                goldens.append({"text": t, "ids": ids})
            # Metaspace (prepend_scheme "first") does not add "▁" when the text already
            # starts with a space, so its reference is sp.encode of the text without that
            # one leading space (sentencepiece re-adds it as the dummy prefix).
            if t.strip(" ") == "":
                continue  # whitespace-only: no sentencepiece equivalent; not a golden
            mref = sp.encode(t[1:] if t.startswith(" ") else t)
            mmine = hf_encode(meta, t)
            if mmine != mref:
                dropped.append(("spm-bpe-metaspace", t, mref, mmine))
            else:
                meta_goldens.append({"text": t, "ids": mref})
        for name, t, ref, mine in dropped:
            print(f"DISAGREE [{name}] {t!r}\n  sentencepiece: {ref} "
                  f"{[sp.id_to_piece(i) for i in ref]}\n  hf-bpe:        {mine} "
                  f"{[sp.id_to_piece(i) for i in mine]}")
        nbyte = sum(uses_bytes(sp, g["ids"]) for g in goldens)
        print(f"goldens: spm-bpe {len(goldens)} ({nbyte} with byte fallback), "
              f"spm-bpe-metaspace {len(meta_goldens)}; dropped {len(dropped)}")

        cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
               "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
               "tokenizer_class": "LlamaTokenizer", "legacy": True}

        def dump(path, obj):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False, indent=2)
                f.write("\n")

        def dump_lines(path, rows):
            with open(path, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")

        for sub, tj, gold, legacy_flag in (("spm-bpe", legacy, goldens, True),
                                           ("spm-bpe-metaspace", meta, meta_goldens, False)):
            d = os.path.join(args.out, sub)
            os.makedirs(d, exist_ok=True)
            dump(os.path.join(d, "tokenizer.json"), tj)
            dump(os.path.join(d, "tokenizer_config.json"), dict(cfg, legacy=legacy_flag))
            dump_lines(os.path.join(d, "golden.jsonl"), gold)
        shutil.copyfile(model, os.path.join(args.out, "spm-bpe", "spm.model"))
        print(f"vocab {sp.get_piece_size()}, merges {len(merges)}, written to {args.out}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
