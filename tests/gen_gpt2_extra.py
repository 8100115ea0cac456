#!/usr/bin/python3
"""gen_gpt2_extra.py - write tests/fixtures/gpt2_extra.jsonl: GPT-2 encodings
of texts the 64 gpt-tokenizer cases miss (whitespace runs, newlines, tabs,
contractions, Unicode spaces and numbers, long runs), one JSON object a line:
{"text": "...", "ids": [...]}.

The reference is GPT-2's encoder algorithm (OpenAI's encoder.py: the regex
pre-tokenizer from the `regex` module, then merges lowest rank first, all
occurrences of a pair at once), re-written here; it reproduces all 64
r50k_base cases of gpt2_testplans.txt, which this script checks first.
Needs Debian's python3-regex.  Regenerate from the top of the source tree:

    /usr/bin/python3 tests/gen_gpt2_extra.py > tests/fixtures/gpt2_extra.jsonl

Texts contain no NUL (cJSON strings end there); NUL and invalid UTF-8 are
covered by the round-trip tests instead.
"""
import json
import sys

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

TEXTS = [
    "Hello  world", "a\tb", "line1\nline2", "para\n\n\nnext", "end   ", "   start",
    "windows\r\nline\r\n", " \n x", "tab\t\t x", "a\u00a0b", "\u3000\u3000x", "a\u2028b",
    "file\x1cseparator", "a \u0085 b", "one\u2009thin", "no\u200bbreak", "\ufeffbom",
    "I'm sure we don't know, they're here, we've won, you'll see, he'd go, it's mine",
    "DON'T SHOUT IT'S LOUD", "'''s", "rock 'n' roll", "the 's", "x's'", "'",
    "3.14159 and 1,000,000 in 2024", "x\u00b2+y\u00b2=z\u00b2", "\u216b chapters",
    "\u0661\u0662\u0663 digits", "e\u0301t\u0301e\u0301", "na\u00efve caf\u00e9 r\u00e9sum\u00e9",
    "a" * 64, "=" * 40, "<|endoftext|>", "https://example.com/path?q=1&r=%20",
    "def f(x):\n    return x ** 2\n", "\U0001f469\u200d\U0001f4bb and \U0001f1ef\U0001f1f5",
    " great", " terrible", "It was great!", "  \t \n", "\n", " ", "The movie was terrible .",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Gpt2:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = [l for l in f.read().split("\n") if l and not l.startswith("#version")]
        self.ranks = {tuple(l.split(" ")): i for i, l in enumerate(lines)}
        self.b2u = bytes_to_unicode()

    def merge(self, word):
        word = tuple(word)
        while len(word) > 1:
            best = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(text):
            ids += [self.vocab[t] for t in self.merge(self.b2u[b] for b in piece.encode("utf-8"))]
        return ids


def check_testplans(enc, path):
    lines = open(path, encoding="utf-8").read().split("\n")
    n = 0
    for i, l in enumerate(lines):
        if l == "EncodingName: r50k_base":
            text = lines[i + 1][len("Sample: "):]
            want = json.loads(lines[i + 2][len("Encoded: "):])
            if enc.encode(text) != want:
                sys.exit("reference disagrees with %s line %d" % (path, i + 2))
            n += 1
    if n != 64:
        sys.exit("expected 64 r50k_base cases in %s, found %d" % (path, n))


def main():
    enc = Gpt2("data/gpt2/vocab.json", "data/gpt2/merges.txt")
    check_testplans(enc, "tests/fixtures/gpt2_testplans.txt")
    for t in TEXTS:
        assert "\0" not in t
        print(json.dumps({"text": t, "ids": enc.encode(t)}, ensure_ascii=True))


if __name__ == "__main__":
    main()
