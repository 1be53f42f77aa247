/* PASCAL VOC class names and colour palette. The palette is VOC's
 * bit-interleaving colour map (devkit's labelcolormap / VOCdevkit): entry i
 * spreads bits (0,1,2), (3,4,5), (6,7) of i over the top bits of R, G, B;
 * it gives 0 -> black, 1 -> (128,0,0), ..., 255 -> (224,224,192), the
 * "void" border colour of VOC's label PNGs. */
#ifndef PSPKD_PALETTE_H
#define PSPKD_PALETTE_H

#include <stdint.h>

#define PK_VOC_CLASSES 21

void pk_voc_palette(uint8_t rgb[256][3]);
/* "background", "aeroplane", ..., "tvmonitor" (as data/voc_classes.txt);
 * NULL outside 0..20. */
const char *pk_voc_class_name(int i);

#endif
