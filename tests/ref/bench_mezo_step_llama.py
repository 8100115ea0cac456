#!/usr/bin/python3
"""PyTorch baseline for helene's MeZO step on a SmolLM2-135M-shaped Llama model.

The same step as bench_mezo_step.py (princeton-nlp/MeZO's zo_step + zo_update: four seeded
torch.normal draws per parameter, two forwards with the HF causal-LM loss over full-vocabulary
logits), on a hand-written float32 Llama forward as HF's LlamaForCausalLM computes it: RMSNorm,
rotate-half RoPE (theta 100000), grouped-query attention (9 query heads, 3 key/value heads of
64), SwiGLU (1536), tied head.  Shape: 30 layers of 576, vocabulary 49,152 (helene's bench uses
GPT-2's 50,257 with the same body).  Random weights.

Prints the median wall time per step over --runs timed steps after one warm-up and the peak RSS;
--json prints one JSON object.  Run it once at most on the shared 2-core machine.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench_forward import peak_rss_mib

SMOLLM2 = dict(layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, ffn=1536, vocab=49152,
               theta=100000.0, eps=1e-5)
TINY = dict(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=96, vocab=512,
            theta=10000.0, eps=1e-5)


def make_weights(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    C, QD, KVD, Fd = cfg['hidden'], cfg['heads'] * cfg['head_dim'], cfg['kv_heads'] * cfg['head_dim'], cfg['ffn']

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    W = {'embed_tokens': r(cfg['vocab'], C), 'norm': torch.ones(C)}
    for i in range(cfg['layers']):
        W.update({f'{i}.ln1': torch.ones(C), f'{i}.q': r(QD, C), f'{i}.k': r(KVD, C), f'{i}.v': r(KVD, C),
                  f'{i}.o': r(C, QD), f'{i}.ln2': torch.ones(C), f'{i}.gate': r(Fd, C),
                  f'{i}.up': r(Fd, C), f'{i}.down': r(C, Fd)})
    return W


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_logits(cfg, W, ids):
    B, T = ids.shape
    H, KV, HD = cfg['heads'], cfg['kv_heads'], cfg['head_dim']
    inv = 1.0 / (cfg['theta'] ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat((ang.cos(), ang.cos()), -1), torch.cat((ang.sin(), ang.sin()), -1)
    causal = torch.full((T, T), float('-inf')).triu(1)
    x = W['embed_tokens'][ids]
    for i in range(cfg['layers']):
        n = rms(x, W[f'{i}.ln1'], cfg['eps'])
        q = (n @ W[f'{i}.q'].T).view(B, T, H, HD).transpose(1, 2)
        k = (n @ W[f'{i}.k'].T).view(B, T, KV, HD).transpose(1, 2)
        v = (n @ W[f'{i}.v'].T).view(B, T, KV, HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / HD ** 0.5 + causal, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, H * HD) @ W[f'{i}.o'].T
        n = rms(x, W[f'{i}.ln2'], cfg['eps'])
        x = x + (F.silu(n @ W[f'{i}.gate'].T) * (n @ W[f'{i}.up'].T)) @ W[f'{i}.down'].T
    return rms(x, W['norm'], cfg['eps']) @ W['embed_tokens'].T


def perturb(params, seed, scaling, eps):
    torch.manual_seed(seed)
    for _, p in params:
        z = torch.normal(mean=0, std=1, size=p.data.size(), dtype=p.data.dtype)
        p.data = p.data + scaling * z * eps


def lm_loss(cfg, W, ids):
    logits = llama_logits(cfg, W, ids)
    return F.cross_entropy(logits[:, :-1].reshape(-1, cfg['vocab']), ids[:, 1:].reshape(-1)).item()


def mezo_step(cfg, params, W, ids, eps, lr, np_rng):
    seed = int(np_rng.integers(1000000000))
    with torch.inference_mode():
        perturb(params, seed, 1, eps)
        loss1 = lm_loss(cfg, W, ids)
        perturb(params, seed, -2, eps)
        loss2 = lm_loss(cfg, W, ids)
        perturb(params, seed, 1, eps)
        g = (loss1 - loss2) / (2 * eps)
        torch.manual_seed(seed)
        for _, p in params:
            z = torch.normal(mean=0, std=1, size=p.data.size(), dtype=p.data.dtype)
            p.data = p.data - lr * g * z
    return loss1, loss2


def main():
    ap = argparse.ArgumentParser(description='PyTorch MeZO step baseline (SmolLM2-135M shape)')
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--seq', type=int, default=64)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tiny', action='store_true')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TINY if args.tiny else SMOLLM2
    params = [(n, torch.nn.Parameter(w, requires_grad=False)) for n, w in sorted(make_weights(cfg).items())]
    W = dict(params)
    ids = torch.randint(0, cfg['vocab'], (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    np_rng = np.random.default_rng(0)
    times, losses = [], []
    for r in range(args.runs + 1):
        t0 = time.perf_counter()
        losses.append(mezo_step(cfg, params, W, ids, 1e-3, 1e-6, np_rng))
        if r > 0:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for _, p in params)
    res = {'bench': 'torch_mezo_step_llama', 'params': n_params, 'batch': args.batch, 'seq': args.seq,
           'median_ms': statistics.median(times) * 1e3, 'peak_rss_mib': peak_rss_mib(),
           'torch': torch.__version__, 'threads': torch.get_num_threads()}
    if args.json:
        print(json.dumps(res))
    else:
        shape = 'tiny' if args.tiny else 'SmolLM2-135M'
        print(f"torch {res['torch']}, {res['threads']} threads, {shape} shape ({n_params / 1e6:.1f}M "
              f"params), batch {args.batch} x {args.seq}: MeZO step median {res['median_ms']:.0f} ms "
              f"over {args.runs} runs, peak RSS {res['peak_rss_mib']:.0f} MiB")


if __name__ == '__main__':
    sys.exit(main())
