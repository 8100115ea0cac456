/* form.h - the hyperparameter form of the workbench: one field per hparams
 * key, per-field validation through hparams_set on a scratch copy, confirm
 * blocked while any field is invalid, a list of changed fields for the
 * caller to send.  Pure state and drawing (no curses, no engine calls), so it
 * is tested by rendering into canvases.  Ownership: form owns its storage
 * (form_free).
 */
#ifndef HELENE_FORM_H
#define HELENE_FORM_H

#include <stdbool.h>
#include <stdint.h>

#include "canvas.h"
#include "err.h"
#include "hparams.h"

/* ---------------------------------------------------------------- form */

#define FORM_VALUE_MAX 256

typedef struct form_field {
    const hparam_info *info;
    char value[FORM_VALUE_MAX]; /* as edited */
    char orig[FORM_VALUE_MAX];  /* when the form opened */
    char error[HL_ERR_MSG_MAX]; /* "" when the value is valid */
    bool applies;               /* the current method reads this key */
} form_field;

typedef struct form {
    form_field *fields; /* [n], owned */
    int n;
    int cur, scroll;
    bool fresh;         /* the next printable key replaces the value */
    hparams base;       /* the values the form opened with (owned copy) */
    int32_t n_layers;
    char message[HL_ERR_MSG_MAX]; /* why confirming was refused */
} form;

typedef enum form_result {
    FORM_RESULT_NONE = 0,
    FORM_RESULT_CANCEL,
    FORM_RESULT_CONFIRM, /* every field valid: send form_changed() */
} form_result;

/* One field per hparams key except "optimizer" (switched with its own
 * chooser), filled with hp's current values. */
hl_status form_init(form *f, const hparams *hp, int32_t n_layers, hl_err *err);
void form_free(form *f);
int form_find(const form *f, const char *key);
/* Replace field i's text and validate it; returns true when valid. */
bool form_set_value(form *f, int i, const char *text);
bool form_valid(const form *f);
/* Handle a key: Up/Down/Tab/BTab move, printable keys edit, Backspace,
 * Ctrl-U clears, Left/Right cycle enum and on/off choices, Enter confirms
 * (refused with f->message while a field is invalid), Esc cancels. */
form_result form_key(form *f, int key);
/* Indices of fields whose value differs from when the form opened. */
int form_changed(const form *f, int *idx, int cap);
void form_draw(canvas *c, ui_rect screen, form *f);

#endif
