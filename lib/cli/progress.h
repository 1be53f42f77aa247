/* Progress line for long loops, on stderr by convention:
 *   "train 120/1000 12.0% 3.2 img/s elapsed 1m05s ETA 4m35s | loss=0.53 lr=0.0098"
 * On a TTY the line is redrawn in place ('\r', clear to end of line) at most
 * every tty_interval seconds; otherwise (a log file, a pipe) one line is
 * printed for the first update and then every `interval` seconds. finish
 * always prints a final line. The rate and ETA average over this run only,
 * so set `start` to the resumed step. Tunables are plain fields: set them
 * after pk_progress_init. */
#ifndef PSPKD_PROGRESS_H
#define PSPKD_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

typedef struct pk_progress {
    FILE *stream;
    char label[64];
    long total;          /* steps; <= 0 when unknown (no %, no ETA) */
    long start;          /* step the run started from (resume), default 0 */
    int items_per_step;  /* images per step for img/s (the batch), default 1 */
    int tty;             /* redraw in place; set from isatty(fileno(stream)) */
    double interval;     /* seconds between lines when not a TTY, default 30 */
    double tty_interval; /* seconds between redraws on a TTY, default 0.2 */
    double t0;           /* start time (seconds, monotonic clock) */
    double last_print;   /* time of the last line; < 0 before the first */
    int drawn;           /* a TTY line is on screen, not yet ended by '\n' */
} pk_progress;

/* Seconds on the monotonic clock. */
double pk_now(void);
/* "0s", "59s", "1m05s", "2h03m04s", "3d04h05m"; "--" for negative, NaN, inf. */
char *pk_format_duration(char *buf, size_t cap, double seconds);

void pk_progress_init(pk_progress *p, long total, const char *label, FILE *stream);
/* kv: short "k=v k=v" text (losses, lr) or NULL. Returns 1 when a line was
 * printed, 0 when throttled. */
int pk_progress_update(pk_progress *p, long step, const char *kv);
/* Ends the line: "label done 1000 steps in 5m00s, 3.3 img/s | kv". */
void pk_progress_finish(pk_progress *p, long step, const char *kv);

/* Before printing another message mid-loop: ends a TTY line drawn in place
 * (prints '\n'), so the message does not land on top of it. */
void pk_progress_break(pk_progress *p);

/* The same with an explicit clock (now, seconds on pk_now's clock), and the
 * line formatter itself: for tests. */
void pk_progress_init_at(pk_progress *p, long total, const char *label, FILE *stream,
                         double now);
int pk_progress_update_at(pk_progress *p, long step, double now, const char *kv);
void pk_progress_finish_at(pk_progress *p, long step, double now, const char *kv);
/* Formats the progress text (no '\r' or '\n') into buf; returns buf. */
char *pk_progress_line(const pk_progress *p, long step, double now, const char *kv, char *buf,
                       size_t cap);

#endif
