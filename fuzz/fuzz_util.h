/* Helpers shared by the libFuzzer harnesses (fuzz/fuzz_*.c): a private
 * temp directory, created once per process and removed at exit, for the
 * parsers that read a path. Harness-local state only: the library keeps
 * none. */
#ifndef PSPKD_FUZZ_UTIL_H
#define PSPKD_FUZZ_UTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/le_bytes.h"

static char fz_dir[256];

/* Removes every file directly in fz_dir (the harnesses make no
 * subfolders; a log's rewrite may leave its temp file), then fz_dir. */
static inline void fz_cleanup(void)
{
    DIR *d = opendir(fz_dir);
    if (d) {
        struct dirent *de;
        char path[512];
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(path, sizeof path, "%s/%s", fz_dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(fz_dir);
}

/* fz_dir, made on first use under $TMPDIR (or /tmp); aborts when it cannot
 * be made, since no harness can run without it. */
static inline const char *fz_tmpdir(void)
{
    if (fz_dir[0])
        return fz_dir;
    const char *t = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/pspkd-fuzz.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(fz_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fz_cleanup);
    return fz_dir;
}

/* Writes data to fz_dir/name and returns the path (a static buffer). */
static inline const char *fz_write(const char *name, const uint8_t *data, size_t size)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
    return path;
}

/* data as a NUL-terminated malloc'd string (embedded NULs end it early). */
static inline char *fz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* A copy of data whose last 4 bytes are the CRC32 of the rest, as the
 * record formats end: most mutations break the CRC, so a harness parses
 * both the input and this copy to reach the checks behind it. NULL when
 * size < 4 (nothing to fix); the caller frees. */
static inline uint8_t *fz_fix_crc(const uint8_t *data, size_t size)
{
    if (size < 4)
        return NULL;
    uint8_t *c = malloc(size);
    if (!c)
        abort();
    memcpy(c, data, size);
    pk_put32(c + size - 4, pk_crc32(c, size - 4));
    return c;
}

/* Parses the input as it is, then with its CRC fixed (fz_fix_crc): the
 * body of every CRC-sealed format's harness. */
static inline int fz_with_fixed_crc(void (*one)(const uint8_t *, size_t), const uint8_t *data,
                                    size_t size)
{
    one(data, size);
    uint8_t *fixed = fz_fix_crc(data, size);
    if (fixed)
        one(fixed, size);
    free(fixed);
    return 0;
}

#endif
