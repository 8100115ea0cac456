/* fileio.h - reading and writing a whole small file (configs, JSON, text).
 *
 * One function instead of a loop in every module: it reads regular files,
 * pipes and standard input ("-") alike, refuses anything larger than the
 * caller's limit (a config is never a gigabyte), and names the file in every
 * error.  Leaves out: mmap (large model files use safetensors.h).
 */
#ifndef HELENE_FILEIO_H
#define HELENE_FILEIO_H

#include <stddef.h>

#include "err.h"

/* The bytes of path ("-" = standard input) plus a terminating NUL, malloc'ed
 * and owned by the caller; *len (may be NULL) gets the byte count.  NULL on
 * error, with err naming the file: HL_ERR_IO (cannot open or read, or a
 * folder), HL_ERR_FORMAT (larger than max bytes), HL_ERR_NOMEM. */
char *file_read_all(const char *path, size_t max, size_t *len, hl_err *err);

/* Create or truncate path (mode 0644), write n bytes of data, fsync and
 * close it; HL_ERR_IO naming the file on any failure. */
hl_status file_write_all(const char *path, const void *data, size_t n, hl_err *err);

/* Remove a folder and everything below it (best effort; symlinks are
 * removed, never followed). */
void file_remove_tree(const char *dir);

/* fsync the folder holding path, so a rename into it is durable. */
void file_fsync_parent(const char *path);

#endif
