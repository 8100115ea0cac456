#!/usr/bin/python3
"""PyTorch baseline for helene's MeZO step benchmark, on the model of bench_forward.py.

One step as princeton-nlp/MeZO's trainer does it (zo_step + zo_update):
  seed = np.random.randint(1e9)
  perturb(+1): torch.manual_seed(seed); for each parameter, z = torch.normal(0, 1, shape);
               p.data = p.data + 1 * z * eps
  loss1 = forward (inference mode, HF causal-LM loss over full-vocab logits)
  perturb(-2); loss2 = forward; perturb(+1) restores the weights
  projected_grad = (loss1 - loss2) / (2 eps)
  update: torch.manual_seed(seed); regenerate each z; p -= lr * (projected_grad * z + wd * p)
          (no weight decay on biases and layer norms)
So each step draws every parameter's noise four times and runs two forwards.  The tied lm_head
is one parameter (embed_tokens), as in named_parameters().

Prints the median wall time per step over --runs timed steps after one warm-up and the peak RSS;
--json prints one JSON object.  Run it once or twice at most on the shared 2-core machine.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench_forward import common_args, opt_logits, peak_rss_mib, setup


def perturb(params, seed, scaling, eps):
    torch.manual_seed(seed)
    for _, p in params:
        z = torch.normal(mean=0, std=1, size=p.data.size(), dtype=p.data.dtype)
        p.data = p.data + scaling * z * eps


def lm_loss(cfg, W, ids, mask):
    """HF causal-LM loss: logits[:, :-1] predict ids[:, 1:], mean cross-entropy."""
    logits = opt_logits(cfg, W, ids, mask)
    return F.cross_entropy(logits[:, :-1].reshape(-1, cfg['vocab']), ids[:, 1:].reshape(-1)).item()


def mezo_step(cfg, params, W, ids, mask, eps, lr, wd, np_rng):
    seed = int(np_rng.integers(1000000000))
    with torch.inference_mode():
        perturb(params, seed, 1, eps)
        loss1 = lm_loss(cfg, W, ids, mask)
        perturb(params, seed, -2, eps)
        loss2 = lm_loss(cfg, W, ids, mask)
        perturb(params, seed, 1, eps)
        g = (loss1 - loss2) / (2 * eps)
        torch.manual_seed(seed)
        for name, p in params:
            z = torch.normal(mean=0, std=1, size=p.data.size(), dtype=p.data.dtype)
            if 'bias' not in name and 'layer_norm' not in name:
                p.data = p.data - lr * (g * z + wd * p.data)
            else:
                p.data = p.data - lr * g * z
    return loss1, loss2


def main():
    ap = argparse.ArgumentParser(description='PyTorch MeZO step baseline (OPT-125m shape)')
    common_args(ap)
    ap.add_argument('--eps', type=float, default=1e-3)
    ap.add_argument('--lr', type=float, default=1e-6)
    ap.add_argument('--weight-decay', type=float, default=0.0)
    args = ap.parse_args()
    cfg, Wt, ids, mask = setup(args)
    # parameters as tensors whose .data the step replaces, like nn.Parameter in MeZO
    params = [(n, torch.nn.Parameter(w, requires_grad=False)) for n, w in sorted(Wt.items())]
    W = dict(params)
    np_rng = np.random.default_rng(0)
    times, losses = [], []
    for r in range(args.runs + 1):
        t0 = time.perf_counter()
        losses.append(mezo_step(cfg, params, W, ids, mask, args.eps, args.lr, args.weight_decay, np_rng))
        dt = time.perf_counter() - t0
        if r > 0:
            times.append(dt)
    n_params = sum(p.numel() for _, p in params)
    res = {'bench': 'torch_mezo_step', 'model': 'tiny' if args.tiny else 'opt-125m-shaped',
           'config': cfg, 'params': n_params, 'batch': args.batch, 'seq': args.seq, 'runs': args.runs,
           'median_ms': statistics.median(times) * 1e3, 'min_ms': min(times) * 1e3,
           'peak_rss_mib': peak_rss_mib(), 'torch': torch.__version__,
           'threads': torch.get_num_threads(), 'last_losses': losses[-1]}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"torch {res['torch']}, {res['threads']} threads, {res['model']} ({n_params / 1e6:.1f}M params), "
              f"batch {args.batch} x {args.seq} tokens, 2 forwards with full-vocab logits per step")
        print(f"MeZO step: median {res['median_ms']:.1f} ms over {args.runs} runs (min {res['min_ms']:.1f} ms)")
        print(f"peak RSS {res['peak_rss_mib']:.0f} MiB; last losses {losses[-1][0]:.4f} / {losses[-1][1]:.4f}")


if __name__ == '__main__':
    sys.exit(main())
