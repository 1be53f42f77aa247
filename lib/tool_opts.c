/* Command-line helpers shared by the tools. */
#include "tool_opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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
