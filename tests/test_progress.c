/* Progress reporter: duration formatting, the line's numbers (rate, ETA,
 * resume), throttling on files and in-place redraws on a TTY. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/progress.h"
#include "support.h"

static int failures;

static void dur(double s, const char *want)
{
    char buf[32];
    pk_format_duration(buf, sizeof buf, s);
    PK_CHECK(failures, strcmp(buf, want) == 0, "duration %g: '%s', want '%s'", s, buf, want);
}

static void line_is(const pk_progress *p, long step, double now, const char *kv,
                    const char *want)
{
    char buf[640];
    pk_progress_line(p, step, now, kv, buf, sizeof buf);
    PK_CHECK(failures, strcmp(buf, want) == 0, "line:\n    got  '%s'\n    want '%s'", buf, want);
}

/* Everything written to fp so far, as a string (caller frees). */
static char *slurp(FILE *fp)
{
    long n = ftell(fp);
    char *s = calloc((size_t)n + 1, 1);
    rewind(fp);
    if (!s || fread(s, 1, (size_t)n, fp) != (size_t)n)
        abort();
    return s;
}

static int count(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + strlen(sub), sub))
        n++;
    return n;
}

int main(void)
{
    dur(0, "0s");
    dur(59.9, "59s");
    dur(60, "1m00s");
    dur(65, "1m05s");
    dur(3599, "59m59s");
    dur(3600, "1h00m00s");
    dur(7384, "2h03m04s");
    dur(86400 + 4 * 3600 + 5 * 60 + 7, "1d04h05m");
    dur(-1, "--");
    dur(NAN, "--");
    dur(INFINITY, "--");

    FILE *fp = tmpfile();
    if (!fp)
        abort();
    pk_progress p;
    pk_progress_init_at(&p, 1000, "train", fp, 100.0);
    PK_CHECK(failures, p.tty == 0 && p.items_per_step == 1 && p.start == 0, "defaults");
    p.items_per_step = 16;
    /* 100 steps x 16 images in 65 s: 24.6 img/s; 900 steps left at 100/65 steps/s = 585 s. */
    line_is(&p, 100, 165.0, "loss=0.5 lr=0.01",
            "train 100/1000 10.0% 24.6 img/s elapsed 1m05s ETA 9m45s | loss=0.5 lr=0.01");
    line_is(&p, 0, 100.5, NULL, "train 0/1000 0.0% 0.000 img/s elapsed 0s ETA --");
    p.start = 500; /* resumed at step 500: 100 steps x 16 in 10 s, 400 left at 10 steps/s */
    p.items_per_step = 16;
    line_is(&p, 600, 110.0, "", "train 600/1000 60.0% 160.0 img/s elapsed 10s ETA 40s");
    p.start = 0;
    p.items_per_step = 1;
    p.total = 0; /* unknown length */
    line_is(&p, 7, 102.0, "k=v", "train 7 3.50 img/s elapsed 2s | k=v");
    p.total = 1000;

    /* Not a TTY: first update prints, then one line per 30 s. */
    int printed = 0;
    printed += pk_progress_update_at(&p, 1, 101.0, "a=1");
    printed += pk_progress_update_at(&p, 2, 110.0, "a=2");
    printed += pk_progress_update_at(&p, 3, 131.0, "a=3");
    printed += pk_progress_update_at(&p, 4, 140.0, "a=4");
    pk_progress_finish_at(&p, 5, 150.0, "a=5");
    char *out = slurp(fp);
    PK_CHECK(failures, printed == 2, "%d lines printed, want 2", printed);
    PK_CHECK(failures, count(out, "\n") == 3 && !strchr(out, '\r'), "log output:\n%s", out);
    PK_CHECK(failures, strstr(out, "train 1/1000 0.1% ") && strstr(out, "| a=3\n") &&
                           !strstr(out, "a=2") && !strstr(out, "a=4"),
             "log lines:\n%s", out);
    PK_CHECK(failures, strstr(out, "train done 5 steps in 50s, 0.10 img/s | a=5\n") != NULL,
             "finish line:\n%s", out);
    free(out);
    fclose(fp);

    /* TTY: redrawn in place, throttled to tty_interval, ended by finish. */
    fp = tmpfile();
    if (!fp)
        abort();
    pk_progress_init_at(&p, 10, "dump", fp, 0.0);
    p.tty = 1;
    printed = pk_progress_update_at(&p, 1, 0.1, NULL);
    printed += pk_progress_update_at(&p, 2, 0.2, NULL); /* 0.1 s after the last: skipped */
    printed += pk_progress_update_at(&p, 3, 0.35, NULL);
    PK_CHECK(failures, p.drawn == 1, "drawn flag");
    pk_progress_break(&p);
    pk_progress_break(&p); /* nothing drawn now: no second newline */
    printed += pk_progress_update_at(&p, 4, 0.6, NULL);
    pk_progress_finish_at(&p, 10, 1.0, NULL);
    out = slurp(fp);
    PK_CHECK(failures, printed == 3, "%d redraws, want 3", printed);
    PK_CHECK(failures, count(out, "\r") == 4 && count(out, "\x1b[K") == 4 &&
                           count(out, "\n") == 2 && out[strlen(out) - 1] == '\n',
             "tty output: '%s'", out);
    PK_CHECK(failures, strstr(out, "\rdump 3/10 30.0% ") && !strstr(out, "dump 2/10") &&
                           strstr(out, "\rdump done 10 steps in 1s, 10.0 img/s\x1b[K\n"),
             "tty lines: '%s'", out);
    free(out);
    fclose(fp);

    /* Real clock: update/finish run and the clock moves forward. */
    double a = pk_now(), b = pk_now();
    PK_CHECK(failures, a > 0 && b >= a, "monotonic clock");

    if (failures)
        fprintf(stderr, "test_progress: %d failure(s)\n", failures);
    else
        printf("  ok  durations, progress lines, log throttling, tty redraw\n");
    return failures != 0;
}
