/* canvas.c - see canvas.h.  Cells hold at most one code point; text is
 * decoded once here so every widget gets the same width rules. */
#include "canvas.h"

#include <curses.h>
#include <langinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- cells */

static void cell_blank(canvas_cell *cell)
{
    cell->glyph[0] = ' ';
    cell->glyph[1] = '\0';
    cell->attr = 0;
}

hl_status canvas_init(canvas *c, int w, int h, bool utf8, hl_err *err)
{
    *c = (canvas){0};
    c->utf8 = utf8;
    return canvas_resize(c, w, h, err);
}

void canvas_free(canvas *c)
{
    free(c->cells);
    c->cells = NULL;
    c->w = c->h = 0;
}

hl_status canvas_resize(canvas *c, int w, int h, hl_err *err)
{
    if (w < 0 || h < 0 || (h > 0 && (size_t)w > SIZE_MAX / sizeof(canvas_cell) / (size_t)h))
        return hl_err_set(err, HL_ERR_INVALID, "canvas: bad size %dx%d", w, h);
    size_t n = (size_t)w * (size_t)h;
    canvas_cell *cells = malloc(n ? n * sizeof *cells : 1);
    if (!cells)
        return hl_err_set(err, HL_ERR_NOMEM, "canvas: out of memory for %dx%d", w, h);
    free(c->cells);
    c->cells = cells;
    c->w = w;
    c->h = h;
    canvas_clear(c);
    return HL_OK;
}

void canvas_clear(canvas *c)
{
    size_t n = (size_t)c->w * (size_t)c->h;
    for (size_t i = 0; i < n; i++)
        cell_blank(&c->cells[i]);
}

bool canvas_locale_is_utf8(void)
{
    const char *cs = nl_langinfo(CODESET);
    return cs && (!strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "utf8"));
}

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one code point from s; *len = bytes used (>= 1).  Invalid input
 * decodes as U+FFFD with length 1. */
