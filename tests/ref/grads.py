#!/usr/bin/python3
"""Float64 reference gradients for helene's backward pass (engine/backward.h).

For one F32 fixture folder per architecture (opt-tiny: OPT pre-LN, untied head; opt350-tiny:
OPT post-LN with project_in/out, tied head; gpt2-tiny: GPT-2, tanh GELU, ln eps 1e-3), builds the
weights as float64 leaf tensors, runs reference.py's forward (the same float64 oracle the forward
fixtures come from), and calls loss.backward() on:

  lm    causal-LM cross-entropy on a fixed packed batch of 3 sequences (lengths 9, 5, 2, ids
        drawn over the whole embedding): every position t >= 1 of a sequence is predicted from
        its prefix; loss = mean NLL over the 13 predicted tokens (softmax over the config vocab);
  cls1  (opt350-tiny only) prompt classification with single-token label words, as engine/cls.h:
        score_c = logit of word c at the last prompt position; loss_i = logsumexp_c(score) -
        score_gold (0 for label -1); loss = mean over the n examples (the unlabelled one counts);
  clsm  (opt350-tiny only) the same with a 3-token and a 1-token word: score_c = mean over the
        word's tokens of the log-softmax at the positions predicting them (prompt + word run as
        one sequence per class).

Writes tests/fixtures/grads/<folder>.safetensors:
  tokens I64 [N], seq_start I64 [B + 1]                      the LM batch, packed
  lm.<layer name> F32                                         d loss / d weight
  (opt350-tiny) cls.prompts I64, cls.prompt_start I64, cls.labels I64, cls.words I64,
                cls.word_start I64, cls1.<name> F32, clsm.<name> F32
Layer names and layouts are the engine's (engine/model.c's declare_layers): Hugging Face names
without the model. / transformer. prefix, every weight [out, in] (GPT-2's Conv1D weights are
transposed from [in, out]); a tied head's gradient is part of the word embeddings' gradient.
Losses are in the metadata as %.17g strings (lm_loss, cls1_loss, clsm_loss, cls1_losses,
clsm_losses).  Gradients are stored F32 (the C test's tolerance is far above that rounding).

Usage: /usr/bin/python3 tests/ref/grads.py   (from anywhere; writes into the source tree)
Deterministic: fixed numpy seed, one torch thread.
"""

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
import reference as R  # noqa: E402
import task_losses as TL  # noqa: E402  (Folder: reads a fixture folder back)

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
MODELS = os.path.join(ROOT, 'tests', 'fixtures', 'models')
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'grads')
FOLDERS = ['opt-tiny', 'opt350-tiny', 'gpt2-tiny']
LM_LENGTHS = (9, 5, 2)
SEED = 5150

# classification batch (opt350-tiny): prompts of random ids, labels incl. an unknown one
CLS_PROMPT_LENGTHS = (7, 4, 6)
CLS_LABELS = (1, 0, -1)
CLS1_WORDS = ([473], [467])          # " terrible", " great" in the fixture vocabulary
CLSM_WORDS = ([300, 301, 302], [467])


def seq_logits(f, W, seq):
    ids = np.array([seq], dtype=np.int64)
    return R.forward(f.a, W, ids, np.ones_like(ids))[0][0]


def lm_loss(f, W, seqs):
    total, count = 0, 0
    for s in seqs:
        lp = torch.log_softmax(seq_logits(f, W, s), dim=-1)
        for t in range(1, len(s)):
            total = total - lp[t - 1, s[t]]
            count += 1
    return total / count


def cls_losses(f, W, prompts, labels, words):
    single = all(len(w) == 1 for w in words)
    out = []
    for p, y in zip(prompts, labels):
        if single:
            lg = seq_logits(f, W, p)[len(p) - 1]
            sc = torch.stack([lg[w[0]] for w in words])
        else:
            sc = []
            for w in words:
                lp = torch.log_softmax(seq_logits(f, W, p + w), dim=-1)
                sc.append(sum(lp[len(p) - 1 + j, t] for j, t in enumerate(w)) / len(w))
            sc = torch.stack(sc)
        out.append(torch.logsumexp(sc, 0) - sc[y] if y >= 0 else torch.zeros((), dtype=torch.float64))
    return out


def engine_layout(f, name, g):
    """Gradient in the engine's layout: GPT-2 Conv1D weights [in, out] -> [out, in]."""
    g = g.detach().numpy()
    if f.a.family == 'gpt2' and name.endswith('.weight') and g.ndim == 2 and name.startswith('h.'):
        g = g.T
    return np.ascontiguousarray(g, dtype=np.float32)


def grads_of(f, W, loss, prefix):
    for w in W.values():
        w.grad = None
    loss.backward()
    return [(prefix + n, 'F32', engine_layout(f, n, w.grad).shape, engine_layout(f, n, w.grad))
            for n, w in sorted(W.items())]


def packed(seqs):
    flat = np.array([t for s in seqs for t in s], dtype=np.int64)
    start = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
    return flat, start


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for k, name in enumerate(FOLDERS):
        f = TL.Folder(os.path.join(MODELS, name + '-f32'))
        f.self_check()                     # the weights were read back correctly
        W = {n: w.clone().requires_grad_(True) for n, w in f.W.items()}
        rng = np.random.default_rng(SEED + k)
        seqs = [[int(x) for x in rng.integers(0, f.vocab_size, n)] for n in LM_LENGTHS]
        loss = lm_loss(f, W, seqs)
        tensors = []
        tok, start = packed(seqs)
        tensors += [('tokens', 'I64', tok.shape, tok), ('seq_start', 'I64', start.shape, start)]
        tensors += grads_of(f, W, loss, 'lm.')
        meta = {'generator': 'tests/ref/grads.py', 'folder': name + '-f32',
                'lm_loss': '%.17g' % float(loss),
                'lm_rule': 'mean NLL of positions 1..len-1 of every sequence',
                'layout': 'engine layer names, weights [out, in]'}
        line = f'{name}: lm loss {float(loss):.6f}'
        if name == 'opt350-tiny':
            prompts = [[int(x) for x in rng.integers(0, f.vocab_size, n)] for n in CLS_PROMPT_LENGTHS]
            p, ps = packed(prompts)
            lab = np.array(CLS_LABELS, dtype=np.int64)
            tensors += [('cls.prompts', 'I64', p.shape, p), ('cls.prompt_start', 'I64', ps.shape, ps),
                        ('cls.labels', 'I64', lab.shape, lab)]
            for tag, words in (('cls1', CLS1_WORDS), ('clsm', CLSM_WORDS)):
                per = cls_losses(f, W, prompts, CLS_LABELS, words)
                loss = sum(per) / len(per)
                tensors += grads_of(f, W, loss, tag + '.')
                meta[tag + '_loss'] = '%.17g' % float(loss)
                meta[tag + '_losses'] = ' '.join('%.17g' % float(x) for x in per)
                w, wsn = packed(words)
                if tag == 'clsm':
                    tensors += [('cls.words', 'I64', w.shape, w), ('cls.word_start', 'I64', wsn.shape, wsn)]
                else:
                    tensors += [('cls1.words', 'I64', w.shape, w)]
                line += f', {tag} loss {float(loss):.6f}'
        path = os.path.join(OUT, name + '.safetensors')
        R.st_write(path, tensors, meta)
        R.st_read(path)
        print(line, f'-> {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
    main()
