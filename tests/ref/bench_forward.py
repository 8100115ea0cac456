#!/usr/bin/python3
"""PyTorch baseline for helene's forward benchmark: one OPT-125m-shaped forward on the CPU.

The model is hand-written with the same math as Hugging Face OPTForCausalLM in eager attention
mode (transformers is not installed; torch 1.13 has no scaled_dot_product_attention), with random
fp32 weights: pre-LN, q_proj(h) * head_dim^-0.5, causal mask, fp32 softmax, ReLU FFN, final layer
norm, and full-vocabulary logits from the tied head for every position, as HF returns them.

Prints the median wall time of --runs timed forwards after one warm-up, the achieved GFLOP/s, the
peak RSS and the torch version / thread count; --json prints one JSON object instead.

FLOPs counted (multiply-add = 2):
    2 * P_mm * B * T                 weight matmuls, P_mm = L * (4 C^2 + 2 C F) + V * C
  + 4 * L * B * T^2 * C              attention scores (Q K^T) and mixing (P V), full T x T as eager
                                     attention computes it (causal half not skipped)
Layer norms, softmax, ReLU, biases and embedding lookups are not counted.

Leaves out: dropout (eval), KV caches, fp16/bf16 (helene computes in fp32).
Run it once or twice at most on a shared 2-core machine; --tiny is a seconds-long smoke run.
"""

import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

OPT_125M = dict(layers=12, hidden=768, heads=12, ffn=3072, vocab=50272, max_pos=2048)
TINY = dict(layers=2, hidden=64, heads=4, ffn=256, vocab=1000, max_pos=128)


