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

and, for the masked LMs in MASKED_MODELS (RoBERTa) on the built-in sst2 only:

  prompt   = the masked template "<s> {S1} It was <mask> . </s>" rendered as helene does
             ("<s>{sentence} It was<mask>.</s>"), tokenized as RobertaTokenizer does (<s> 0,
             </s> 2 and <mask> by id, the text between them BPE) = LM-BFF's
             *cls**sent_0*_It_was*mask*.*sep+*: [0] + bpe(sentence) + bpe(" It was") + [mask]
             + bpe(".") + [2]; a prompt over the model's usable positions
             (max_position_embeddings - 2) has its sentence cut from the left at the first word
             start that makes it fit (task_render_prompt's rule; roberta2-tiny: 38 positions)
  word_c   = " " + label word c, one token (asserted)
  score_c  = log_softmax(logits[mask position])[word_c], the model run on the prompt alone,
             softmax over the whole vocab; loss and pred as above

and writes tests/fixtures/tasks/expected_losses.json:
  {model folder: {task name: {"scores": [[score_c - logsumexp(score)] per example],
                              "losses": [...], "preds": [...], "prompt_ids": [[...], ...],
                              "labels": [gold class per example], "word_ids": [bpe(word_c)]}}}
(masked entries add "mask_positions": the index of <mask> in each prompt_ids, and "cut_bytes":
the bytes cut from the left of the sentence, 0 when the prompt fits).
"scores" are the normalised class log-probabilities, the numbers helene prints per class in its
predictions file.  Floats are rounded to 12 significant digits so regenerating gives the same
bytes even if the float64 BLAS differs in the last bits.

Independent of the C code: the model forward, the safetensors reader and the BPE are those of
reference.py and roberta.py (imported); the weights and merges are read from each fixture
folder.  The only additions here are a pre-tokenizer that accepts non-ASCII letters (the fixture
has "clichés") and the masked-template rendering.  Before computing anything each folder is
checked against its own score.json (written by reference.py / roberta.py from the master
weights): same token ids and per-token NLL (RoBERTa: pseudo-NLL) within 1e-9, which proves the
weights, names and merges were read back correctly.

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
import roberta as RB  # noqa: E402  (the RoBERTa forward and its pseudo-log-likelihood)

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
# Masked LMs (RoBERTa): the masked template, single-token words only, so the built-in sst2 only.
# roberta-tiny-f16 also carries the pooler and lm_head.decoder.* a loader must skip.
MASKED_MODELS = ['roberta-tiny-f32', 'roberta-tiny-f16', 'roberta2-tiny-f32']
MASKED_TASKS = ['sst2']
WS = ' \t\n\r\f\v'    # ASCII whitespace (the C side's is_space)

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
            if n.startswith('roberta.pooler.'):
                continue                       # RobertaModel's pooler: unused by the masked LM
            if n in ('lm_head.decoder.weight', 'lm_head.decoder.bias'):
                # the tied decoder saved twice: must equal what the forward uses
                tied = {'lm_head.decoder.weight': 'roberta.embeddings.word_embeddings.weight',
                        'lm_head.decoder.bias': 'lm_head.bias'}[n]
                assert np.array_equal(t, tensors[tied]), n
                continue
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
        elif cfg['model_type'] == 'roberta':
            self.a = R.Arch(family='roberta', hidden=cfg['hidden_size'],
                            heads=cfg['num_attention_heads'], layers=cfg['num_hidden_layers'],
                            ln_eps=cfg['layer_norm_eps'], pad_id=cfg['pad_token_id'],
                            type_vocab=cfg['type_vocab_size'], mask_id=self.vocab['<mask>'])
            assert self.vocab['<s>'] == cfg['bos_token_id'] and self.vocab['</s>'] == cfg['eos_token_id']
            self.bos, self.eos = [cfg['bos_token_id']], [cfg['eos_token_id']]
        else:
            assert cfg['model_type'] == 'gpt2'
            self.a = R.Arch(family='gpt2', hidden=cfg['n_embd'], heads=cfg['n_head'],
                            layers=cfg['n_layer'], ln_eps=cfg['layer_norm_epsilon'])
            self.bos = []
        self.vocab_size = cfg['vocab_size']
        self.max_pos = cfg['max_position_embeddings'] if 'max_position_embeddings' in cfg \
            else cfg['n_positions']
        self.masked = self.a.family == 'roberta'
        if self.masked:
            # positions 0 .. padding_idx are never used by real tokens (roberta.position_ids)
            self.max_pos -= cfg['pad_token_id'] + 1
        self.score_json = os.path.join(path, 'score.json')

    def encode(self, text):
        check_text(text)
        ids = []
        for pre in PRETOK.findall(text):
            parts = self.bpe.word(''.join(R.BYTE_ENC[b] for b in pre.encode('utf-8')))[0]
            ids += [self.vocab[p] for p in parts]
        return ids

    def encode_masked(self, text):
        """A rendered masked prompt as RobertaTokenizer encodes it (add_special_tokens=False):
        "<s>", "</s>" and "<mask>" are their ids, the text between them BPE; <mask> has
        lstrip=True, so whitespace before it is dropped."""
        parts = re.split(r'(<s>|</s>|<mask>)', text)
        ids = []
        for k, part in enumerate(parts):
            if k % 2:
                ids.append(self.vocab[part])
            else:
                if k + 1 < len(parts) and parts[k + 1] == '<mask>':
                    part = part.rstrip(WS)
                ids += self.encode(part)
        return ids

    def log_probs(self, seq):
        """float64 log_softmax over the config vocab at every position of seq."""
        fwd = RB.forward if self.masked else R.forward
        logits = fwd(self.a, self.W, np.array([seq]), np.ones((1, len(seq)), dtype=np.int64))[0][0]
        assert logits.shape == (len(seq), self.vocab_size)
        return torch.log_softmax(logits, dim=-1)

    def self_check(self):
        """Reproduce reference.py's score.json from the files alone."""
        with open(self.score_json, encoding='utf-8') as f:
            sc = json.load(f)
        if self.masked:      # pseudo-log-likelihood, each text token masked in turn
            seq = self.bos + self.encode(sc['text']) + self.eos
            assert seq == sc['input_ids'] and len(seq) <= self.max_pos, self.name
            nll = RB.pll(self.a, self.W, seq)
            worst = max(abs(x - y) for x, y in zip(nll, sc['nll']))
            assert len(nll) == len(sc['nll']) and worst < 1e-9, (self.name, worst)
            return worst
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
        self.fields = d['fields']
        self.template = d['template']
        self.masked_template = d.get('masked_template')
        self.max_tokens = d.get('max_tokens', 512)
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
        assert 'truncate' not in d

    def examples(self, path):
        """[(field values trimmed of ASCII whitespace, gold class)] of a TSV file."""
        with open(path, encoding='utf-8', newline='') as f:
            lines = [l for l in f.read().split('\n') if l.strip()]
        head = lines[0].split('\t')
        out = []
        for line in lines[1:]:
            cols = dict(zip(head, line.split('\t')))
            vals = {field: cols[col].strip(WS) for field, col in self.columns.items()}
            out.append((vals, self.values.index(cols[self.label_column])))
        return out

    def prompts(self, path):
        out = []
        for vals, gold in self.examples(path):
            text = self.template
            for field, v in vals.items():
                text = text.replace('{' + field + '}', v)
            out.append((text, gold))
        return out

    def render_masked(self, vals):
        """helene's masked-template rendering (data/tasks/README.md, "Templates"): pieces split
        at whitespace; "<s>", "</s>", "<mask>" spelled out; a text piece is joined with one
        space except after <s> and when it starts with . , : ; ? ! ); nothing is ever put
        before </s> or <mask>.  Only the plain {field} / {S1} placeholders are supported."""
        out, prev = '', None
        for piece in self.masked_template.split():
            if piece in ('<s>', '</s>', '<mask>'):
                assert piece != '<s>' or prev is None
                out, prev = out + piece, piece
                continue
            assert not re.search(r'\}[.?!]', piece), 'field + . ? ! (punctuation stripping) unsupported'
            if prev is not None and prev != '<s>' and piece[0] not in '.,:;?!)':
                out += ' '

            def field(m):
                name = m.group(1)
                if re.fullmatch(r'S[1-8]', name):
                    name = self.fields[int(name[1:]) - 1]
                assert name in self.fields, m.group(0)
                return vals[name]
            out, prev = out + re.sub(r'\{([A-Za-z0-9_]+)\}', field, piece), 'text'
        assert out.count('<mask>') == 1
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


def evaluate_masked(m, task, examples):
    """The masked-LM path: prompt = the masked template rendered and tokenized (specials by id);
    score_c = log_softmax(logits[mask position])[word_c] over the full vocab, word_c = bpe(" " +
    word), one token; the same normalisation, loss and prediction as the causal single-token
    case.  A prompt longer than the model's usable positions (max_position_embeddings - 2) is
    cut from the left of the field at the first word start that makes it fit, as helene's
    task_render_prompt does (the template, <mask> included, always survives)."""
    words = [m.encode(' ' + w) for w in task.words]
    assert all(len(w) == 1 for w in words), words
    budget = min(task.max_tokens, m.max_pos)
    assert len(task.fields) == 1
    fname = task.fields[0]
    res = {'scores': [], 'losses': [], 'preds': [], 'prompt_ids': [], 'labels': [],
           'word_ids': words, 'mask_positions': [], 'cut_bytes': []}
    margin = math.inf
    for vals, gold in examples:
        s = vals[fname]
        # word starts: after ASCII whitespace; the whole field dropped as the last resort
        cuts = [0] + [c for c in range(1, len(s)) if s[c - 1] in WS and s[c] not in WS] + [len(s)]
        for c in cuts:
            ids = m.encode_masked(task.render_masked({fname: s[c:]}))
            if len(ids) <= budget:
                break
        assert len(ids) <= budget, (m.name, s)
        if task.name == 'sst2':   # LM-BFF's *cls**sent_0*_It_was*mask*.*sep+*, token by token
            assert ids == (m.bos + m.encode(s[c:]) + m.encode(' It was') + [m.a.mask_id]
                           + m.encode('.') + m.eos), (m.name, s)
        pos = ids.index(m.a.mask_id)
        assert ids.count(m.a.mask_id) == 1
        lp = m.log_probs(ids)[pos]
        raw = [float(lp[w[0]]) for w in words]
        mx = max(raw)
        lse = mx + math.log(math.fsum(math.exp(x - mx) for x in raw))
        srt = sorted(raw)
        margin = min(margin, srt[-1] - srt[-2])
        res['scores'].append([sig12(x - lse) for x in raw])
        res['losses'].append(sig12(lse - raw[gold]))
        res['preds'].append(raw.index(mx))
        res['prompt_ids'].append(ids)
        res['labels'].append(gold)
        res['mask_positions'].append(pos)
        res['cut_bytes'].append(len(s[:c].encode('utf-8')))
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
    for mname in MASKED_MODELS:
        m = Folder(os.path.join(FIXTURES, 'models', mname))
        assert m.masked
        worst = m.self_check()
        out[mname] = {}
        for tname in MASKED_TASKS:
            t = tasks[tname]
            r, words, margin = evaluate_masked(m, t, t.examples(DATA))
            out[mname][tname] = r
            acc = sum(p == g for p, g in zip(r['preds'], r['labels'])) / len(r['preds'])
            cut = sum(c > 0 for c in r['cut_bytes'])
            print(f'{mname} {tname} (masked): words {words}, mean loss '
                  f'{math.fsum(r["losses"]) / len(r["losses"]):.6f}, accuracy {acc:.2f}, '
                  f'smallest top-2 score gap {margin:.2e}, longest prompt '
                  f'{max(map(len, r["prompt_ids"]))} of {m.max_pos} positions, {cut} cut '
                  f'(score.json check {worst:.1e})')
    write(args.out, out)


if __name__ == '__main__':
    main()
