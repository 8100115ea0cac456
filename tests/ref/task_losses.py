#!/usr/bin/python3
"""Expected prompt-classification scores, losses and predictions for the tiny fixture models.

For each model folder in tests/fixtures/models/ named in MODELS and each task in TASKS, on the
20-line SST-2 fixture (tests/fixtures/tasks/sst2.tsv), computes what helene's classification loss
(engine/cls.h, MeZO / LM-BFF style) must give, in float64:

  prompt   = the causal template with {field} replaced by the example's field, the field trimmed
             of surrounding ASCII whitespace (tasks trim by default)          "<sentence> It was"
  word_c   = " " + label word c (the template does not end in whitespace)    " terrible", " great"
  ids      = [BOS] + bpe(prompt) for OPT (BOS = 2), bpe(prompt) for GPT-2; bpe(word_c) is encoded
             separately from the prompt
  score_c  = mean over the tokens w_j of word_c of log_softmax(logits[len(ids) - 1 + j])[w_j],
             the model run on ids + bpe(word_c), softmax over the whole config vocab
  loss     = logsumexp_c(score_c) - score_gold;   pred = argmax_c score_c (first on ties)

and writes tests/fixtures/tasks/expected_losses.json:
  {model folder: {task name: {"scores": [[score_c - logsumexp(score)] per example],
                              "losses": [...], "preds": [...], "prompt_ids": [[...], ...],
                              "labels": [gold class per example], "word_ids": [bpe(word_c)]}}}
"scores" are the normalised class log-probabilities, the numbers helene prints per class in its
predictions file.  Floats are rounded to 12 significant digits so regenerating gives the same
bytes even if the float64 BLAS differs in the last bits.

Independent of the C code: the model forward, the safetensors reader and the BPE are those of
reference.py (imported); the weights and merges are read from each fixture folder.  The only
addition here is a pre-tokenizer that accepts non-ASCII letters (the fixture has "clichés").
Before computing anything each folder is checked against its own score.json (written by
reference.py from the master weights): same token ids and per-token NLL within 1e-9, which
proves the weights, names and merges were read back correctly.

Usage: /usr/bin/python3 tests/ref/task_losses.py   (from anywhere; writes into the source tree)
"""

import argparse
import json
import math
import os
import re
import sys
import unicodedata

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree (tests/ref is distributed)
import reference as R  # noqa: E402  (the float64 forward, BPE and safetensors reader)

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
DATA = os.path.join(FIXTURES, 'tasks', 'sst2.tsv')
OUT = os.path.join(FIXTURES, 'tasks', 'expected_losses.json')

# One folder per family/architecture in F32, plus two rounded-weight folders (different tensor
# naming and storage dtypes).
MODELS = ['opt-tiny-f32', 'opt350-tiny-f32', 'gpt2-tiny-f32', 'opt-tiny-bf16', 'gpt2-tiny-f16']
# task name -> definition file.  sst2 is the built-in; sst2-multitoken has a 4-token word.
TASKS = {'sst2': os.path.join(ROOT, 'data', 'tasks', 'sst2.json'),
         'sst2-multitoken': os.path.join(FIXTURES, 'tasks', 'sst2-multitoken.json')}

# GPT-2's pre-tokenizer 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# with \p{L} = [^\W\d_] (Python's Unicode letters) and \p{N} = \d; the texts are checked to hold
# no character where those approximations and the Unicode classes differ.
PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def check_text(text):
    for ch in text:
        if ord(ch) < 128:
            continue
        cat = unicodedata.category(ch)
        assert cat.startswith('L') and ch.isalpha(), (text, ch, cat)


def sig12(x):
    return float(f'{x:.12g}')


class Folder:
    """A fixture model folder read back: arch, float64 weights, tokenizer."""

    def __init__(self, path):
        self.name = os.path.basename(path)
        with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
            cfg = json.load(f)
        with open(os.path.join(path, 'vocab.json'), encoding='utf-8') as f:
            self.vocab = json.load(f)
        with open(os.path.join(path, 'merges.txt'), encoding='utf-8') as f:
            lines = f.read().split('\n')
        assert lines[0].startswith('#version')
        self.bpe = R.BPE([tuple(l.split(' ')) for l in lines[1:] if l])
        _, tensors = R.st_read(os.path.join(path, 'model.safetensors'))
        W = {}
        for n, t in tensors.items():
            if re.search(r'\.attn\.(masked_)?bias$', n):
                continue                       # GPT-2 buffers, not weights
            for p in ('model.', 'transformer.'):
                if n.startswith(p):
                    n = n[len(p):]
            W[n] = torch.from_numpy(np.asarray(t, dtype=np.float64))
        self.W = W
        if cfg['model_type'] == 'opt':
            self.a = R.Arch(family='opt', hidden=cfg['hidden_size'],
                            heads=cfg['num_attention_heads'], layers=cfg['num_hidden_layers'],
                            pre_ln=cfg['do_layer_norm_before'],
                            tied=cfg.get('tie_word_embeddings', True))
            self.bos = [cfg['bos_token_id']]   # OPT's tokenizer prepends </s> (id 2)
        else:
            assert cfg['model_type'] == 'gpt2'
            self.a = R.Arch(family='gpt2', hidden=cfg['n_embd'], heads=cfg['n_head'],
                            layers=cfg['n_layer'], ln_eps=cfg['layer_norm_epsilon'])
            self.bos = []
        self.vocab_size = cfg['vocab_size']
        self.max_pos = cfg['max_position_embeddings'] if 'max_position_embeddings' in cfg \
            else cfg['n_positions']
        self.score_json = os.path.join(path, 'score.json')

    def encode(self, text):
        check_text(text)
        ids = []
        for pre in PRETOK.findall(text):
            parts = self.bpe.word(''.join(R.BYTE_ENC[b] for b in pre.encode('utf-8')))[0]
            ids += [self.vocab[p] for p in parts]
        return ids

    def log_probs(self, seq):
        """float64 log_softmax over the config vocab at every position of seq."""
        logits = R.forward(self.a, self.W, np.array([seq]), np.ones((1, len(seq)), dtype=np.int64))[0][0]
        assert logits.shape == (len(seq), self.vocab_size)
        return torch.log_softmax(logits, dim=-1)

    def self_check(self):
        """Reproduce reference.py's score.json from the files alone."""
        with open(self.score_json, encoding='utf-8') as f:
            sc = json.load(f)
        seq = self.bos + self.encode(sc['text'])
        assert seq == sc['input_ids'], self.name
        lp = self.log_probs(seq)
        nll = [float(-lp[k, seq[k + 1]]) for k in range(len(seq) - 1)]
        worst = max(abs(x - y) for x, y in zip(nll, sc['nll']))
        assert len(nll) == len(sc['nll']) and worst < 1e-9, (self.name, worst)
        return worst


