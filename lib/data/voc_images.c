/* Image lists without labels: see voc_images.h. */
#include "data/voc_images.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "store/record.h"

struct grow {
    pk_voc_list *l;
    int cap;
};

static int has_jpeg_ext(const char *name)
{
    size_t n = strlen(name);
    return (n > 4 && !strcasecmp(name + n - 4, ".jpg")) ||
           (n > 5 && !strcasecmp(name + n - 5, ".jpeg"));
}

/* Appends (id, image) with no label; takes ownership of both. */
static int push(struct grow *g, char *id, char *image, pk_err *e)
{
    pk_voc_list *l = g->l;
    if (id && image && (id[0] == '\0' || strlen(id) > PK_RECORD_ID_MAX)) {
        free(id);
        free(image);
        return pk_fail(e, PK_EFORMAT, "id must be 1..%d bytes", PK_RECORD_ID_MAX);
    }
    if (id && image && l->n == g->cap) {
        int nc = g->cap ? 2 * g->cap : 256;
        pk_voc_entry *v = realloc(l->v, sizeof *v * (size_t)nc);
        if (v) {
            l->v = v;
            g->cap = nc;
        }
    }
    if (!id || !image || l->n == g->cap) {
        free(id);
        free(image);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    l->v[l->n++] = (pk_voc_entry){id, image, NULL};
    return PK_OK;
}

/* The id of an image path: its basename without the extension. */
static char *basename_id(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    return strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

static char *under(const char *root, const char *a, const char *b)
{
    char *s = NULL;
    size_t n = strlen(root);
    if (asprintf(&s, "%s%s%s%s", root, n && root[n - 1] != '/' ? "/" : "", a, b) < 0)
        return NULL;
    return s;
}

/* One line's first field: an id or an image path. */
static int push_field(struct grow *g, const char *root, const char *f, pk_err *e)
{
    if (strchr(f, '/') || has_jpeg_ext(f))
        return push(g, basename_id(f), f[0] == '/' ? strdup(f) : under(root, f, ""), e);
    char *rel = NULL;
    if (asprintf(&rel, "JPEGImages/%s", f) < 0)
        rel = NULL;
    char *image = rel ? under(root, rel, ".jpg") : NULL;
    free(rel);
    return push(g, strdup(f), image, e);
}

int pk_voc_images_read(pk_voc_list *l, const char *root, const char *list, pk_err *e)
{
    *l = (pk_voc_list){NULL, 0};
    FILE *f = fopen(list, "r");
    if (!f)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", list,
                       strerror(errno));
    struct grow g = {l, 0};
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = PK_OK;
    errno = 0;
    while (rc == PK_OK && getline(&line, &cap, f) >= 0) {
        lineno++;
        char *save, *a = strtok_r(line, " \t\r\n", &save);
        if (!a)
            continue;
        char *b = strtok_r(NULL, " \t\r\n", &save);
        if (b && strtok_r(NULL, " \t\r\n", &save))
            rc = pk_fail(e, PK_EFORMAT, "expected an id, an image or 'image label'");
        else
            rc = push_field(&g, root, a, e);
        if (rc)
            pk_wrap(e, "%s:%d", list, lineno);
    }
    if (rc == PK_OK && ferror(f))
        rc = pk_fail(e, PK_EIO, "%s: read error: %s", list, strerror(errno));
    free(line);
    fclose(f); /* read-only stream */
    if (rc == PK_OK && l->n == 0)
        rc = pk_fail(e, PK_EFORMAT, "%s: empty list", list);
    if (rc != PK_OK)
        pk_voc_list_free(l);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const pk_voc_entry *)a)->image, ((const pk_voc_entry *)b)->image);
}

int pk_voc_images_dir(pk_voc_list *l, const char *dir, pk_err *e)
{
    *l = (pk_voc_list){NULL, 0};
    DIR *d = opendir(dir);
    if (!d)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", dir,
                       strerror(errno));
    struct grow g = {l, 0};
    int rc = PK_OK;
    struct dirent *de;
    while (rc == PK_OK && (errno = 0, de = readdir(d))) {
        struct stat st;
        char *path = under(dir, de->d_name, "");
        if (!has_jpeg_ext(de->d_name) || (path && (stat(path, &st) || !S_ISREG(st.st_mode)))) {
            free(path);
            continue;
        }
        rc = push(&g, basename_id(de->d_name), path, e);
        if (rc)
            pk_wrap(e, "%s/%s", dir, de->d_name);
    }
    if (rc == PK_OK && errno)
        rc = pk_fail(e, PK_EIO, "%s: %s", dir, strerror(errno));
    closedir(d);
    if (rc == PK_OK && l->n == 0)
        rc = pk_fail(e, PK_EFORMAT, "%s: no JPEG images (*.jpg, *.jpeg)", dir);
    if (rc == PK_OK)
        qsort(l->v, (size_t)l->n, sizeof *l->v, by_name);
    else
        pk_voc_list_free(l);
    return rc;
}
