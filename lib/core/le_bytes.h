/* Little-endian field access and CRC32 for the on-disk record formats
 * (pspkd-data(5), pspkd-logits(5)). */
#ifndef PSPKD_LE_BYTES_H
#define PSPKD_LE_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

static inline void pk_put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void pk_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void pk_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t pk_get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t pk_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t pk_get64(const uint8_t *p)
{
    return (uint64_t)pk_get32(p) | (uint64_t)pk_get32(p + 4) << 32;
}

/* zlib's crc32 takes uInt lengths: feed large buffers in pieces. */
static inline uint32_t pk_crc32(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

#endif
