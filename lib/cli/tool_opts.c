/* Command-line helpers shared by the tools. */
#include "cli/tool_opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pk_usage_error(const char *tool, const char *msg)
{
    fprintf(stderr, "%s: %s\nTry '%s --help'.\n", tool, msg, tool);
    return 2;
}

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

void pk_opt_name(char *m, size_t cap, const char *fmt, int opt, const char *arg)
{
    char shortopt[3] = {'-', (char)opt, '\0'};
    int is_short = strncmp(arg, "--", 2) && opt > ' ' && opt < 127;
    snprintf(m, cap, fmt, is_short ? shortopt : arg);
}
