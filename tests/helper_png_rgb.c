/* helper_png_rgb: rewrites a palette (or grey) label PNG as an RGB PNG, each
 * index replaced by its VOC palette colour. voc-pack.bats uses it to make
 * the RGB-coloured label masks some datasets ship, with pspkd's own PNG
 * code rather than whatever image tool happens to be on the PATH.
 * usage: helper_png_rgb IN.png OUT.png */
#include <stdio.h>
#include "data/image.h"
#include "data/palette.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: helper_png_rgb IN.png OUT.png\n");
        return 2;
    }
    pk_err e = {0};
    pk_image idx = {0}, rgb = {0};
    int kind = 0, rc = pk_png_read_label(&idx, &kind, argv[1], &e);
    if (!rc && kind == PK_PNG_RGB)
        rc = pk_fail(&e, PK_EFORMAT, "already RGB");
    if (!rc)
        rc = pk_image_alloc(&rgb, idx.w, idx.h, 3, &e);
    if (!rc) {
        uint8_t pal[256][3];
        pk_voc_palette(pal);
        for (size_t i = 0; i < (size_t)idx.w * idx.h; i++)
            for (int c = 0; c < 3; c++)
                rgb.px[3 * i + c] = pal[idx.px[i]][c];
        rc = pk_png_write(argv[2], &rgb, &e);
    }
    if (rc)
        fprintf(stderr, "helper_png_rgb: %s (%s)\n", e.msg, argv[1]);
    pk_image_free(&idx);
    pk_image_free(&rgb);
    return rc ? 1 : 0;
}
