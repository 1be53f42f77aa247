/* libFuzzer: the tools' option-value parsers (pk_parse_long, _int,
 * _double, _seed, _crop) on one string; each must store only what it
 * accepts and keep to its range. */
#include <math.h>

#include "cli/tool_opts.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fz_string(data, size);
    long l;
    char *end;
    if (pk_parse_long(s, -1000, 1000, &l, NULL) == 0 && (l < -1000 || l > 1000))
        abort();
    if (pk_parse_long(s, 0, 1L << 40, &l, &end) == 0 && (end < s || end > s + size))
        abort();
    int i;
    if (pk_parse_int(s, 1, 256, &i) == 0 && (i < 1 || i > 256))
        abort();
    double d;
    if (pk_parse_double(s, -1.0, 1e6, &d) == 0 && !(isfinite(d) && d >= -1.0 && d <= 1e6))
        abort();
    uint64_t seed;
    (void)pk_parse_seed(s, &seed);
    int h, w;
    if (pk_parse_crop(s, &h, &w) == 0 &&
        (h < PK_CROP_MIN || h > PK_CROP_MAX || (h - 1) % 8 || w < PK_CROP_MIN ||
         w > PK_CROP_MAX || (w - 1) % 8))
        abort();
    free(s);
    return 0;
}
