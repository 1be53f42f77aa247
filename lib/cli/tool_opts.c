/* The tools' command line: see tool_opts.h. */
#include "cli/tool_opts.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int pk_usage_error(const char *tool, const char *msg)
{
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", tool, msg, tool);
    return 2;
}

int pk_usage_errorf(const char *tool, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pk_usage_error(tool, msg);
}

/* ---- getopt_long ---------------------------------------------------------- */

/* How many of lo's names start with the len characters at name; *hit gets
 * the exact match, else the last one whose code is opt (NULL if none). */
static int long_matches(const struct option *lo, const char *name, size_t len, int opt,
                        const struct option **hit)
{
    int n = 0;
    *hit = NULL;
    for (; lo && lo->name; lo++) {
        if (strncmp(lo->name, name, len))
            continue;
        n++;
        if (lo->val == opt && (!*hit || strlen(lo->name) == len))
            *hit = lo;
    }
    return n;
}

void pk_getopt_message(char *m, size_t cap, int c, int opt, const char *arg,
                       const struct option *lo)
{
    /* A long option is always the whole argument getopt just stepped over;
     * a short one is not when it sits inside a group (-Zq). */
    int is_long = arg && !strncmp(arg, "--", 2) && arg[2];
    const char *name = is_long ? arg + 2 : "";
    size_t len = strcspn(name, "=");
    const struct option *o;
    int n = long_matches(lo, name, len, opt, &o);
    const char *full = o ? o->name : NULL;
    if (is_long && c == ':') {
        snprintf(m, cap, "option '--%.*s' needs an argument", full ? INT_MAX : (int)len,
                 full ? full : name);
    } else if (is_long && opt == 0) {
        snprintf(m, cap, "%s option '--%.*s'", n > 1 ? "ambiguous" : "unknown", (int)len, name);
    } else if (is_long && name[len] == '=' && o && o->has_arg == no_argument) {
        snprintf(m, cap, "option '--%s' takes no argument", full);
    } else {
        char s[8];
        if (opt > ' ' && opt < 127)
            snprintf(s, sizeof s, "-%c", opt);
        else
            snprintf(s, sizeof s, "-\\x%02x", (unsigned)opt & 0xffu);
        snprintf(m, cap, c == ':' ? "option '%s' needs an argument" : "unknown option '%s'", s);
    }
}

int pk_getopt(const pk_tool *t, int argc, char **argv, pk_opt_fn *fn, void *ctx)
{
    struct option lo[PK_TOOL_LONGOPTS_MAX + 3];
    size_t n = 0;
    for (const struct option *x = t->longopts; x->name && n < PK_TOOL_LONGOPTS_MAX; x++)
        lo[n++] = *x;
    lo[n++] = (struct option){"help", no_argument, 0, 'h'};
    lo[n++] = (struct option){"version", no_argument, 0, 'V'};
    lo[n] = (struct option){0, 0, 0, 0};
    char shortopts[128];
    snprintf(shortopts, sizeof shortopts, ":%shV", t->shortopts);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        if (c == 'h') {
            t->usage(stdout);
            return 0;
        }
        if (c == 'V') {
            printf("%s %s\n", t->name, PSPKD_VERSION);
            return 0;
        }
        if (c == ':' || c == '?') {
            char m[160];
            pk_getopt_message(m, sizeof m, c, optopt, argv[optind - 1], lo);
            return pk_usage_error(t->name, m);
        }
        int st = fn(ctx, c, optarg);
        if (st != PK_GO_ON)
            return st;
    }
    return PK_GO_ON;
}

int pk_num_option(const char *tool, const pk_num_opt *t, size_t n, int code, const char *arg)
{
    for (; n && t->code != code; n--)
        t++;
    if (!n)
        return pk_usage_error(tool, "unknown option");
    long l = 0;
    double d = 0;
    int bad = t->i || t->l ? pk_parse_long(arg, (long)t->lo, (long)t->hi, &l, NULL)
                           : pk_parse_double(arg, t->lo, t->hi, &d);
    if (bad)
        return pk_usage_error(tool, t->err);
    if (t->i)
        *t->i = (int)l;
    else if (t->l)
        *t->l = l;
    else if (t->f)
        *t->f = (float)d;
    else
        *t->d = d;
    return PK_GO_ON;
}

/* ---- values --------------------------------------------------------------- */

int pk_parse_long(const char *s, long lo, long hi, long *out, char **endp)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < lo || v > hi || (!endp && *end))
        return -1;
    if (endp)
        *endp = end;
    *out = v;
    return 0;
}

int pk_parse_int(const char *s, int lo, int hi, int *out)
{
    long v;
    if (pk_parse_long(s, lo, hi, &v, NULL))
        return -1;
    *out = (int)v;
    return 0;
}

int pk_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int pk_parse_seed(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1; /* no sign, no blank: strtoull would wrap "-1" */
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int pk_parse_crop(const char *s, int *h, int *w)
{
    long vh, vw;
    char *end;
    if (pk_parse_long(s, PK_CROP_MIN, PK_CROP_MAX, &vh, &end))
        return -1;
    if (*end == 'x') {
        if (pk_parse_long(end + 1, PK_CROP_MIN, PK_CROP_MAX, &vw, NULL))
            return -1;
    } else if (*end) {
        return -1;
    } else {
        vw = vh;
    }
    if ((vh - 1) % 8 || (vw - 1) % 8)
        return -1;
    *h = (int)vh;
    *w = (int)vw;
    return 0;
}
