#!/usr/bin/python3
"""Make a smaller GPT-2 byte-level BPE tokenizer by truncating the merge list.

    /usr/bin/python3 data/corpus/make_vocab.py --out DIR [--merges M]
        [--gpt2 data/gpt2] [--corpus FILE ...] [--max-bytes N]

Reads data/gpt2/vocab.json + merges.txt (GPT-2's 50,257-token BPE) and
writes into DIR:

  vocab.json             <s>=0 <pad>=1 </s>=2 <unk>=3 (OPT's convention),
                         then the 256 single-byte tokens in byte order
                         (ids 4..259), then one token per kept merge, in
                         merge order: V = 260 + M tokens.
  merges.txt             "#version: 0.2" and the first M merges of GPT-2's
                         list whose two parts are already in the vocabulary
                         (in GPT-2's list every merge's parts come from
                         earlier merges or bytes, so these are simply the
                         first M lines; the script checks and says so).
  tokenizer_config.json  GPT2Tokenizer, bos/eos "</s>", add_bos_token true
                         (OPT prepends </s> as BOS), pad "<pad>", unk "<unk>".
  special_tokens_map.json

Why a truncated merge list is a valid, smaller GPT-2 BPE
  GPT-2's encoder splits text into pieces with its pre-tokenizer regex, maps
  each piece's bytes to the 256 byte tokens and then repeatedly applies the
  lowest-ranked merge present.  Keeping only the first M merges:
  * every kept merge's parts are tokens of the new vocabulary (bytes or the
    results of earlier kept merges), and its result is a token too, so
    loaders that check merges against vocab.json (Hugging Face's, helene's
    bpe.c) accept the files;
  * every byte has a token, so every text still encodes, losslessly
    (decode(encode(x)) == x) and without <unk>;
  * the encoding is exactly GPT-2's encoding stopped at the first step where
    GPT-2 would use a merge ranked >= M, so a piece never becomes more
    tokens than its bytes and common words (the early merges) stay whole.
  Only the ids differ from GPT-2's, so a model trained with this tokenizer
  must ship these files.

With --corpus, it also reports tokens per byte on those files (the first
--max-bytes of each, default all) with the truncated and with the full
merge list, using the small BPE encoder below (GPT-2's regex, exact Unicode
letter/number classes from Python's unicodedata).  --check FILE compares the
encoder with the r50k_base records of a gpt-tokenizer TestPlans.txt.

Python 3 standard library only.
"""

import argparse
import json
import os
import re
import sys
import unicodedata

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
MUST_BE_SINGLE = [" great", " terrible", " It", " was"]


def bytes_to_unicode():
    """GPT-2's byte -> printable character map: printable Latin-1 bytes map
    to themselves, the other 68 bytes to U+0100 upwards in byte order."""
    keep = (list(range(ord("!"), ord("~") + 1))
            + list(range(ord("\xa1"), ord("\xac") + 1))
            + list(range(ord("\xae"), ord("\xff") + 1)))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_CHAR = bytes_to_unicode()


def load_gpt2(folder):
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.rstrip("\r\n")
            if (i == 0 and line.startswith("#version")) or not line:
                continue
            a, sep, b = line.partition(" ")
            if not sep or not a or not b or " " in b:
                raise SystemExit("make_vocab: %s/merges.txt line %d: %r"
                                 % (folder, i + 1, line))
            merges.append((a, b))
    return vocab, merges


def truncate(merges, m):
    """First m merges whose parts are in the growing vocabulary.
    Returns (vocab dict token->id, kept merges, number skipped)."""
    vocab = {}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[BYTE_CHAR[b]] = len(vocab)
    kept, skipped = [], 0
    for a, b in merges:
        if len(kept) >= m:
            break
        if a not in vocab or b not in vocab:
            skipped += 1
            continue
        kept.append((a, b))
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    return vocab, kept, skipped


# --------------------------------------------------------------- encoder

def _class_ranges(pred):
    parts, start = [], None
    for cp in range(0x110000):
        ok = pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            parts.append((start, cp - 1))
            start = None
    if start is not None:
        parts.append((start, 0x10FFFF))

    def esc(cp):
        return "\\U%08x" % cp
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b)
                   for a, b in parts)


def gpt2_pretokenizer():
    """GPT-2's pattern
         's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    with \\p{L} / \\p{N} spelled out from unicodedata categories."""
    cat = unicodedata.category
    L = _class_ranges(lambda c: cat(chr(c))[0] == "L")
    N = _class_ranges(lambda c: cat(chr(c))[0] == "N")
    pat = (r"'s|'t|'re|'ve|'m|'ll|'d| ?[%s]+| ?[%s]+| ?[^\s%s%s]+"
           r"|\s+(?!\S)|\s+") % (L, N, L, N)
    return re.compile(pat)


class Encoder:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {}
        for r, (a, b) in enumerate(merges):
            self.ranks[(a, b)] = r   # a repeated pair keeps its last rank
        self.cache = {}
        self.pat = None

    def bpe(self, word):
        got = self.cache.get(word)
        if got is not None:
            return got
        parts = list(word)
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (parts[i], parts[i + 1]), r
            if best is None:
                break
            a, b = best
            out, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        if len(self.cache) < 500000:
            self.cache[word] = ids
        return ids

    def encode(self, text, pat):
        ids = []
        for piece in pat.findall(text):
            word = "".join(BYTE_CHAR[b] for b in piece.encode("utf-8"))
            ids.extend(self.bpe(word))
        return ids


