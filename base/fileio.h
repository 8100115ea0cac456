/* fileio.h - reading and writing a whole small file (configs, JSON, text).
 *
 * One function instead of a loop in every module: it reads regular files
 * and standard input ("-"), refuses FIFOs and devices (they can block
 * forever) and anything larger than the
 * caller's limit (a config is never a gigabyte), and names the file in every
 * error.  Leaves out: mmap (large model files use safetensors.h).
 */
#ifndef HELENE_FILEIO_H
#define HELENE_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "err.h"

/* Open path for reading if it is a regular file: *f, or HL_ERR_IO with err
 * naming the file.  A FIFO, device or socket is refused without blocking
 * (opened O_NONBLOCK, checked with fstat), so a FIFO given as a config or
 * data file cannot hang helene; a folder is refused as such. */
hl_status file_open_read(const char *path, FILE **f, hl_err *err);

/* The bytes of path ("-" = standard input) plus a terminating NUL in *out,
 * malloc'ed and owned by the caller; *len (may be NULL) gets the byte count.
 * Errors name the file: HL_ERR_IO (cannot open or read, not a regular
 * file), HL_ERR_FORMAT (larger than max bytes), HL_ERR_NOMEM.  The one
 * whole-file reader: configs, vocabularies, task files, datasets. */
hl_status file_read(const char *path, size_t max, char **out, size_t *len, hl_err *err);

/* Create or truncate path (mode 0644), write n bytes of data, fsync and
 * close it; HL_ERR_IO naming the file on any failure. */
hl_status file_write_all(const char *path, const void *data, size_t n, hl_err *err);

/* Writing a folder atomically: fill a staging folder, then publish it.
 * file_stage_dir makes a fresh DIR.tmp-PID beside dir (an old one of the
 * same name removed) into tmp (cap bytes).  file_publish_dir moves it to
 * dir: one rename when dir is absent; when it exists, with replace an
 * atomic exchange (renameat2 RENAME_EXCHANGE) so dir is at every instant
 * either the complete old or the complete new folder, then `carry` (may be
 * NULL) may move things from the old folder (now at tmp) into the new one
 * before the old is removed; without replace an existing dir is refused
 * (RENAME_NOREPLACE: nothing that appeared meanwhile is overwritten).  On
 * failure the staging folder is removed.  The parent is fsynced. */
hl_status file_stage_dir(char *tmp, size_t cap, const char *dir, hl_err *err);
hl_status file_publish_dir(const char *tmp, const char *dir, bool replace,
                           void (*carry)(const char *old, const char *now), hl_err *err);

/* Remove a folder and everything below it (best effort; symlinks are
 * removed, never followed). */
void file_remove_tree(const char *dir);

/* fsync the folder holding path, so a rename into it is durable. */
void file_fsync_parent(const char *path);

#endif
