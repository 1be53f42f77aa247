/* IEEE binary16 <-> binary32, round to nearest even (F16C when -march has it). */
#ifndef PSPKD_HALF_H
#define PSPKD_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint16_t pk_f32_to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

static inline float pk_f16_to_f32(uint16_t u)
{
    _Float16 h;
    memcpy(&h, &u, sizeof h);
    return (float)h;
}

#endif
