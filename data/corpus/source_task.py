"""The bundled `source` task: which work is a passage from?

Called by corpus.py (--task-out DIR) with the *held-out* documents of each
source, so no passage of the task was ever seen in pretraining (train.txt).
Python 3 standard library only; deterministic: the same held-out documents
give the same bytes.

Classes (label value -> label word; the words are single tokens of the
bundled 8k tokenizer and of GPT-2's):
  bible   King James Bible verses          -> " God"
  austen  Jane Austen's novels             -> " love"
  sotu    State of the Union addresses     -> " government"
The template asks what the passage is about ("{passage} This passage is
about"): " Bible", " novel" or " speech" would name the source directly, but
" Bible" is two tokens in the bundled vocabulary, and single-token words make
the loss a plain softmax over three logits.

Left out, with the reason:
  Moby-Dick  only 17 held-out paragraphs (848 words, about 30 passages):
             too few for a dev and a test split of 50 each.
  WordNet    its "lemma, lemma: gloss" format makes the class trivial.

Passages
  KJV: one verse per passage (verses are already a few sentences at most).
  Austen, SOTU: each held-out document (a paragraph, or a run of sentences
  of an address) is cut into runs of whole sentences of at least
  PASSAGE_MIN characters; a short tail joins the run before it, so every
  passage of a document is at least PASSAGE_MIN long unless the document
  is.  Passages shorter than KEEP_MIN characters are dropped (e.g. Austen's
  one-line replies), so length alone says little about the class.

Split
  Documents of each class are ordered by the SHA-256 of their text; their
  passages fill dev (PER_CLASS_DEV), then test (PER_CLASS_TEST), then train,
  a whole document at a time (only the last document of a split may be cut
  short), so a paragraph's passages do not straddle two splits.  Train gets
  the same number of passages for every class: at most PER_CLASS_TRAIN, and
  no more than the smallest class has left (Austen: 57), so every split is
  balanced and a model cannot score by learning the class prior.  The
  counts are in SOURCES.md.  Files are TSV with a header `passage<TAB>label`, rows in the
  SHA-256 order of the passage text (so the classes are interleaved).
"""

import hashlib
import os

PASSAGE_MIN = 90
KEEP_MIN = 50
PER_CLASS_DEV = 50
PER_CLASS_TEST = 50
PER_CLASS_TRAIN = 120

CLASSES = [  # (label value, corpus source key, label word, title)
    ("bible", "kjv", "God", "King James Bible (verses)"),
    ("austen", "austen", "love", "Jane Austen's six novels (paragraphs)"),
    ("sotu", "sotu", "government",
     "State of the Union addresses, 1790-2021 (runs of sentences)"),
]


def _sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def passages_of(doc, sentences, per_verse):
    """The passages of one held-out document."""
    if per_verse:
        return [doc] if len(doc) >= KEEP_MIN else []
    out, cur = [], ""
    for s in sentences(doc):
        cur = s if not cur else cur + " " + s
        if len(cur) >= PASSAGE_MIN:
            out.append(cur)
            cur = ""
    if cur:
        if out and len(cur) < PASSAGE_MIN:
            out[-1] = out[-1] + " " + cur
        else:
            out.append(cur)
    return [p for p in out if len(p) >= KEEP_MIN]


def fill(doc_ps, n_train):
    """Passages of one class's documents (in order) into dev, test, train,
    a whole document at a time; the document that fills a split is cut
    short and the rest of it dropped.  Returns ({split: [passage]}, the
    number of documents used)."""
    want = [("dev", PER_CLASS_DEV), ("test", PER_CLASS_TEST),
            ("train", n_train)]
    got = {"train": [], "dev": [], "test": []}
    at = n_docs = 0
    for ps in doc_ps:
        while at < len(want) and len(got[want[at][0]]) >= want[at][1]:
            at += 1
        if at == len(want):
            break
        name, cap = want[at]
        got[name] += ps[:cap - len(got[name])]
        n_docs += 1
    return got, n_docs


def build(heldout, sentences):
    """heldout: source key -> list of held-out documents.  Returns
    {split: [(passage, label value)]} and per-class counts."""
    per_class = []  # per class: its documents' passages, documents in SHA-256 order
    for value, key, _, _ in CLASSES:
        docs = sorted(set(heldout[key]), key=_sha)
        per_class.append([ps for ps in (passages_of(d, sentences, key == "kjv")
                                        for d in docs) if ps])
    # train: the same number for every class, what the smallest has left
    n_train = min([PER_CLASS_TRAIN] +
                  [len(fill(doc_ps, 1 << 30)[0]["train"]) for doc_ps in per_class])
    splits = {"train": [], "dev": [], "test": []}
    counts = []
    for (value, _, _, _), doc_ps in zip(CLASSES, per_class):
        got, n_docs = fill(doc_ps, n_train)
        if min(len(got["dev"]), len(got["test"]), len(got["train"])) == 0 or \
                len(got["train"]) != n_train:
            raise SystemExit("source_task.py: too few held-out passages of %s"
                             % value)
        for name in splits:
            splits[name] += [(p, value) for p in got[name]]
        counts.append((value, n_docs, len(got["train"]), len(got["dev"]),
                       len(got["test"])))
    for name in splits:
        splits[name].sort(key=lambda pl: _sha(pl[0]))
    return splits, counts


def write(out_dir, heldout, sentences, titles):
    """Write out_dir/{train,dev,test}.tsv and out_dir/SOURCES.md.
    titles: source key -> (title, package line, licence)."""
    splits, counts = build(heldout, sentences)
    os.makedirs(out_dir, exist_ok=True)
    for name, rows in splits.items():
        tmp = os.path.join(out_dir, name + ".tsv.tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("passage\tlabel\n")
            for p, v in rows:
                if "\t" in p or "\n" in p:
                    raise SystemExit("source_task.py: tab or newline in %r"
                                     % p[:60])
                f.write("%s\t%s\n" % (p, v))
        os.replace(tmp, os.path.join(out_dir, name + ".tsv"))

    lines = [
        "# The `source` task: sources and counts",
        "",
        "Written by data/corpus/build_corpus.sh (helene) from the documents "
        "that the pretraining corpus holds out (heldout.txt), never from "
        "train.txt.  How passages are cut and split: "
        "data/corpus/source_task.py.",
        "",
        "| label | word | source | package (version) | licence | "
        "documents used | train | dev | test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tot = [0, 0, 0]
    for (value, key, word, title), (_, n_docs, tr, dv, te) in zip(CLASSES,
                                                                  counts):
        _, package, licence = titles[key]
        lines.append("| %s | \" %s\" | %s | %s | %s | %d | %d | %d | %d |"
                     % (value, word, title, package, licence, n_docs, tr,
                        dv, te))
        tot[0] += tr
        tot[1] += dv
        tot[2] += te
    lines.append("| **total** | | | | | | %d | %d | %d |" % tuple(tot))
    lines += ["",
              "Left out: Moby-Dick (17 held-out paragraphs, too few for a dev "
              "and a test split) and the WordNet glosses (their "
              "\"lemma: gloss\" format makes the class trivial).", ""]
    tmp = os.path.join(out_dir, "SOURCES.md.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))
    os.replace(tmp, os.path.join(out_dir, "SOURCES.md"))
    return counts
