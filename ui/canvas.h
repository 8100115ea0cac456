/* canvas.h - a virtual screen that widgets draw into.
 *
 * A canvas is a grid of cells, each one UTF-8 glyph (one column wide) and an
 * attribute (a colour role plus bold/dim/reverse/underline flags).  Widgets
 * draw only into canvases, so they are tested in-process by comparing
 * canvas_to_text() with expected text; the app copies the canvas to the
 * terminal with canvas_blit(), the one function here that touches curses.
 *
 * A canvas knows whether it may use non-ASCII glyphs (utf8): in ASCII mode
 * canvas_text() turns every non-ASCII character into '?', and widgets pick
 * ASCII spellings themselves (e.g. "alpha" for "α") via canvas_sym().
 *
 * Leaves out: wide (two-column) characters, combining marks: text that
 * contains them is drawn with '?' instead.  Ownership: the canvas owns its
 * cell array (canvas_free).
 */
#ifndef HELENE_CANVAS_H
#define HELENE_CANVAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "layout.h"

/* Colour roles: what a cell shows, not which colour; canvas_blit maps them
 * to colour pairs (or to nothing in monochrome). */
typedef enum canvas_color {
    CANVAS_COLOR_DEFAULT = 0,
    CANVAS_COLOR_TITLE,
    CANVAS_COLOR_BORDER,
    CANVAS_COLOR_AXIS,
    CANVAS_COLOR_LOSS_PLUS,
    CANVAS_COLOR_LOSS_MINUS,
    CANVAS_COLOR_LOSS_MEAN,
    CANVAS_COLOR_SMOOTH,
    CANVAS_COLOR_DEV,
    CANVAS_COLOR_GRAD,
    CANVAS_COLOR_ALPHA,
    CANVAS_COLOR_LR,
    CANVAS_COLOR_MARKER,
    CANVAS_COLOR_BAR,
    CANVAS_COLOR_FLOOR,
    CANVAS_COLOR_HEAT_LOW,
    CANVAS_COLOR_HEAT_MID,
    CANVAS_COLOR_HEAT_HIGH,
    CANVAS_COLOR_GOOD,
    CANVAS_COLOR_WARN,
    CANVAS_COLOR_BAD,
    CANVAS_COLOR_PENDING,
    CANVAS_COLOR_COUNT
} canvas_color;

/* Attribute = colour role | flags. */
#define CANVAS_ATTR_COLOR_MASK 0x00ffu
#define CANVAS_ATTR_BOLD 0x0100u
#define CANVAS_ATTR_DIM 0x0200u
#define CANVAS_ATTR_REVERSE 0x0400u
#define CANVAS_ATTR_UNDERLINE 0x0800u

#define CANVAS_GLYPH_MAX 5 /* 4 UTF-8 bytes + NUL */

typedef struct canvas_cell {
    char glyph[CANVAS_GLYPH_MAX];
    uint16_t attr;
} canvas_cell;

typedef struct canvas {
    int w, h;
    bool utf8;           /* non-ASCII glyphs allowed (braille, box drawing) */
    canvas_cell *cells;  /* [h][w], owned */
} canvas;

hl_status canvas_init(canvas *c, int w, int h, bool utf8, hl_err *err);
void canvas_free(canvas *c);
/* Resize (contents cleared).  Keeps the old grid on allocation failure. */
hl_status canvas_resize(canvas *c, int w, int h, hl_err *err);
/* Every cell to a blank with attribute 0. */
void canvas_clear(canvas *c);

/* True when the current locale's codeset is UTF-8 (call after
 * setlocale(LC_ALL, "")). */
bool canvas_locale_is_utf8(void);

/* One cell; out-of-range coordinates are ignored.  glyph is one character
 * (UTF-8); in ASCII mode a non-ASCII glyph becomes '?'. */
void canvas_put(canvas *c, int x, int y, const char *glyph, uint16_t attr);
/* Text from (x, y), at most maxw columns (maxw < 0: to the right edge);
 * returns the columns written. */
int canvas_text(canvas *c, int x, int y, int maxw, uint16_t attr, const char *text);
/* printf into the canvas, same limits as canvas_text. */
int canvas_printf(canvas *c, int x, int y, int maxw, uint16_t attr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
/* Text right-aligned so that it ends at column x_end - 1. */
int canvas_text_right(canvas *c, int x_end, int y, int maxw, uint16_t attr, const char *text);
void canvas_fill(canvas *c, ui_rect r, const char *glyph, uint16_t attr);
/* Change the attribute of every cell in r (keeps glyphs). */
void canvas_set_attr(canvas *c, ui_rect r, uint16_t attr);
/* OR flags (CANVAS_ATTR_REVERSE ...) into every cell of r. */
void canvas_add_flags(canvas *c, ui_rect r, uint16_t flags);
/* A border around r with an optional title on the top edge. */
void canvas_box(canvas *c, ui_rect r, const char *title, uint16_t attr);
/* The glyph of a cell ("" outside). */
const char *canvas_glyph(const canvas *c, int x, int y);
uint16_t canvas_attr(const canvas *c, int x, int y);

/* utf8_text when the canvas is UTF-8, else ascii_text. */
const char *canvas_sym(const canvas *c, const char *utf8_text, const char *ascii_text);

/* Braille: bits for a 2x4 dot cell (dx 0..1, dy 0..3, top-left origin), and
 * the glyph U+2800 + bits. */
uint8_t canvas_braille_bit(int dx, int dy);
void canvas_braille_glyph(char out[CANVAS_GLYPH_MAX], uint8_t bits);

/* The text of rectangle r (r.w = 0: the whole canvas), one line per row
 * separated by '\n', trailing blanks of each line removed.  malloc'ed,
 * owned by the caller; NULL on allocation failure. */
char *canvas_to_text(const canvas *c, ui_rect r);

/* Terminal side (the only curses code here; call from the UI thread). */
struct _win_st; /* ncurses' WINDOW */
/* Prepare colour pairs for every role; returns false (monochrome) when
 * `want` is false or the terminal has no colours. */
bool canvas_curses_colors(bool want);
/* Copy the src rectangle of c to win at (y, x). */
void canvas_blit(const canvas *c, ui_rect src, struct _win_st *win, int y, int x, bool color);

/* Width in columns of UTF-8 text as canvas_text draws it. */
int canvas_text_width(const char *text);

#endif