def make_weights(cfg, seed=0):
    """Random fp32 weights with HF OPT names (without the model. prefix), std 0.02 like
    OPT's init_std, layer norms at 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    C, Fd, V, L = cfg['hidden'], cfg['ffn'], cfg['vocab'], cfg['layers']
    rn = lambda *s: torch.randn(*s, generator=g) * 0.02
    W = {'decoder.embed_tokens.weight': rn(V, C),
         'decoder.embed_positions.weight': rn(cfg['max_pos'] + 2, C),
         'decoder.final_layer_norm.weight': torch.ones(C),
         'decoder.final_layer_norm.bias': torch.zeros(C)}
    for i in range(L):
        p = f'decoder.layers.{i}.'
        for n in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            W[p + f'self_attn.{n}.weight'] = rn(C, C)
            W[p + f'self_attn.{n}.bias'] = rn(C)
        for n in ('self_attn_layer_norm', 'final_layer_norm'):
            W[p + n + '.weight'] = torch.ones(C)
            W[p + n + '.bias'] = torch.zeros(C)
        W[p + 'fc1.weight'], W[p + 'fc1.bias'] = rn(Fd, C), rn(Fd)
        W[p + 'fc2.weight'], W[p + 'fc2.bias'] = rn(C, Fd), rn(C)
    return W


def opt_logits(cfg, W, input_ids, attention_mask):
    """OPTForCausalLM.forward(...).logits, eager attention, fp32.  [B, T] -> [B, T, V]."""
    Bn, Tn = input_ids.shape
    C, NH = cfg['hidden'], cfg['heads']
    hd = C // NH
    pos = torch.cumsum(attention_mask, dim=1) * attention_mask - 1          # OPT: offset 2 below
    h = F.embedding(input_ids, W['decoder.embed_tokens.weight']) + \
        F.embedding(pos + 2, W['decoder.embed_positions.weight'])
    neg = torch.finfo(h.dtype).min
    causal = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), diagonal=1)
    mask = torch.zeros(Bn, 1, Tn, Tn, dtype=h.dtype).masked_fill(
        causal | (attention_mask == 0)[:, None, None, :], neg)
    for i in range(cfg['layers']):
        p = f'decoder.layers.{i}.'
        res = h
        h = F.layer_norm(h, (C,), W[p + 'self_attn_layer_norm.weight'], W[p + 'self_attn_layer_norm.bias'])
        q = F.linear(h, W[p + 'self_attn.q_proj.weight'], W[p + 'self_attn.q_proj.bias']) * hd ** -0.5
        k = F.linear(h, W[p + 'self_attn.k_proj.weight'], W[p + 'self_attn.k_proj.bias'])
        v = F.linear(h, W[p + 'self_attn.v_proj.weight'], W[p + 'self_attn.v_proj.bias'])
        q, k, v = (t.view(Bn, Tn, NH, hd).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + mask, dim=-1, dtype=torch.float32)
        a = torch.matmul(a, v).transpose(1, 2).reshape(Bn, Tn, C)
        h = res + F.linear(a, W[p + 'self_attn.out_proj.weight'], W[p + 'self_attn.out_proj.bias'])
        res = h
        h = F.layer_norm(h, (C,), W[p + 'final_layer_norm.weight'], W[p + 'final_layer_norm.bias'])
        h = F.linear(torch.relu(F.linear(h, W[p + 'fc1.weight'], W[p + 'fc1.bias'])),
                     W[p + 'fc2.weight'], W[p + 'fc2.bias'])
        h = res + h
    h = F.layer_norm(h, (C,), W['decoder.final_layer_norm.weight'], W['decoder.final_layer_norm.bias'])
    return F.linear(h, W['decoder.embed_tokens.weight'])                  # tied lm_head


def flops(cfg, Bn, Tn):
    C, Fd, L, V = cfg['hidden'], cfg['ffn'], cfg['layers'], cfg['vocab']
    p_mm = L * (4 * C * C + 2 * C * Fd) + V * C
    return 2.0 * p_mm * Bn * Tn + 4.0 * L * Bn * Tn * Tn * C


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def common_args(ap):
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--seq', type=int, default=64)
    ap.add_argument('--runs', type=int, default=5, help='timed runs after one warm-up')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tiny', action='store_true', help='a small model for a smoke run')
    ap.add_argument('--json', action='store_true', help='print one JSON object')


def setup(args):
    torch.set_num_threads(args.threads)
    cfg = dict(TINY if args.tiny else OPT_125M)
    W = make_weights(cfg)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, cfg['vocab'], (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    return cfg, W, ids, mask


def main():
    ap = argparse.ArgumentParser(description='PyTorch OPT-125m forward baseline')
    common_args(ap)
    args = ap.parse_args()
    cfg, W, ids, mask = setup(args)
    times = []
    with torch.no_grad():
        for r in range(args.runs + 1):
            t0 = time.perf_counter()
            logits = opt_logits(cfg, W, ids, mask)
            dt = time.perf_counter() - t0
            assert logits.shape == (args.batch, args.seq, cfg['vocab'])
            if r > 0:
                times.append(dt)
    med = statistics.median(times)
    fl = flops(cfg, args.batch, args.seq)
    res = {'bench': 'torch_forward', 'model': 'tiny' if args.tiny else 'opt-125m-shaped',
           'config': cfg, 'batch': args.batch, 'seq': args.seq, 'runs': args.runs,
           'median_ms': med * 1e3, 'min_ms': min(times) * 1e3, 'gflop': fl / 1e9,
           'gflops_per_s': fl / med / 1e9, 'peak_rss_mib': peak_rss_mib(),
           'torch': torch.__version__, 'threads': torch.get_num_threads(),
           'flops_formula': '2*P_mm*B*T + 4*L*B*T^2*C, P_mm = L*(4C^2+2CF) + V*C'}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"torch {res['torch']}, {res['threads']} threads, {res['model']} "
              f"(L={cfg['layers']} C={cfg['hidden']} NH={cfg['heads']} F={cfg['ffn']} V={cfg['vocab']}), "
              f"batch {args.batch} x {args.seq} tokens, full-vocab logits")
        print(f"forward: median {res['median_ms']:.1f} ms over {args.runs} runs "
              f"(min {res['min_ms']:.1f} ms), {res['gflop']:.1f} GFLOP -> {res['gflops_per_s']:.1f} GFLOP/s")
        print(f"FLOPs = {res['flops_formula']}")
        print(f"peak RSS {res['peak_rss_mib']:.0f} MiB")


if __name__ == '__main__':
    sys.exit(main())
