#!/usr/bin/env python3
"""convert.py - turn the UCI Sentiment Labelled Sentences, as shipped in npm
sentiment@5.0.2 (test/fixtures/{imdb,yelp,amazon}.json), into the TSV files
helene bundles: <set>/{train,dev,test}.tsv with the header `sentence<TAB>label`.

Run once; the output is committed.  Python 3 standard library only:

    cd /tmp && npm pack sentiment@5.0.2 && tar xzf sentiment-5.0.2.tgz
    python3 data/sentiment/convert.py /tmp/package

What it does, per set (see README.md for the why):
  - reads the JSON array [{"text": ..., "class": 0|1}, ...] and drops the
    trailing sentinel {"text": "", "class": null};
  - repairs C1 control characters U+0080..U+009F, which are Windows-1252 bytes
    that were decoded as Latin-1 upstream (U+0096 -> EN DASH etc.);
  - strips leading/trailing whitespace (the IMDB sentences end in two spaces);
  - splits each class stratified: the class's examples in file order are
    shuffled with splitmix64 + Fisher-Yates (the same generator as
    data/sample.c), one generator per set seeded with SEED, class 0 first;
    the first 300 go to train, the next 100 to dev, the next 100 to test;
  - writes each split in the original file order.

It does not deduplicate (the sets contain a few repeated sentences, as the
upstream data does) and does not touch the text otherwise.
"""
import json
import os
import sys

SEED = 42
SETS = ("imdb", "yelp", "amazon")
PER_CLASS = {"train": 300, "dev": 100, "test": 100}
SPLITS = ("train", "dev", "test")
MASK64 = (1 << 64) - 1


class SplitMix64:
    """splitmix64 (Steele, Lea, Flood 2014), bit-identical to data/sample.c."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        """Uniform in [0, n) by rejection (no modulo bias)."""
        threshold = ((1 << 64) - n) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n

    def shuffle(self, a):
        """Fisher-Yates from the end: swap a[i] with a[below(i + 1)]."""
        for i in range(len(a) - 1, 0, -1):
            j = self.below(i + 1)
            a[i], a[j] = a[j], a[i]


def repair(text):
    out = []
    for ch in text:
        if 0x80 <= ord(ch) <= 0x9F:
            ch = bytes([ord(ch)]).decode("cp1252")  # raises on the 5 undefined bytes
        out.append(ch)
    return "".join(out).strip()


def convert(src_dir, out_dir, name):
    with open(os.path.join(src_dir, "test", "fixtures", name + ".json"), encoding="utf-8") as f:
        rows = json.load(f)
    if rows[-1] != {"text": "", "class": None}:
        raise SystemExit(f"{name}: expected a trailing empty sentinel, got {rows[-1]!r}")
    rows = rows[:-1]
    examples = []
    repaired = 0
    for i, r in enumerate(rows):
        if set(r) != {"text", "class"} or r["class"] not in (0, 1) or type(r["class"]) is not int:
            raise SystemExit(f"{name}[{i}]: unexpected record {r!r}")
        text = repair(r["text"])
        repaired += any(0x80 <= ord(c) <= 0x9F for c in r["text"])
        if not text or any(c in text for c in "\t\r\n"):
            raise SystemExit(f"{name}[{i}]: empty text or a tab/newline in {text!r}")
        examples.append((text, r["class"]))
    if len(examples) != 1000:
        raise SystemExit(f"{name}: {len(examples)} examples, expected 1000")

    rng = SplitMix64(SEED)
    chosen = {s: [] for s in SPLITS}
    for cls in (0, 1):
        idx = [i for i, (_, c) in enumerate(examples) if c == cls]
        if len(idx) != 500:
            raise SystemExit(f"{name}: class {cls} has {len(idx)} examples, expected 500")
        rng.shuffle(idx)
        at = 0
        for s in SPLITS:
            chosen[s] += idx[at:at + PER_CLASS[s]]
            at += PER_CLASS[s]

    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for s in SPLITS:
        path = os.path.join(out_dir, name, s + ".tsv")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("sentence\tlabel\n")
            for i in sorted(chosen[s]):
                f.write(f"{examples[i][0]}\t{examples[i][1]}\n")
        n0 = sum(1 for i in chosen[s] if examples[i][1] == 0)
        print(f"{name}/{s}.tsv: {len(chosen[s])} examples ({n0} negative, "
              f"{len(chosen[s]) - n0} positive)")
    print(f"{name}: {repaired} sentences had Windows-1252 characters repaired")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: convert.py UNPACKED_NPM_PACKAGE_DIR")
    out_dir = os.path.dirname(os.path.abspath(__file__))
    for name in SETS:
        convert(sys.argv[1], out_dir, name)


if __name__ == "__main__":
    main()
