/* The trainers' CSV log (create, append, trim on resume, torn rows, foreign
 * files) and the checkpoint directory's name handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "support.h"
#include "train/train_ckpt.h"
#include "train/train_log.h"

static char *slurp(const char *path)
{
    uint8_t *buf;
    size_t len;
    if (pk_file_read(&buf, &len, path, NULL))
        return NULL;
    char *s = realloc(buf, len + 1);
    if (!s) {
        free(buf);
        return NULL;
    }
    s[len] = 0;
    return s;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        perror(path);
        exit(1);
    }
}

/* Steps of the data rows, comma-separated ("1,2,2v" with v for a
 * validation row). */
static void steps_of(const char *text, char *out, size_t cap)
{
    out[0] = 0;
    const char *p = strchr(text, '\n');
    while (p && p[1]) {
        p++;
        long s = strtol(p, NULL, 10);
        const char *nl = strchr(p, '\n');
        /* a validation row has an empty lr (third field) */
        const char *c1 = strchr(p, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        int val = c2 && c2[1] == ',';
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%ld%s", n ? "," : "", s, val ? "v" : "");
        p = nl;
    }
}

static int test_log(const char *dir)
{
    int f = 0;
    char path[512], got[256];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    pk_err e;
    pk_train_log l;
    PK_CHECK(f, pk_train_log_open(&l, path, 0, &e) == PK_OK, "open new: %s", e.msg);
    for (long s = 1; s <= 4; s++) {
        pk_train_log_row r = {s, 1, 0.01, 2.5, 1, 1, 0, 0, 3.5};
        PK_CHECK(f, pk_train_log_step(&l, &r, &e) == PK_OK, "row %ld", s);
        if (s == 2)
        {
            pk_seg_scores sc = {.miou = 0.5, .macc = 0.6, .aacc = 0.7, .miou_present = 0.8};
            PK_CHECK(f, pk_train_log_val(&l, 2, 1, &sc, &e) == PK_OK, "val");
        }
    }
    PK_CHECK(f, pk_train_log_close(&l, &e) == PK_OK, "close");
    char *t = slurp(path);
    PK_CHECK(f, t && !strncmp(t, PK_TRAIN_LOG_HEADER "\n1,1,0.01,2.5,1,1,0,0,3.5,",
                              strlen(PK_TRAIN_LOG_HEADER) + 26),
             "first row: %s", t ? t : "(null)");
    PK_CHECK(f, t && strstr(t, "\n2,1,,,,,,,,") && strstr(t, ",0.500000,0.600000,0.700000,0.800000\n"),
             "validation row: %s", t ? t : "(null)");
    steps_of(t ? t : "", got, sizeof got);
    PK_CHECK(f, !strcmp(got, "1,2,2v,3,4"), "rows %s", got);
    free(t);

    /* A crash after step 4 with a torn row; resume from step 2 keeps the
     * validation at 2 and drops 3, 4 and the torn row. */
    FILE *a = fopen(path, "a");
    fputs("5,1,0.01,2", a);
    fclose(a);
    PK_CHECK(f, pk_train_log_open(&l, path, 2, &e) == PK_OK, "reopen: %s", e.msg);
    pk_train_log_row r3 = {3, 1, 0.01, 2.0, 1, 1, 0.5, 0.25, 4};
    PK_CHECK(f, pk_train_log_step(&l, &r3, &e) == PK_OK, "append after trim");
    pk_train_log_close(&l, &e);
    t = slurp(path);
    steps_of(t ? t : "", got, sizeof got);
    PK_CHECK(f, !strcmp(got, "1,2,2v,3"), "after resume at 2: %s", got);
    PK_CHECK(f, t && strstr(t, "\n3,1,0.01,2,1,1,0.5,0.25,4,"), "new row 3: %s", t);
    free(t);

    /* Reopening at the last step changes nothing; a fresh run (0) keeps
     * only the header. */
    t = slurp(path);
    PK_CHECK(f, pk_train_log_open(&l, path, 3, &e) == PK_OK, "reopen at 3");
    pk_train_log_close(&l, &e);
    char *t2 = slurp(path);
    PK_CHECK(f, t && t2 && !strcmp(t, t2), "reopen at the last step rewrote the log");
    free(t);
    free(t2);
    PK_CHECK(f, pk_train_log_open(&l, path, 0, &e) == PK_OK, "reopen at 0");
    pk_train_log_close(&l, &e);
    t = slurp(path);
    PK_CHECK(f, t && !strcmp(t, PK_TRAIN_LOG_HEADER "\n"), "fresh run: %s", t);
    free(t);

    /* A file that is not a log is refused and left alone. */
    put(path, "step,epoch,loss\n1,1,2\n");
    PK_CHECK(f, pk_train_log_open(&l, path, 0, &e) == PK_EFORMAT && strstr(e.msg, "header"),
             "foreign header accepted");
    t = slurp(path);
    PK_CHECK(f, t && !strcmp(t, "step,epoch,loss\n1,1,2\n"), "foreign file changed");
    free(t);
    /* An empty file becomes a log. */
    put(path, "");
    PK_CHECK(f, pk_train_log_open(&l, path, 5, &e) == PK_OK, "empty file");
    pk_train_log_close(&l, &e);
    t = slurp(path);
    PK_CHECK(f, t && !strcmp(t, PK_TRAIN_LOG_HEADER "\n"), "empty file: %s", t);
    free(t);
    /* A log written before miou_present: resuming upgrades the header and
     * gives every kept row the empty field it lacks; the rows after the
     * resume step and a torn row go as usual. */
    put(path, "step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc\n"
              "1,1,0.01,2.5,1,1,0,0,3.5,1.000,,,\n"
              "1,1,,,,,,,,1.000,0.1,0.2,0.3\n"
              "2,1,0.01,2.5,1,1,0,0,3.5,1.000,,,\n"
              "3,1,0.0");
    PK_CHECK(f, pk_train_log_open(&l, path, 1, &e) == PK_OK, "legacy log: %s", e.msg);
    pk_train_log_close(&l, &e);
    t = slurp(path);
    PK_CHECK(f, t && !strcmp(t, PK_TRAIN_LOG_HEADER "\n"
                                "1,1,0.01,2.5,1,1,0,0,3.5,1.000,,,,\n"
                                "1,1,,,,,,,,1.000,0.1,0.2,0.3,\n"),
             "legacy log upgraded: %s", t ? t : "(null)");
    free(t);
    /* A directory cannot be a log. */
    PK_CHECK(f, pk_train_log_open(&l, dir, 0, &e) != PK_OK, "a directory opened as a log");
    return f;
}

static int test_ckpt_names(const char *dir)
{
    int f = 0;
    char d[512], p[600], got[600];
    long step = -1;
    pk_err e;
    snprintf(d, sizeof d, "%s/ck", dir);
    PK_CHECK(f, pk_ckpt_dir_latest(d, got, sizeof got, &step, &e) == PK_ENOTFOUND,
             "missing directory");
    mkdir(d, 0777);
    PK_CHECK(f, pk_ckpt_dir_latest(d, got, sizeof got, &step, &e) == PK_ENOTFOUND,
             "empty directory");
    /* Only exact "step-%08d.safetensors" names count. */
    const char *names[] = {"step-00000012.safetensors", "step-00000003.safetensors",
                           "step-00000099.safetensors.tmp.42", "step-100.safetensors",
                           "step-0000009x.safetensors", "other.safetensors",
                           "step-00000011.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", d, names[i]);
        put(p, "x");
    }
    PK_CHECK(f, pk_ckpt_dir_latest(d, got, sizeof got, &step, &e) == PK_OK, "latest: %s",
             e.msg);
    snprintf(p, sizeof p, "%s/step-00000012.safetensors", d);
    PK_CHECK(f, step == 12 && !strcmp(got, p), "latest %ld %s", step, got);
    return f;
}

int main(void)
{
    char dir[] = "/tmp/pspkd_test_train_log.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int f = test_log(dir) + test_ckpt_names(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  note: could not remove %s\n", dir);
    printf("%s test_train_log\n", f ? "FAIL" : "ok");
    return f != 0;
}
