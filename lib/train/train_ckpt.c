/* The trainers' checkpoint directory: see train_ckpt.h. */
#include "train/train_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "step-"
#define SUFFIX ".safetensors"

/* The step of a checkpoint file name, or -1 when the name is not ours. */
static long name_step(const char *name)
{
    size_t lp = strlen(PREFIX), ls = strlen(SUFFIX), n = strlen(name);
    if (n != lp + 8 + ls || strncmp(name, PREFIX, lp) || strcmp(name + lp + 8, SUFFIX))
        return -1;
    long v = 0;
    for (size_t i = lp; i < lp + 8; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Steps of the checkpoints in dir, ascending, malloc'd into *steps. */
static int list_steps(const char *dir, long **steps, int *n, pk_err *e)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return PK_OK;
        return pk_fail(e, PK_EIO, "%s: %s", dir, strerror(errno));
    }
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        long s = name_step(de->d_name);
        if (s < 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            long *nb = realloc(*steps, (size_t)cap * sizeof *nb);
            if (!nb) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return pk_fail(e, PK_ENOMEM, "out of memory listing %s", dir);
            }
            *steps = nb;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n > 1)
        qsort(*steps, (size_t)*n, sizeof **steps, cmp_long);
    return PK_OK;
}

static int step_path(char *path, size_t cap, const char *dir, long step, pk_err *e)
{
    int len = snprintf(path, cap, "%s/" PREFIX "%08ld" SUFFIX, dir, step);
    if (len < 0 || (size_t)len >= cap)
        return pk_fail(e, PK_EINVAL, "%s: checkpoint path too long", dir);
    return PK_OK;
}

int pk_ckpt_dir_save(pk_model *m, const char *dir, const pk_ckpt_meta *meta, int keep,
                     char *path, size_t cap, pk_err *e)
{
    if (keep < 1 || meta->step < 0 || meta->step > 99999999L)
        return pk_fail(e, PK_EINVAL, "checkpoint: bad keep %d or step %ld", keep, meta->step);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return pk_fail(e, PK_EIO, "%s: %s", dir, strerror(errno));
    char file[4096];
    int rc = step_path(file, sizeof file, dir, meta->step, e);
    if (!rc)
        rc = pk_checkpoint_save(m, file, meta, 1, e);
    if (rc)
        return rc;
    if (path && cap)
        snprintf(path, cap, "%s", file);
    long *steps;
    int n;
    rc = list_steps(dir, &steps, &n, e);
    if (rc)
        return rc;
    for (int i = 0; i + keep < n; i++) {
        char old[4096];
        /* A checkpoint that cannot be removed is left behind, not an error:
         * the new one is safely written. */
        if (!step_path(old, sizeof old, dir, steps[i], NULL))
            (void)unlink(old);
    }
    free(steps);
    return PK_OK;
}

int pk_ckpt_dir_latest(const char *dir, char *path, size_t cap, long *step, pk_err *e)
{
    long *steps;
    int n;
    int rc = list_steps(dir, &steps, &n, e);
    if (rc)
        return rc;
    if (n == 0)
        return pk_fail(e, PK_ENOTFOUND, "%s: no checkpoint", dir);
    *step = steps[n - 1];
    free(steps);
    return step_path(path, cap, dir, *step, e);
}
