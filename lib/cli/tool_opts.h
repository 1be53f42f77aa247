/* Command-line helpers shared by the tools (the programs in tools/). */
#ifndef PSPKD_TOOL_OPTS_H
#define PSPKD_TOOL_OPTS_H

#include <stddef.h>

/* "tool: msg" and "Try 'tool --help'." on stderr; returns 2, the usage
 * error exit status. */
int pk_usage_error(const char *tool, const char *msg);

/* A base-10 integer in [lo, hi] into *out; 0, or -1 when s is not one.
 * endp NULL: the whole string must be the number; otherwise *endp gets
 * where it stopped (e.g. at a ',' of a list). */
int pk_parse_long(const char *s, long lo, long hi, long *out, char **endp);
/* A finite number in [lo, hi], the whole string, into *out; 0, or -1. */
int pk_parse_double(const char *s, double lo, double hi, double *out);

/* m = fmt with the offending option's name for a getopt error: the
 * argument when it is a long option, else "-" optopt (a short option may
 * sit inside a group such as -xq). */
void pk_opt_name(char *m, size_t cap, const char *fmt, int opt, const char *arg);

#endif
