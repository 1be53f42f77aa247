/* The trainers' CSV log: see train_log.h. */
#include "train/train_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/atomic_file.h"
#include "data/image.h"

static double unix_time(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* The step of a data row, or -1 when the row does not parse (a partial
 * last line left by a crash). */
static long row_step(const char *line, size_t len, int fields)
{
    char buf[32];
    size_t n = 0;
    while (n < len && n < sizeof buf - 1 && line[n] != ',')
        buf[n] = line[n], n++;
    if (n == 0 || n == len || line[n] != ',')
        return -1;
    buf[n] = 0;
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < 0)
        return -1;
    /* A complete row ends with '\n' and has PK_TRAIN_LOG_FIELDS fields
     * (one fewer in a log written before miou_present). */
    if (line[len - 1] != '\n')
        return -1;
    int commas = 0;
    for (size_t i = 0; i < len; i++)
        commas += line[i] == ',';
    return commas == fields - 1 ? v : -1;
}


/* Counts the data rows of buf (after its header of hlen bytes) that go: a
 * step above keep_to, or a torn row; copies the others to out when it is
 * not NULL, legacy rows with the field they lack. */
static int rows_over(const uint8_t *buf, size_t len, size_t hlen, int legacy, long keep_to,
                     FILE *out)
{
    size_t pos = hlen + 1;
    int dropped = 0;
    while (pos < len) {
        const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (buf + pos)) + 1 : len - pos;
        long s = row_step((const char *)buf + pos, l, PK_TRAIN_LOG_FIELDS - legacy);
        if (s < 0 || s > keep_to)
            dropped++;
        else if (out) {
            fwrite(buf + pos, 1, l - legacy, out);
            if (legacy)
                fputs(",\n", out);
        }
        pos += l;
    }
    return dropped;
}

/* Rewrites path atomically keeping the header and the rows with
 * step <= keep_to, when some row must go or the log is a legacy one. */
static int trim(const char *path, const uint8_t *buf, size_t len, size_t hlen, int legacy,
                long keep_to, pk_err *e)
{
    if (!legacy && !rows_over(buf, len, hlen, legacy, keep_to, NULL))
        return PK_OK;
    pk_atomic_file af;
    int rc = pk_atomic_open(&af, path, e);
    if (rc)
        return rc;
    fprintf(af.fp, "%s\n", PK_TRAIN_LOG_HEADER);
    rows_over(buf, len, hlen, legacy, keep_to, af.fp);
    if (ferror(af.fp)) {
        pk_atomic_abort(&af);
        return pk_fail(e, PK_EIO, "%s: write failed", path);
    }
    return pk_atomic_commit(&af, e);
}

int pk_train_log_open(pk_train_log *l, const char *path, long start_step, pk_err *e)
{
    l->f = NULL;
    if (strlen(path) >= sizeof l->path)
        return pk_fail(e, PK_EINVAL, "log path too long");
    snprintf(l->path, sizeof l->path, "%s", path);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pk_file_read(&buf, &len, path, e);
    if (rc == PK_ENOTFOUND)
        len = 0; /* a new log */
    else if (rc)
        return rc;
    rc = PK_OK;
    if (len > 0) {
        static const char *const headers[2] = {PK_TRAIN_LOG_HEADER, PK_TRAIN_LOG_HEADER_V1};
        int legacy = -1;
        size_t hlen = 0;
        for (int k = 0; k < 2 && legacy < 0; k++) {
            hlen = strlen(headers[k]);
            if (len >= hlen + 1 && !memcmp(buf, headers[k], hlen) && buf[hlen] == '\n')
                legacy = k;
        }
        if (legacy < 0)
            rc = pk_fail(e, PK_EFORMAT, "%s: not a pspkd training log (header differs)", path);
        else
            rc = trim(path, buf, len, hlen, legacy, start_step, e);
    }
    free(buf);
    if (rc)
        return rc;
    l->f = fopen(path, "a");
    if (!l->f)
        return pk_fail(e, PK_EIO, "%s: %s", path, strerror(errno));
    if (len == 0 && (fprintf(l->f, "%s\n", PK_TRAIN_LOG_HEADER) < 0 || fflush(l->f))) {
        fclose(l->f);
        l->f = NULL;
        return pk_fail(e, PK_EIO, "%s: write failed", path);
    }
    return PK_OK;
}

static int flush(pk_train_log *l, int printed, pk_err *e)
{
    if (printed < 0 || fflush(l->f))
        return pk_fail(e, PK_EIO, "%s: write failed: %s", l->path, strerror(errno));
    return PK_OK;
}

int pk_train_log_step(pk_train_log *l, const pk_train_log_row *r, pk_err *e)
{
    int n = fprintf(l->f, "%ld,%ld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4g,%.3f,,,,\n", r->step,
                    r->epoch, r->lr, r->loss, r->ce, r->aux_ce, r->kd, r->aux_kd, r->img_s,
                    unix_time());
    return flush(l, n, e);
}

int pk_train_log_val(pk_train_log *l, long step, long epoch, const pk_seg_scores *s,
                     pk_err *e)
{
    int n = fprintf(l->f, "%ld,%ld,,,,,,,,%.3f,%.6f,%.6f,%.6f,%.6f\n", step, epoch, unix_time(),
                    s->miou, s->macc, s->aacc, s->miou_present);
    return flush(l, n, e);
}

int pk_train_log_close(pk_train_log *l, pk_err *e)
{
    if (!l || !l->f)
        return PK_OK;
    int bad = fclose(l->f) != 0;
    l->f = NULL;
    return bad ? pk_fail(e, PK_EIO, "%s: close failed", l->path) : PK_OK;
}
