/* form.c - see form.h. */
#include "form.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "widgets.h"

/* ================================================================ form */

static bool method_reads(const hparam_info *info, int32_t method)
{
    if (!info->methods || !strcmp(info->methods, "all"))
        return true;
    const char *name = optim_method_name(method);
    size_t nl = strlen(name);
    for (const char *p = info->methods; *p;) {
        size_t len = strcspn(p, "|, ");
        if (len == nl && !strncmp(p, name, nl))
            return true;
        p += len;
        while (*p == '|' || *p == ',' || *p == ' ')
            p++;
    }
    return false;
}

hl_status form_init(form *f, const hparams *hp, int32_t n_layers, hl_err *err)
{
    *f = (form){0};
    int total = hparams_count();
    f->fields = calloc((size_t)(total > 0 ? total : 1), sizeof *f->fields);
    if (!f->fields)
        return hl_err_set(err, HL_ERR_NOMEM, "form: out of memory");
    if (hparams_copy(&f->base, hp, err) != HL_OK) {
        free(f->fields);
        f->fields = NULL;
        return err ? err->code : HL_ERR_NOMEM;
    }
    f->n_layers = n_layers;
    /* the current optimizer's keys first, then the others (dimmed) */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < total; i++) {
            const hparam_info *info = hparams_info_at(i);
            if (!info || !strcmp(info->key, "optimizer") ||
                method_reads(info, hp->method) != (pass == 0))
                continue;
            form_field *fd = &f->fields[f->n++];
            fd->info = info;
            if (hparams_get(hp, fd->orig, sizeof fd->orig, info->key, NULL) != HL_OK)
                fd->orig[0] = '\0';
            memcpy(fd->value, fd->orig, sizeof fd->value);
            fd->applies = pass == 0;
        }
    f->fresh = true;
    return HL_OK;
}

void form_free(form *f)
{
    free(f->fields);
    hparams_free(&f->base);
    *f = (form){0};
}

int form_find(const form *f, const char *key)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->fields[i].info->key, key))
            return i;
    return -1;
}

/* Bounded copy that truncates silently (values longer than a field are
 * rejected by validation anyway). */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void form_validate(form *f, int i)
{
    form_field *fd = &f->fields[i];
    fd->error[0] = '\0';
    if (!strcmp(fd->value, fd->orig))
        return; /* the value in effect is valid by definition */
    hl_err err;
    hl_err_clear(&err);
    hparams scratch;
    if (hparams_copy(&scratch, &f->base, &err) != HL_OK) {
        snprintf(fd->error, sizeof fd->error, "%s", err.msg);
        return;
    }
    if (hparams_set(&scratch, fd->info->key, fd->value, f->n_layers, &err) != HL_OK)
        snprintf(fd->error, sizeof fd->error, "%s", err.msg[0] ? err.msg : "invalid value");
    hparams_free(&scratch);
}

bool form_set_value(form *f, int i, const char *text)
{
    if (i < 0 || i >= f->n)
        return false;
    copy_text(f->fields[i].value, sizeof f->fields[i].value, text);
    form_validate(f, i);
    f->message[0] = '\0';
    return f->fields[i].error[0] == '\0';
}

bool form_valid(const form *f)
{
    for (int i = 0; i < f->n; i++)
        if (f->fields[i].error[0])
            return false;
    return true;
}

int form_changed(const form *f, int *idx, int cap)
{
    int k = 0;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->fields[i].value, f->fields[i].orig) != 0) {
            if (k < cap)
                idx[k] = i;
            k++;
        }
    return k;
}

/* Left/Right on an enum or on/off field: the previous/next choice. */
static void form_cycle(form *f, int dir)
{
    form_field *fd = &f->fields[f->cur];
    const char *choices = fd->info->type == HPARAM_TYPE_BOOL   ? "on|off"
                          : fd->info->type == HPARAM_TYPE_ENUM ? fd->info->choices
                                                               : NULL;
    if (!choices)
        return;
    char opts[16][64];
    int n = 0, cur = -1;
    for (const char *p = choices; *p && n < 16;) {
        size_t len = strcspn(p, "|");
        snprintf(opts[n], sizeof opts[n], "%.*s", (int)len, p);
        if (!strcmp(opts[n], fd->value))
            cur = n;
        n++;
        p += len;
        if (*p == '|')
            p++;
    }
    if (n == 0)
        return;
    int next = cur < 0 ? 0 : ((cur + dir) % n + n) % n;
    form_set_value(f, f->cur, opts[next]);
    f->fresh = true;
}

