/* The command line of the tools (the programs in tools/): one getopt_long
 * driver with its error reporter, and the parsers of option values.
 *
 * A tool describes itself in a pk_tool and hands every option but -h/--help
 * and -V/--version to its own handler; the handler, like the driver, returns
 * PK_GO_ON to go on, or the exit status to end with after printing its one
 * line (pk_usage_error for a bad value: 2). */
#ifndef PSPKD_TOOL_OPTS_H
#define PSPKD_TOOL_OPTS_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What a handler or the driver returns to go on; anything else is the
 * tool's exit status. */
#define PK_GO_ON (-1)

/* The training and evaluation crop: N or HxW, each side 8k+1 within
 * PK_CROP_MIN..PK_CROP_MAX (the limits pk_seg_opts_check enforces; one
 * 8193-wide window already holds 8M pixels per image). */
#define PK_CROP_MIN 1
#define PK_CROP_MAX 8193
#define PK_CROP_ERROR "--crop takes N or HxW, each side 8k+1 in 1..8193 (e.g. 473 or 33x41)"

/* The most long options a tool may have (--help and --version apart). */
#define PK_TOOL_LONGOPTS_MAX 64

typedef struct pk_tool {
    const char *name;              /* "seg-eval": the prefix of every message */
    const char *shortopts;         /* the tool's getopt letters, e.g. "m:d:q" */
    const struct option *longopts; /* {0}-terminated; --help and --version
                                    * (-h, -V) are added to both */
    void (*usage)(FILE *f);        /* the --help text */
} pk_tool;

/* One option: code as getopt_long returns it, arg its argument (NULL for
 * none). Returns PK_GO_ON or an exit status. */
typedef int pk_opt_fn(void *ctx, int code, const char *arg);

/* Runs getopt_long over argv (from optind): --help prints t->usage on
 * stdout and returns 0, --version "name version" and 0; an unknown option,
 * a missing or an unexpected argument gives one usage error (2); every
 * other option goes to fn. Returns PK_GO_ON with optind at the first
 * operand, or the exit status. */
int pk_getopt(const pk_tool *t, int argc, char **argv, pk_opt_fn *fn, void *ctx);

/* The message for getopt_long's error return c (':' or '?'), given its
 * optopt and argv[optind - 1], into m: "unknown option '-Z'", "unknown
 * option '--bogus'", "ambiguous option '--s'", "option '-o' needs an
 * argument", "option '--quiet' takes no argument". An unknown short option
 * is named by optopt (it may sit inside a group such as -Zq, where argv
 * does not point at it); a long one by the argument itself. */
void pk_getopt_message(char *m, size_t cap, int c, int opt, const char *arg,
                       const struct option *lo);

/* A numeric option: its code, its range (ends included), the usage error
 * for a value outside it or not a number ("--batch takes 1..256"), and the
 * one target it is stored in, by type. */
typedef struct pk_num_opt {
    int code;
    double lo, hi;
    const char *err;
    int *i;
    long *l;
    float *f;
    double *d;
} pk_num_opt;

/* Stores arg in the target of the entry of t (n entries) whose code is
 * code: PK_GO_ON, or the usage error's exit status (2); a code not in t
 * is an unknown option (2). A handler's default case. */
int pk_num_option(const char *tool, const pk_num_opt *t, size_t n, int code, const char *arg);

/* "tool: msg" and "Try 'tool --help'." on stderr; returns 2, the usage
 * error exit status. */
int pk_usage_error(const char *tool, const char *msg);
int pk_usage_errorf(const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The value parsers: 0, or -1 when s is not one (nothing stored). */

/* A base-10 integer in [lo, hi] into *out. endp NULL: the whole string
 * must be the number; otherwise *endp gets where it stopped (e.g. at a ','
 * of a list). */
int pk_parse_long(const char *s, long lo, long hi, long *out, char **endp);
/* The same, whole string, into an int. */
int pk_parse_int(const char *s, int lo, int hi, int *out);
/* A finite number in [lo, hi], the whole string, into *out. */
int pk_parse_double(const char *s, double lo, double hi, double *out);
/* A seed: decimal digits only (010 is ten), up to UINT64_MAX. */
int pk_parse_seed(const char *s, uint64_t *out);
/* A crop: "N" (square) or "HxW", each side 8k+1 in PK_CROP_MIN..MAX. */
int pk_parse_crop(const char *s, int *h, int *w);

#endif