class Task:
    """The subset of a task definition this script needs: one TSV layout, plain {field}s."""

    def __init__(self, path):
        with open(path, encoding='utf-8') as f:
            d = json.load(f)
        self.name = d['name']
        self.template = d['template']
        assert re.fullmatch(r'[^{}]*(\{[a-z0-9_]+\}[^{}]*)*', self.template), self.template
        self.values = [str(l['value']) for l in d['labels']]
        self.words = [l['word'] for l in d['labels']]
        assert not any(w[:1].isspace() for w in self.words)
        sep = '' if self.template[-1:].isspace() else ' '
        self.continuations = [sep + w for w in self.words]
        tsv = next(i for i in d['inputs'] if i['format'] == 'tsv')
        assert tsv.get('header', True)
        self.columns = tsv['fields']
        self.label_column = tsv['label']
        assert d.get('trim', True)

    def prompts(self, path):
        with open(path, encoding='utf-8', newline='') as f:
            lines = [l for l in f.read().split('\n') if l.strip()]
        head = lines[0].split('\t')
        out = []
        for line in lines[1:]:
            cols = dict(zip(head, line.split('\t')))
            text = self.template
            for field, col in self.columns.items():
                text = text.replace('{' + field + '}', cols[col].strip(' \t\n\r\f\v'))
            out.append((text, self.values.index(cols[self.label_column])))
        return out


def evaluate(m, task, examples):
    words = [m.encode(c) for c in task.continuations]
    res = {'scores': [], 'losses': [], 'preds': [], 'prompt_ids': [], 'labels': [],
           'word_ids': words}
    margin = math.inf
    for text, gold in examples:
        ids = m.bos + m.encode(text)
        raw = []
        for w in words:
            seq = ids + w
            assert len(seq) <= m.max_pos, (m.name, text)   # no truncation in this fixture
            lp = m.log_probs(seq)
            raw.append(math.fsum(float(lp[len(ids) - 1 + j, t]) for j, t in enumerate(w)) / len(w))
        mx = max(raw)
        lse = mx + math.log(math.fsum(math.exp(s - mx) for s in raw))
        pred = raw.index(mx)
        srt = sorted(raw)
        margin = min(margin, srt[-1] - srt[-2])
        res['scores'].append([sig12(s - lse) for s in raw])
        res['losses'].append(sig12(lse - raw[gold]))
        res['preds'].append(pred)
        res['prompt_ids'].append(ids)
        res['labels'].append(gold)
    return res, words, margin


def write(path, out):
    """Two levels indented, then one key per line with its value on that line."""
    parts = []
    for mname, tasks in out.items():
        tparts = []
        for tname, r in tasks.items():
            keys = ',\n'.join(f'      {json.dumps(k)}: {json.dumps(v)}' for k, v in r.items())
            tparts.append(f'    {json.dumps(tname)}: {{\n{keys}\n    }}')
        parts.append(f'  {json.dumps(mname)}: {{\n' + ',\n'.join(tparts) + '\n  }')
    text = '{\n' + ',\n'.join(parts) + '\n}\n'
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)
    with open(path, encoding='utf-8') as f:
        assert json.load(f) == out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=OUT, help=f'default {os.path.relpath(OUT, ROOT)}')
    args = ap.parse_args()
    torch.set_num_threads(1)
    tasks = {name: Task(p) for name, p in TASKS.items()}
    for name, t in tasks.items():
        assert t.name == name, (t.name, name)
    out = {}
    for mname in MODELS:
        m = Folder(os.path.join(FIXTURES, 'models', mname))
        worst = m.self_check()
        out[mname] = {}
        for tname, t in tasks.items():
            r, words, margin = evaluate(m, t, t.prompts(DATA))
            out[mname][tname] = r
            acc = sum(p == g for p, g in zip(r['preds'], r['labels'])) / len(r['preds'])
            print(f'{mname} {tname}: words {words}, mean loss {math.fsum(r["losses"]) / len(r["losses"]):.6f}, '
                  f'accuracy {acc:.2f}, smallest top-2 score gap {margin:.2e}, '
                  f'longest prompt {max(map(len, r["prompt_ids"]))} (score.json check {worst:.1e})')
    write(args.out, out)


if __name__ == '__main__':
    main()
