/* peft.h - parameter-efficient fine-tuning: what to tune instead of the weights.
 *
 * A PEFT spec names a small trainable set that the model adds to its frozen
 * base weights; the optimizers then perturb and update only that set (a
 * param_set of its own), so their state covers only it and checkpoints hold
 * only it.  Two kinds, as in MeZO (Malladi et al., 2023):
 *
 *   lora:r=8,alpha=16[,targets=q+v]
 *       LoRA (Hu et al., 2021) on the chosen projections of every block:
 *       y = x·Wᵀ + b + (alpha / r)·(x·Aᵀ)·Bᵀ with A [r, in] and B [out, r];
 *       A starts Kaiming-uniform (bound 1/sqrt(in), as HF PEFT and MeZO),
 *       B at zero, so the model starts as the base.  targets: q k v o (the
 *       attention projections), fc1 fc2 (the FFN); default q+v (MeZO).
 *   prefix:tokens=5
 *       prefix tuning without reparametrisation: each block's attention
 *       sees `tokens` extra key/value rows before every sequence (every
 *       query attends to them, causal or not); they start as the keys and
 *       values of real tokens (MeZO's "init by real activations").
 *
 * This module parses and prints specs; model.h applies them (model_peft_*).
 */
#ifndef HELENE_PEFT_H
#define HELENE_PEFT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum peft_kind {
    PEFT_NONE = 0,
    PEFT_LORA = 1,
    PEFT_PREFIX = 2,
} peft_kind;

/* LoRA target sites inside a block (bit i of peft_spec.targets). */
typedef enum peft_site {
    PEFT_SITE_Q = 0,
    PEFT_SITE_K,
    PEFT_SITE_V,
    PEFT_SITE_O,
    PEFT_SITE_FC1,
    PEFT_SITE_FC2,
    PEFT_SITE_COUNT
} peft_site;

typedef struct peft_spec {
    peft_kind kind;
    int32_t rank;      /* LoRA r */
    float alpha;       /* LoRA alpha (scale = alpha / r) */
    uint32_t targets;  /* LoRA: bit per peft_site */
    int32_t tokens;    /* prefix: virtual tokens per block */
} peft_spec;

#define PEFT_SPEC_MAX 96 /* bytes of a formatted spec */

/* Parse "none", "lora[:r=R,alpha=A,targets=q+v]" or "prefix[:tokens=N]"
 * (empty or NULL = none).  Errors name the offending part. */
hl_status peft_parse(peft_spec *s, const char *text, hl_err *err);

/* The canonical text of s ("none", "lora:r=8,alpha=16,targets=q+v",
 * "prefix:tokens=5"); peft_parse of it gives s back. */
void peft_format(const peft_spec *s, char *out, size_t cap);

/* Short name of a site: "q", "k", "v", "o", "fc1", "fc2". */
const char *peft_site_name(peft_site site);

/* The perturbation scale MeZO recommends for the kind (1e-2 LoRA, 1e-1
 * prefix), or 0 for none. */
double peft_recommended_eps(peft_kind kind);

#endif
