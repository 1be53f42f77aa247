/* Error reporting: every library function that can fail returns an int
 * status (PK_OK == 0) and, when it fails, fills a pk_err with a one-line
 * message that a tool prints as "tool: message". */
#ifndef PSPKD_ERR_H
#define PSPKD_ERR_H

enum pk_status {
    PK_OK = 0,
    PK_EINVAL,   /* bad argument or mismatched sizes */
    PK_EIO,      /* file system / read / write failure */
    PK_ENOMEM,   /* allocation failed */
    PK_EFORMAT,  /* malformed file, record or header */
    PK_EBACKEND, /* oneDNN / cuDNN / CUDA reported an error */
    PK_ELMDB,    /* LMDB reported an error */
    PK_ENOTFOUND /* missing key, tensor or file */
};

typedef struct pk_err {
    int code;
    char msg[512];
} pk_err;

/* Fills e (if non-NULL) with a printf-style message and returns code. */
int pk_fail(pk_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to an existing message; returns e->code. */
int pk_wrap(pk_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
