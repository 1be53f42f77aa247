/* The record frame (see frame.h). */
#include "store/frame.h"

#include <string.h>

#include "core/le_bytes.h"

void pk_frame_open(uint8_t *p, const char *magic, unsigned version)
{
    memcpy(p, magic, 4);
    pk_put16(p + 4, version);
}

int pk_frame_seal(uint8_t *p, size_t len, uint8_t **out, size_t *out_len)
{
    pk_put32(p + len - 4, pk_crc32(p, len - 4));
    *out = p;
    *out_len = len;
    return PK_OK;
}

int pk_frame_check(const uint8_t *p, size_t len, size_t min_len, const char *magic,
                   unsigned version, const char *what, pk_err *e)
{
    if (len < min_len)
        return pk_fail(e, PK_EFORMAT, "%s too short (%zu bytes)", what, len);
    if (memcmp(p, magic, 4))
        return pk_fail(e, PK_EFORMAT, "not pspkd %s (bad magic)", what);
    uint32_t ver = pk_get16(p + 4);
    if (ver != version)
        return pk_fail(e, PK_EFORMAT, "%s version %u, this build reads %u", what, ver, version);
    uint32_t crc = pk_crc32(p, len - 4), stored = pk_get32(p + len - 4);
    if (crc != stored)
        return pk_fail(e, PK_EFORMAT, "%s CRC mismatch (stored %08x, computed %08x)", what,
                       stored, crc);
    return PK_OK;
}

int pk_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}
