#include "data/voc_list.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "store/record.h"

void pk_voc_list_free(pk_voc_list *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].image);
        free(l->v[i].label);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *join(const char *root, const char *a, const char *b, const char *c)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s%s%s", root, root[0] && root[strlen(root) - 1] != '/' ? "/" : "",
                 a, b, c) < 0)
        return NULL;
    return s;
}

/* Id from an image path: basename without its extension. */
static char *id_of(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    size_t n = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    return strndup(b, n);
}

static int add(pk_voc_list *l, int *cap, char *id, char *image, char *label)
{
    if (!id || !image || !label)
        goto fail;
    if (l->n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        pk_voc_entry *v = realloc(l->v, sizeof *v * nc);
        if (!v)
            goto fail;
        l->v = v;
        *cap = nc;
    }
    l->v[l->n++] = (pk_voc_entry){id, image, label};
    return 0;
fail:
    free(id);
    free(image);
    free(label);
    return -1;
}

static int grow_lines(int **lines, int *cap, int n)
{
    if (n <= *cap)
        return 0;
    int ncap = *cap ? 2 * *cap : 256;
    int *nl = realloc(*lines, (size_t)ncap * sizeof *nl);
    if (!nl)
        return -1;
    *lines = nl;
    *cap = ncap;
    return 0;
}

static int by_id(const void *a, const void *b)
{
    const pk_voc_entry *const *x = a, *const *y = b;
    int c = strcmp((*x)->id, (*y)->id);
    return c ? c : (*x < *y ? -1 : *x > *y);
}

/* An id listed twice would be packed twice: refused, naming both lines. */
static int check_duplicates(const pk_voc_list *l, const int *lines, const char *list,
                            pk_err *e)
{
    const pk_voc_entry **s = malloc((size_t)l->n * sizeof *s);
    if (!s)
        return pk_fail(e, PK_ENOMEM, "%s: out of memory", list);
    for (int i = 0; i < l->n; i++)
        s[i] = &l->v[i];
    qsort(s, (size_t)l->n, sizeof *s, by_id);
    int rc = PK_OK;
    for (int i = 1; !rc && i < l->n; i++)
        if (!strcmp(s[i]->id, s[i - 1]->id))
            rc = pk_fail(e, PK_EFORMAT, "%s:%d: id '%s' is listed again (first on line %d)",
                         list, lines[s[i] - l->v], s[i]->id, lines[s[i - 1] - l->v]);
    free(s);
    return rc;
}

int pk_voc_list_read(pk_voc_list *l, const char *root, const char *list,
                     const char *label_dir, pk_err *e)
{
    l->v = NULL;
    l->n = 0;
    FILE *f = fopen(list, "r");
    if (!f)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", list,
                       strerror(errno));
    char *line = NULL;
    size_t cap_line = 0;
    int cap = 0, lineno = 0, rc = PK_OK, *lines = NULL, lines_cap = 0;
    ssize_t got;
    errno = 0;
    while ((got = getline(&line, &cap_line, f)) >= 0) {
        lineno++;
        char *save, *a = strtok_r(line, " \t\r\n", &save);
        if (!a)
            continue;
        char *b = strtok_r(NULL, " \t\r\n", &save), *extra = strtok_r(NULL, " \t\r\n", &save);
        if (extra) {
            rc = pk_fail(e, PK_EFORMAT, "%s:%d: expected an id or 'image label'", list, lineno);
            break;
        }
        char *id, *image, *label;
        if (b) {
            id = id_of(a);
            image = a[0] == '/' ? strdup(a) : join(root, a, "", "");
            label = b[0] == '/' ? strdup(b) : join(root, b, "", "");
        } else {
            id = strdup(a);
            image = join(root, "JPEGImages/", a, ".jpg");
            if (label_dir) {
                char *dir = NULL;
                label = asprintf(&dir, "%s/", label_dir) < 0 ? NULL : join(root, dir, a, ".png");
                free(dir);
            } else {
                label = join(root, "SegmentationClass/", a, ".png");
                if (label && access(label, F_OK) != 0) {
                    char *aug = join(root, "SegmentationClassAug/", a, ".png");
                    if (aug && access(aug, F_OK) == 0) {
                        free(label);
                        label = aug;
                    } else {
                        free(aug);
                    }
                }
            }
        }
        const char *why = id ? pk_record_id_problem(id) : NULL;
        if (why) {
            rc = pk_fail(e, PK_EFORMAT, "%s:%d: id '%s' %s", list, lineno, id, why);
            free(id);
            free(image);
            free(label);
            break;
        }
        if (add(l, &cap, id, image, label) || grow_lines(&lines, &lines_cap, l->n)) {
            rc = pk_fail(e, PK_ENOMEM, "%s: out of memory", list);
            break;
        }
        lines[l->n - 1] = lineno;
    }
    if (rc == PK_OK && ferror(f))
        rc = pk_fail(e, PK_EIO, "%s: read error: %s", list, strerror(errno));
    free(line);
    fclose(f); /* read-only stream */
    if (rc == PK_OK && l->n == 0)
        rc = pk_fail(e, PK_EFORMAT, "%s: empty list", list);
    if (rc == PK_OK)
        rc = check_duplicates(l, lines, list, e);
    free(lines);
    if (rc != PK_OK)
        pk_voc_list_free(l);
    return rc;
}
