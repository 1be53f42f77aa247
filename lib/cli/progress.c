#include "cli/progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double pk_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0; /* cannot happen on Linux; progress is cosmetic anyway */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *pk_format_duration(char *buf, size_t cap, double seconds)
{
    if (!(seconds >= 0) || isinf(seconds) || seconds > 1e12) {
        snprintf(buf, cap, "--");
        return buf;
    }
    long long s = (long long)seconds;
    if (s < 60)
        snprintf(buf, cap, "%llds", s);
    else if (s < 3600)
        snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%lldd%02lldh%02lldm", s / 86400, s / 3600 % 24, s / 60 % 60);
    return buf;
}

void pk_progress_init_at(pk_progress *p, long total, const char *label, FILE *stream,
                         double now)
{
    memset(p, 0, sizeof *p);
    p->stream = stream;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->items_per_step = 1;
    p->tty = stream && isatty(fileno(stream));
    p->interval = 30.0;
    p->tty_interval = 0.2;
    p->t0 = now;
    p->last_print = -1.0;
}

void pk_progress_init(pk_progress *p, long total, const char *label, FILE *stream)
{
    pk_progress_init_at(p, total, label, stream, pk_now());
}

/* Images per second over this run; 0 before any time has passed. */
static double rate(const pk_progress *p, long step, double now)
{
    double dt = now - p->t0;
    long done = step - p->start;
    return dt > 0 && done > 0 ? (double)done * p->items_per_step / dt : 0.0;
}

static void fmt_rate(char *buf, size_t cap, double r)
{
    snprintf(buf, cap, r >= 10 ? "%.1f" : r >= 0.1 ? "%.2f" : "%.3f", r);
}

char *pk_progress_line(const pk_progress *p, long step, double now, const char *kv, char *buf,
                       size_t cap)
{
    char el[32], eta[32], r[32], pos[64];
    double elapsed = now - p->t0, img_s = rate(p, step, now);
    pk_format_duration(el, sizeof el, elapsed);
    fmt_rate(r, sizeof r, img_s);
    if (p->total > 0) {
        double steps_s = img_s / (p->items_per_step > 0 ? p->items_per_step : 1);
        /* No ETA until something has been done. */
        pk_format_duration(eta, sizeof eta,
                           steps_s > 0 ? (double)(p->total - step) / steps_s : -1.0);
        snprintf(pos, sizeof pos, "%ld/%ld %.1f%%", step, p->total,
                 100.0 * (double)step / (double)p->total);
        snprintf(buf, cap, "%s%s%s %s img/s elapsed %s ETA %s%s%s", p->label,
                 *p->label ? " " : "", pos, r, el, eta, kv && *kv ? " | " : "", kv ? kv : "");
    } else {
        snprintf(buf, cap, "%s%s%ld %s img/s elapsed %s%s%s", p->label, *p->label ? " " : "",
                 step, r, el, kv && *kv ? " | " : "", kv ? kv : "");
    }
    return buf;
}

int pk_progress_update_at(pk_progress *p, long step, double now, const char *kv)
{
    if (!p->stream)
        return 0;
    double every = p->tty ? p->tty_interval : p->interval;
    if (p->last_print >= 0 && now - p->last_print < every)
        return 0;
    char line[640];
    pk_progress_line(p, step, now, kv, line, sizeof line);
    if (p->tty) {
        fprintf(p->stream, "\r%s\x1b[K", line); /* ESC[K clears what a longer line left */
        p->drawn = 1;
    } else {
        fprintf(p->stream, "%s\n", line);
    }
    fflush(p->stream);
    p->last_print = now;
    return 1;
}

int pk_progress_update(pk_progress *p, long step, const char *kv)
{
    return pk_progress_update_at(p, step, pk_now(), kv);
}

void pk_progress_finish_at(pk_progress *p, long step, double now, const char *kv)
{
    if (!p->stream)
        return;
    char el[32], r[32];
    pk_format_duration(el, sizeof el, now - p->t0);
    fmt_rate(r, sizeof r, rate(p, step, now));
    fprintf(p->stream, "%s%s%sdone %ld steps in %s, %s img/s%s%s%s\n", p->tty ? "\r" : "",
            p->label, *p->label ? " " : "", step - p->start, el, r, kv && *kv ? " | " : "",
            kv ? kv : "", p->tty ? "\x1b[K" : "");
    fflush(p->stream);
    p->drawn = 0;
}

void pk_progress_finish(pk_progress *p, long step, const char *kv)
{
    pk_progress_finish_at(p, step, pk_now(), kv);
}

void pk_progress_break(pk_progress *p)
{
    if (p->stream && p->drawn) {
        fputc('\n', p->stream);
        fflush(p->stream);
    }
    p->drawn = 0;
}
