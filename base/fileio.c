/* fileio.c - see fileio.h. */
#include "fileio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

hl_status file_open_read(const char *path, FILE **out, hl_err *err)
{
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO with no writer would block forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return hl_err_set(err, HL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    const char *why = NULL;
    if (fstat(fd, &sb) != 0)
        why = strerror(errno);
    else if (S_ISDIR(sb.st_mode))
        why = "is a folder, not a file";
    else if (!S_ISREG(sb.st_mode))
        why = "not a regular file (a FIFO, device or socket), refused so it cannot block";
    int fl = why ? 0 : fcntl(fd, F_GETFL);
    if (!why && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
        why = strerror(errno);
    FILE *f = why ? NULL : fdopen(fd, "rb");
    if (!f) {
        hl_status st = hl_err_set(err, HL_ERR_IO, "%s: %s", path, why ? why : strerror(errno));
        close(fd);
        return st;
    }
    *out = f;
    return HL_OK;
}

hl_status file_read(const char *path, size_t max, char **out, size_t *len, hl_err *err)
{
    *out = NULL;
    if (len)
        *len = 0;
    bool std_in = !strcmp(path, "-");
    FILE *f = stdin;
    hl_status st = std_in ? HL_OK : file_open_read(path, &f, err);
    if (st)
        return st;
    /* a regular file's size is known: one allocation (datasets can be large) */
    struct stat sb;
    size_t cap = 1 << 12, n = 0;
    if (!std_in && fstat(fileno(f), &sb) == 0 && sb.st_size > 0 &&
        (uint64_t)sb.st_size < (uint64_t)max)
        cap = (size_t)sb.st_size + 2; /* + NUL, + the byte whose read says EOF */
    char *buf = malloc(cap);
    st = buf ? HL_OK : HL_ERR_NOMEM;
    while (st == HL_OK) {
        if (n + 1 >= cap) {
            if (cap > max) {
                st = HL_ERR_FORMAT;
                break;
            }
            char *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                st = HL_ERR_NOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (n > max)
            st = HL_ERR_FORMAT;
        if (got == 0) {
            if (ferror(f))
                st = HL_ERR_IO;
            break;
        }
    }
    if (!std_in)
        fclose(f);
    if (st) {
        free(buf);
        if (st == HL_ERR_FORMAT)
            return hl_err_set(err, st, "%s: larger than %zu bytes", path, max);
        return hl_err_set(err, st, "%s: %s", path, st == HL_ERR_NOMEM ? "out of memory"
                                                                     : "read error");
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = buf;
    return HL_OK;
}

hl_status file_stage_dir(char *tmp, size_t cap, const char *dir, hl_err *err)
{
    if (snprintf(tmp, cap, "%s.tmp-%ld", dir, (long)getpid()) >= (int)cap)
        return hl_err_set(err, HL_ERR_INVALID, "%s: path too long", dir);
    file_remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0)
        return hl_err_set(err, HL_ERR_IO, "%s: %s", tmp, strerror(errno));
    return HL_OK;
}

hl_status file_publish_dir(const char *tmp, const char *dir, bool replace,
                           void (*carry)(const char *old, const char *now), hl_err *err)
{
    hl_status st = HL_OK;
    struct stat sb;
    if (!replace) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) != 0)
            st = hl_err_set(err, HL_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    } else if (stat(dir, &sb) == 0) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0)
            st = hl_err_set(err, HL_ERR_IO, "cannot replace %s: %s", dir, strerror(errno));
        else if (carry)
            carry(tmp, dir); /* the old folder is at tmp now */
    } else if (rename(tmp, dir) != 0) {
        st = hl_err_set(err, HL_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    }
    file_remove_tree(tmp); /* the old folder, or the staging one on failure */
    if (!st)
        file_fsync_parent(dir);
    return st;
}

void file_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[4096 + 300];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                file_remove_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

void file_fsync_parent(const char *path)
{
    char parent[4096 + 300];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

hl_status file_write_all(const char *path, const void *data, size_t n, hl_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return hl_err_set(err, HL_ERR_IO, "%s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return hl_err_set(err, HL_ERR_IO, "%s: %s", path, strerror(errno));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return hl_err_set(err, HL_ERR_IO, "%s: %s", path, strerror(errno));
    return HL_OK;
}
