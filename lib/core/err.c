#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pk_fail(pk_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int pk_wrap(pk_err *e, const char *fmt, ...)
{
    if (!e)
        return PK_EINVAL;
    char prefix[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* Build "prefix: old" by hand; truncating an over-long message is intended. */
    size_t cap = sizeof e->msg - 1, lp = strnlen(prefix, cap), lo;
    memcpy(e->msg, prefix, lp);
    if (lp + 2 <= cap) {
        memcpy(e->msg + lp, ": ", 2);
        lp += 2;
    }
    lo = strnlen(old, cap - lp);
    memcpy(e->msg + lp, old, lo);
    e->msg[lp + lo] = '\0';
    return e->code;
}