static uint32_t utf8_decode(const char *s, int *len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *len = 1;
        return u[0];
    }
    int n;
    uint32_t cp;
    if ((u[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = u[0] & 0x1f;
    } else if ((u[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = u[0] & 0x0f;
    } else if ((u[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = u[0] & 0x07;
    } else {
        *len = 1;
        return 0xfffd;
    }
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd;
        }
        cp = (cp << 6) | (u[i] & 0x3f);
    }
    *len = n;
    return cp;
}

/* One column wide and safe to send to a terminal? */
static bool cp_drawable(uint32_t cp)
{
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0xfffd)
        return false;
    if (cp < 0x300)
        return true;
    if (cp >= 0x370 && cp < 0x1100) /* Greek .. before Hangul Jamo (wide) */
        return true;
    return cp >= 0x2000 && cp < 0x2c00; /* punctuation, arrows, maths, boxes, braille */
}

/* Copy the next character of text into glyph (one cell); returns bytes consumed. */
static int next_glyph(char glyph[CANVAS_GLYPH_MAX], const char *text, bool utf8)
{
    int len;
    uint32_t cp = utf8_decode(text, &len);
    if (cp < 0x80 && cp_drawable(cp)) {
        glyph[0] = (char)cp;
        glyph[1] = '\0';
    } else if (utf8 && cp_drawable(cp)) {
        memcpy(glyph, text, (size_t)len);
        glyph[len] = '\0';
    } else {
        glyph[0] = cp == '\t' ? ' ' : '?';
        glyph[1] = '\0';
    }
    return len;
}

int canvas_text_width(const char *text)
{
    int n = 0;
    while (*text) {
        int len;
        utf8_decode(text, &len);
        text += len;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- drawing */

static canvas_cell *cell_at(canvas *c, int x, int y)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return NULL;
    return &c->cells[(size_t)y * (size_t)c->w + (size_t)x];
}

void canvas_put(canvas *c, int x, int y, const char *glyph, uint16_t attr)
{
    canvas_cell *cell = cell_at(c, x, y);
    if (!cell)
        return;
    if (!glyph || !*glyph)
        glyph = " ";
    next_glyph(cell->glyph, glyph, c->utf8);
    cell->attr = attr;
}

int canvas_text(canvas *c, int x, int y, int maxw, uint16_t attr, const char *text)
{
    if (!text || y < 0 || y >= c->h)
        return 0;
    if (maxw < 0 || x + maxw > c->w)
        maxw = c->w - x;
    int col = 0;
    while (*text && col < maxw) {
        char g[CANVAS_GLYPH_MAX];
        text += next_glyph(g, text, c->utf8);
        canvas_cell *cell = cell_at(c, x + col, y);
        if (cell) {
            memcpy(cell->glyph, g, sizeof g);
            cell->attr = attr;
        }
        col++;
    }
    return col;
}

int canvas_printf(canvas *c, int x, int y, int maxw, uint16_t attr, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return canvas_text(c, x, y, maxw, attr, buf);
}

int canvas_text_right(canvas *c, int x_end, int y, int maxw, uint16_t attr, const char *text)
{
    int w = canvas_text_width(text);
    if (maxw >= 0 && w > maxw)
        w = maxw;
    return canvas_text(c, x_end - w, y, w, attr, text);
}

void canvas_fill(canvas *c, ui_rect r, const char *glyph, uint16_t attr)
{
    for (int y = r.y; y < r.y + r.h; y++)
        for (int x = r.x; x < r.x + r.w; x++)
            canvas_put(c, x, y, glyph, attr);
}

void canvas_set_attr(canvas *c, ui_rect r, uint16_t attr)
{
    for (int y = r.y; y < r.y + r.h; y++)
        for (int x = r.x; x < r.x + r.w; x++) {
            canvas_cell *cell = cell_at(c, x, y);
            if (cell)
                cell->attr = attr;
        }
}

void canvas_add_flags(canvas *c, ui_rect r, uint16_t flags)
{
    for (int y = r.y; y < r.y + r.h; y++)
        for (int x = r.x; x < r.x + r.w; x++) {
            canvas_cell *cell = cell_at(c, x, y);
            if (cell)
                cell->attr |= flags;
        }
}

const char *canvas_sym(const canvas *c, const char *utf8_text, const char *ascii_text)
{
    return c->utf8 ? utf8_text : ascii_text;
}

void canvas_box(canvas *c, ui_rect r, const char *title, uint16_t attr)
{
    if (r.w < 2 || r.h < 2)
        return;
    const char *hz = canvas_sym(c, "─", "-"), *vt = canvas_sym(c, "│", "|");
    int x1 = r.x + r.w - 1, y1 = r.y + r.h - 1;
    for (int x = r.x + 1; x < x1; x++) {
        canvas_put(c, x, r.y, hz, attr);
        canvas_put(c, x, y1, hz, attr);
    }
    for (int y = r.y + 1; y < y1; y++) {
        canvas_put(c, r.x, y, vt, attr);
        canvas_put(c, x1, y, vt, attr);
    }
    canvas_put(c, r.x, r.y, canvas_sym(c, "┌", "+"), attr);
    canvas_put(c, x1, r.y, canvas_sym(c, "┐", "+"), attr);
    canvas_put(c, r.x, y1, canvas_sym(c, "└", "+"), attr);
    canvas_put(c, x1, y1, canvas_sym(c, "┘", "+"), attr);
    if (title && *title && r.w > 4) {
        canvas_put(c, r.x + 1, r.y, " ", attr);
        int n = canvas_text(c, r.x + 2, r.y, r.w - 4, CANVAS_COLOR_TITLE | CANVAS_ATTR_BOLD,
                            title);
        canvas_put(c, r.x + 2 + n, r.y, n < r.w - 4 ? " " : hz, attr);
    }
}

const char *canvas_glyph(const canvas *c, int x, int y)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return "";
    return c->cells[(size_t)y * (size_t)c->w + (size_t)x].glyph;
}

uint16_t canvas_attr(const canvas *c, int x, int y)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return 0;
    return c->cells[(size_t)y * (size_t)c->w + (size_t)x].attr;
}

/* ---------------------------------------------------------------- braille */

uint8_t canvas_braille_bit(int dx, int dy)
{
    /* Unicode dot numbering: 1 2 3 7 down the left column, 4 5 6 8 down the right. */
    static const uint8_t bits[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};
    if (dx < 0 || dx > 1 || dy < 0 || dy > 3)
        return 0;
    return bits[dx][dy];
}

void canvas_braille_glyph(char out[CANVAS_GLYPH_MAX], uint8_t bits)
{
    uint32_t cp = 0x2800u + bits; /* three UTF-8 bytes: 1110xxxx 10xxxxxx 10xxxxxx */
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    out[3] = '\0';
}

/* ---------------------------------------------------------------- text dump */

char *canvas_to_text(const canvas *c, ui_rect r)
{
    if (r.w <= 0 || r.h <= 0)
        r = (ui_rect){0, 0, c->w, c->h};
    size_t cap = (size_t)r.h * ((size_t)r.w * (CANVAS_GLYPH_MAX - 1) + 1) + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t at = 0;
    for (int y = r.y; y < r.y + r.h; y++) {
        size_t line_start = at, keep = at;
        for (int x = r.x; x < r.x + r.w; x++) {
            const char *g = canvas_glyph(c, x, y);
            if (!*g)
                g = " ";
            size_t n = strlen(g);
            memcpy(out + at, g, n);
            at += n;
            if (strcmp(g, " ") != 0)
                keep = at;
        }
        (void)line_start;
        at = keep;
        if (y + 1 < r.y + r.h)
            out[at++] = '\n';
    }
    out[at] = '\0';
    return out;
}

/* ---------------------------------------------------------------- curses */

bool canvas_curses_colors(bool want)
{
    if (!want || !has_colors() || start_color() == ERR)
        return false;
    int bg = use_default_colors() == OK ? -1 : COLOR_BLACK;
    int fgdef = bg == -1 ? -1 : COLOR_WHITE;
    static const short fg[CANVAS_COLOR_COUNT] = {
        [CANVAS_COLOR_DEFAULT] = -1,        [CANVAS_COLOR_TITLE] = COLOR_CYAN,
        [CANVAS_COLOR_BORDER] = COLOR_BLUE, [CANVAS_COLOR_AXIS] = -1,
        [CANVAS_COLOR_LOSS_PLUS] = COLOR_RED, [CANVAS_COLOR_LOSS_MINUS] = COLOR_BLUE,
        [CANVAS_COLOR_LOSS_MEAN] = -1,      [CANVAS_COLOR_SMOOTH] = COLOR_YELLOW,
        [CANVAS_COLOR_DEV] = COLOR_GREEN,   [CANVAS_COLOR_GRAD] = COLOR_MAGENTA,
        [CANVAS_COLOR_ALPHA] = COLOR_CYAN,  [CANVAS_COLOR_LR] = COLOR_YELLOW,
        [CANVAS_COLOR_MARKER] = COLOR_RED,  [CANVAS_COLOR_BAR] = COLOR_GREEN,
        [CANVAS_COLOR_FLOOR] = COLOR_RED,   [CANVAS_COLOR_HEAT_LOW] = COLOR_BLUE,
        [CANVAS_COLOR_HEAT_MID] = COLOR_YELLOW, [CANVAS_COLOR_HEAT_HIGH] = COLOR_RED,
        [CANVAS_COLOR_GOOD] = COLOR_GREEN,  [CANVAS_COLOR_WARN] = COLOR_YELLOW,
        [CANVAS_COLOR_BAD] = COLOR_RED,     [CANVAS_COLOR_PENDING] = COLOR_YELLOW,
    };
    for (int i = 1; i < CANVAS_COLOR_COUNT && i < COLOR_PAIRS; i++)
        init_pair((short)i, fg[i] == -1 ? (short)fgdef : fg[i], (short)bg);
    return true;
}

static attr_t curses_attr(uint16_t a, bool color)
{
    attr_t out = A_NORMAL;
    unsigned role = a & CANVAS_ATTR_COLOR_MASK;
    if (color && role > 0 && role < CANVAS_COLOR_COUNT && (int)role < COLOR_PAIRS)
        out |= COLOR_PAIR((int)role);
    if (!color && (role == CANVAS_COLOR_BAD || role == CANVAS_COLOR_MARKER))
        out |= A_BOLD;
    if (a & CANVAS_ATTR_BOLD)
        out |= A_BOLD;
    if (a & CANVAS_ATTR_DIM)
        out |= A_DIM;
    if (a & CANVAS_ATTR_REVERSE)
        out |= A_REVERSE;
    if (a & CANVAS_ATTR_UNDERLINE)
        out |= A_UNDERLINE;
    return out;
}

void canvas_blit(const canvas *c, ui_rect src, struct _win_st *win, int y, int x, bool color)
{
    for (int row = 0; row < src.h; row++) {
        if (wmove(win, y + row, x) == ERR)
            continue;
        uint16_t cur = 0xffff;
        for (int col = 0; col < src.w; col++) {
            int cx = src.x + col, cy = src.y + row;
            const char *g = canvas_glyph(c, cx, cy);
            uint16_t a = canvas_attr(c, cx, cy);
            if (a != cur) {
                wattrset(win, (int)curses_attr(a, color));
                cur = a;
            }
            /* The bottom-right cell of the window scrolls the screen with
             * some terminals when written via addstr; ERR there is harmless. */
            waddstr(win, *g ? g : " ");
        }
    }
    wattrset(win, A_NORMAL);
}
