/* VOC palette against colours known from VOC's label PNGs, and the class
 * names against data/voc_classes.txt (run from the repository root). */
#include <string.h>

#include "data/palette.h"
#include "support.h"

static int failures;

int main(void)
{
    uint8_t pal[256][3];
    memset(pal, 0x5a, sizeof pal);
    pk_voc_palette(pal);
    static const struct {
        int i;
        uint8_t rgb[3];
    } known[] = {
        {0, {0, 0, 0}},        {1, {128, 0, 0}},     {2, {0, 128, 0}},
        {3, {128, 128, 0}},    {4, {0, 0, 128}},     {5, {128, 0, 128}},
        {8, {64, 0, 0}},       {12, {64, 0, 128}},   {15, {192, 128, 128}},
        {20, {0, 64, 128}},    {255, {224, 224, 192}},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        const uint8_t *c = pal[known[k].i];
        PK_CHECK(failures, memcmp(c, known[k].rgb, 3) == 0, "palette[%d] = (%d,%d,%d)",
                 known[k].i, c[0], c[1], c[2]);
    }
    int dup = 0;
    for (int i = 0; i < 256; i++)
        for (int j = 0; j < i; j++)
            dup += memcmp(pal[i], pal[j], 3) == 0;
    PK_CHECK(failures, dup == 0, "%d duplicate palette colours", dup);

    PK_CHECK(failures, pk_voc_class_name(-1) == NULL && pk_voc_class_name(21) == NULL,
             "names out of range are NULL");
    PK_CHECK(failures, strcmp(pk_voc_class_name(0), "background") == 0 &&
                           strcmp(pk_voc_class_name(15), "person") == 0 &&
                           strcmp(pk_voc_class_name(20), "tvmonitor") == 0,
             "names 0, 15, 20");
    FILE *fp = fopen("data/voc_classes.txt", "r");
    PK_CHECK(failures, fp != NULL, "cannot open data/voc_classes.txt (run from the repo root)");
    if (fp) {
        char line[64];
        int n = 0;
        while (fgets(line, sizeof line, fp)) {
            line[strcspn(line, "\r\n")] = '\0';
            const char *want = pk_voc_class_name(n);
            PK_CHECK(failures, want && strcmp(line, want) == 0, "line %d '%s' vs '%s'", n + 1,
                     line, want ? want : "(none)");
            n++;
        }
        fclose(fp);
        PK_CHECK(failures, n == PK_VOC_CLASSES, "%d names in data/voc_classes.txt", n);
    }
    if (failures)
        fprintf(stderr, "test_palette: %d failure(s)\n", failures);
    else
        printf("  ok  VOC palette (11 known colours, 256 distinct) and 21 class names\n");
    return failures != 0;
}