def check_testplans(path, enc, pat):
    """Compare with the r50k_base (GPT-2) records of TestPlans.txt."""
    with open(path, encoding="utf-8") as f:
        recs = f.read().split("\n\n")
    n = bad = 0
    for rec in recs:
        lines = rec.strip("\n").split("\n")
        if len(lines) < 3 or lines[0] != "EncodingName: r50k_base":
            continue
        sample = lines[1][len("Sample: "):]
        want = json.loads(lines[2][len("Encoded: "):])
        got = enc.encode(sample, pat)
        n += 1
        if got != want:
            bad += 1
            print("  mismatch: %r\n    want %s\n    got  %s"
                  % (sample[:60], want[:20], got[:20]))
    print("encoder check: %d of %d r50k_base records match"
          % (n - bad, n))
    return bad == 0


def write_tokenizer(out, vocab, kept):
    os.makedirs(out, exist_ok=True)

    def write(name, text):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, name))

    write("vocab.json", json.dumps(vocab, ensure_ascii=False,
                                   separators=(",", ":")) + "\n")
    write("merges.txt", "#version: 0.2\n"
          + "".join("%s %s\n" % ab for ab in kept))
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": True,
        "add_prefix_space": False,
        "bos_token": "</s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "errors": "replace",
    }
    write("tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    write("special_tokens_map.json", json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "pad_token",
                                "unk_token")}, indent=2) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(
        description="Truncate GPT-2's BPE merge list into a smaller "
                    "tokenizer (see the module docstring).")
    ap.add_argument("--gpt2", default=os.path.join(here, "..", "gpt2"),
                    help="folder with GPT-2's vocab.json and merges.txt")
    ap.add_argument("--merges", type=int, default=8000, metavar="M",
                    help="merges to keep (default 8000: V = 8260)")
    ap.add_argument("--out", help="folder to write the tokenizer into")
    ap.add_argument("--corpus", nargs="*", default=[],
                    help="text files to measure tokens per byte on")
    ap.add_argument("--max-bytes", type=int, default=0,
                    help="measure on at most this many bytes of each file "
                         "(cut at a line end; 0 = all)")
    ap.add_argument("--check", metavar="TESTPLANS",
                    help="check the encoder on gpt-tokenizer's "
                         "TestPlans.txt (full GPT-2 merges)")
    a = ap.parse_args()
    if a.merges < 0:
        ap.error("--merges must be >= 0")

    gvocab, gmerges = load_gpt2(a.gpt2)
    vocab, kept, skipped = truncate(gmerges, a.merges)
    if len(kept) < a.merges:
        print("make_vocab: only %d merges available" % len(kept),
              file=sys.stderr)
    # sanity: every kept merge's parts and result are tokens; all bytes are
    for x, y in kept:
        assert x in vocab and y in vocab and x + y in vocab
    assert all(BYTE_CHAR[b] in vocab for b in range(256))
    n_dup = len(kept) - (len(vocab) - len(SPECIALS) - 256)
    print("vocab size %d = %d special + 256 bytes + %d merges "
          "(%d merges skipped for missing parts, %d results already "
          "tokens)" % (len(vocab), len(SPECIALS), len(kept), skipped, n_dup))

    single = []
    for w in MUST_BE_SINGLE:
        tok = "".join(BYTE_CHAR[b] for b in w.encode("utf-8"))
        single.append((w, tok in vocab))
    print("single tokens: " + ", ".join(
        "%r %s" % (w, "yes (id %d)" % vocab["".join(
            BYTE_CHAR[b] for b in w.encode("utf-8"))] if ok else "NO")
        for w, ok in single))

    if a.out:
        write_tokenizer(a.out, vocab, kept)
        print("wrote %s/{vocab.json,merges.txt,tokenizer_config.json,"
              "special_tokens_map.json}" % a.out)

    pat = None
    if a.check or a.corpus:
        pat = gpt2_pretokenizer()
    ok = True
    if a.check:
        ok = check_testplans(a.check, Encoder(gvocab, gmerges), pat)

    if a.corpus:
        small = Encoder(vocab, kept)
        full = Encoder(gvocab, gmerges)
        tb = ts = tf = 0
        for path in a.corpus:
            with open(path, encoding="utf-8") as f:
                text = f.read(a.max_bytes) if a.max_bytes else f.read()
            if a.max_bytes and "\n" in text:
                text = text[:text.rindex("\n") + 1]
            nb = len(text.encode("utf-8"))
            ns = nf = 0
            for line in text.splitlines(keepends=True):
                ns += len(small.encode(line, pat))
                nf += len(full.encode(line, pat))
            tb, ts, tf = tb + nb, ts + ns, tf + nf
            print("%s: %d bytes; %d merges: %d tokens (%.4f tokens/byte, "
                  "%.2f bytes/token); full GPT-2: %d tokens (%.4f "
                  "tokens/byte, %.2f bytes/token); ratio %.3f"
                  % (path, nb, len(kept), ns, ns / max(nb, 1),
                     nb / max(ns, 1), nf, nf / max(nb, 1), nb / max(nf, 1),
                     ns / max(nf, 1)))
        if len(a.corpus) > 1:
            print("total: %d bytes; %d vs %d tokens; ratio %.3f"
                  % (tb, ts, tf, ts / max(tf, 1)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
