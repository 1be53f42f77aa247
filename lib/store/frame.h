/* The frame shared by pspkd's binary records (pspkd-data(5),
 * pspkd-logits(5)): a 4-byte magic, a u16 little-endian format version at
 * offset 4, and the CRC-32 (zlib) of all preceding bytes in the last 4
 * bytes. Also the rule for the ids, keys and names stored inside them: no
 * control bytes. */
#ifndef PSPKD_FRAME_H
#define PSPKD_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

/* Writes the magic and the version at p. */
void pk_frame_open(uint8_t *p, const char *magic, unsigned version);
/* Stores the CRC-32 of p[0 .. len-4) in p[len-4 .. len) and hands the
 * record to the caller: *out = p, *out_len = len. Returns PK_OK. */
int pk_frame_seal(uint8_t *p, size_t len, uint8_t **out, size_t *out_len);
/* Checks, in this order, len >= min_len (min_len >= 10), the magic, the
 * version and the CRC; PK_EFORMAT with a message naming `what` ("metadata",
 * "logits record") at the first that fails. */
int pk_frame_check(const uint8_t *p, size_t len, size_t min_len, const char *magic,
                   unsigned version, const char *what, pk_err *e);
/* 1 when s[0 .. n) holds no control bytes (below 0x20, or 0x7f). */
int pk_printable(const char *s, size_t n);

#endif