form_result form_key(form *f, int key)
{
    if (f->n == 0)
        return key == UI_KEY_ESC ? FORM_RESULT_CANCEL : FORM_RESULT_NONE;
    form_field *fd = &f->fields[f->cur];
    int prev = f->cur;
    switch (key) {
    case UI_KEY_ESC: return FORM_RESULT_CANCEL;
    case UI_KEY_ENTER:
    case '\r':
        for (int i = 0; i < f->n; i++)
            if (f->fields[i].error[0]) {
                f->cur = i;
                snprintf(f->message, sizeof f->message,
                         "cannot apply: %s is invalid; fix it or press Esc to cancel",
                         f->fields[i].info->key);
                return FORM_RESULT_NONE;
            }
        return FORM_RESULT_CONFIRM;
    case UI_KEY_UP:
    case UI_KEY_BTAB: f->cur--; break;
    case UI_KEY_DOWN:
    case UI_KEY_TAB: f->cur++; break;
    case UI_KEY_PGUP: f->cur -= 10; break;
    case UI_KEY_PGDN: f->cur += 10; break;
    case UI_KEY_HOME: f->cur = 0; break;
    case UI_KEY_END: f->cur = f->n - 1; break;
    case UI_KEY_LEFT: form_cycle(f, -1); return FORM_RESULT_NONE;
    case UI_KEY_RIGHT: form_cycle(f, +1); return FORM_RESULT_NONE;
    case UI_KEY_BACKSPACE:
    case 8: {
        size_t len = strlen(fd->value);
        char buf[FORM_VALUE_MAX];
        snprintf(buf, sizeof buf, "%.*s", (int)(len ? len - 1 : 0), fd->value);
        form_set_value(f, f->cur, buf);
        f->fresh = false;
        return FORM_RESULT_NONE;
    }
    case UI_KEY_CTRL_U:
        form_set_value(f, f->cur, "");
        f->fresh = false;
        return FORM_RESULT_NONE;
    default:
        if (key >= 32 && key < 127) {
            char buf[FORM_VALUE_MAX];
            size_t len = f->fresh ? 0 : strlen(fd->value);
            if (len + 1 < sizeof buf) {
                memcpy(buf, fd->value, len);
                buf[len] = (char)key;
                buf[len + 1] = '\0';
                form_set_value(f, f->cur, buf);
            }
            f->fresh = false;
        }
        return FORM_RESULT_NONE;
    }
    if (f->cur < 0)
        f->cur = 0;
    if (f->cur >= f->n)
        f->cur = f->n - 1;
    if (f->cur != prev) {
        f->fresh = true;
        f->message[0] = '\0';
    }
    return FORM_RESULT_NONE;
}

void form_draw(canvas *c, ui_rect screen, form *f)
{
    int w = screen.w - 4 < 100 ? screen.w - 4 : 100;
    int h = screen.h - 2 < f->n + 8 ? screen.h - 2 : f->n + 8;
    char title[96];
    snprintf(title, sizeof title, "Edit hyperparameters (%s)", optim_method_name(f->base.method));
    ui_rect box = widgets_clear_box(c, screen, w, h, title);
    ui_rect in = ui_rect_inner(box);
    int list_h = in.h - 5;
    if (list_h < 1 || f->n == 0)
        return;
    list_scroll_clamp(&f->cur, &f->scroll, f->n, list_h);
    const int key_w = 18, val_w = 24;
    for (int k = 0; k < list_h && f->scroll + k < f->n; k++) {
        int i = f->scroll + k, y = in.y + k;
        const form_field *fd = &f->fields[i];
        bool changed = strcmp(fd->value, fd->orig) != 0;
        const char *flag = fd->error[0] ? "!" : changed ? "*" : " ";
        canvas_text(c, in.x, y, 1, fd->error[0] ? CANVAS_COLOR_BAD : CANVAS_COLOR_PENDING, flag);
        canvas_text(c, in.x + 1, y, key_w, fd->applies ? 0 : CANVAS_ATTR_DIM, fd->info->key);
        uint16_t va = fd->error[0] ? CANVAS_COLOR_BAD : changed ? CANVAS_COLOR_PENDING : 0;
        if (i == f->cur) {
            canvas_fill(c, (ui_rect){in.x + 1 + key_w, y, val_w, 1}, " ",
                        CANVAS_ATTR_REVERSE | va);
            va |= CANVAS_ATTR_REVERSE;
        }
        int vlen = canvas_text_width(fd->value);
        /* the end of a long value stays visible while typing */
        const char *shown = fd->value + (vlen > val_w - 1 ? vlen - (val_w - 1) : 0);
        int n = canvas_text(c, in.x + 1 + key_w, y, val_w - 1, va, shown);
        if (i == f->cur && !f->fresh)
            canvas_put(c, in.x + 1 + key_w + n, y, "_", va);
        char range[96];
        hparams_range_text(range, sizeof range, fd->info);
        canvas_text(c, in.x + 2 + key_w + val_w, y, in.w - (2 + key_w + val_w), CANVAS_ATTR_DIM,
                    range);
    }
    int y = in.y + list_h;
    canvas_fill(c, (ui_rect){in.x, y, in.w, 1}, canvas_sym(c, "─", "-"), CANVAS_COLOR_BORDER);
    const form_field *fd = &f->fields[f->cur];
    canvas_printf(c, in.x, y + 1, in.w, 0, "%s: %s", fd->info->key, fd->info->help);
    char range[96];
    hparams_range_text(range, sizeof range, fd->info);
    canvas_printf(c, in.x, y + 2, in.w, CANVAS_ATTR_DIM, "allowed %s   default %s   read by %s%s",
                  range, fd->info->def, fd->info->methods,
                  fd->applies ? "" : " (not the current optimizer)");
    if (fd->error[0])
        canvas_text(c, in.x, y + 3, in.w, CANVAS_COLOR_BAD | CANVAS_ATTR_BOLD, fd->error);
    /* a refused Enter says why on the hint row until the next edit */
    if (f->message[0]) {
        canvas_text(c, in.x, y + 4, in.w, CANVAS_COLOR_BAD | CANVAS_ATTR_BOLD, f->message);
        return;
    }
    int changes = form_changed(f, NULL, 0);
    canvas_printf(c, in.x, y + 4, in.w, CANVAS_ATTR_DIM,
                  "%s move  type to edit  %s choices  Enter apply %d change%s  Esc cancel",
                  canvas_sym(c, "↑↓", "Up/Down"), canvas_sym(c, "←→", "Left/Right"), changes,
                  changes == 1 ? "" : "s");
}
