#include "data/palette.h"

#include <stddef.h>

void pk_voc_palette(uint8_t rgb[256][3])
{
    for (int i = 0; i < 256; i++) {
        int r = 0, g = 0, b = 0, c = i;
        /* Three bits of the index per round, into bit (7 - round) of R, G, B. */
        for (int j = 0; j < 8; j++, c >>= 3) {
            r |= (c & 1) << (7 - j);
            g |= (c >> 1 & 1) << (7 - j);
            b |= (c >> 2 & 1) << (7 - j);
        }
        rgb[i][0] = (uint8_t)r;
        rgb[i][1] = (uint8_t)g;
        rgb[i][2] = (uint8_t)b;
    }
}

const char *pk_voc_class_name(int i)
{
    static const char *const names[PK_VOC_CLASSES] = {
        "background", "aeroplane", "bicycle", "bird",        "boat",   "bottle", "bus",
        "car",        "cat",       "chair",   "cow",         "diningtable", "dog", "horse",
        "motorbike",  "person",    "pottedplant", "sheep",   "sofa",   "train",  "tvmonitor",
    };
    return i >= 0 && i < PK_VOC_CLASSES ? names[i] : NULL;
}
