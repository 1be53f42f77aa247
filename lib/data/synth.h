/* The synthetic VOC-like data set (voc-synth(1)): per sample, a cluttered
 * textured background with distractor marks, and 1..4 objects drawn as
 * shapes. Each class is a (shape, colour distribution) pair chosen so that
 * neither alone names the class: two classes share each shape family
 * with different colours, and neighbouring classes' colours overlap.
 * Distractors use every colour but none of the class shapes.
 *
 * Every sample is a pure function of (seed, index, options): its own
 * counter-based random stream, so samples can be made in any order or in
 * parallel and still be identical. */
#ifndef PSPKD_SYNTH_H
#define PSPKD_SYNTH_H

#include <stdint.h>
#include "core/err.h"
#include "data/image.h"

#define PK_SYNTH_MAX_CLASSES 8

typedef struct pk_synth_opts {
    uint64_t seed;
    int min_size, max_size; /* width and height each drawn from [min, max] */
    int nclasses;           /* object classes, 1..PK_SYNTH_MAX_CLASSES */
    int class_ids[PK_SYNTH_MAX_CLASSES]; /* label value (VOC id) of each */
    int border;             /* 255 band: pixels within this Chebyshev distance
                               of another class (0: no band) */
    int min_objects, max_objects;
} pk_synth_opts;

/* 97..129 px, 6 classes (VOC 1 aeroplane, 3 bird, 7 car, 8 cat, 12 dog,
 * 15 person), border 1, 1..4 objects, seed 1. */
void pk_synth_defaults(pk_synth_opts *o);
/* PK_EINVAL with a message when an option is out of range. */
int pk_synth_check(const pk_synth_opts *o, pk_err *e);

/* Renders sample `index`: img (RGB8) and label (indices with 255 band),
 * both allocated here. */
int pk_synth_sample(pk_image *img, pk_image *label, const pk_synth_opts *o, int index,
                    pk_err *e);

/* Shape and colour of class slot k (for the man page / --describe). */
const char *pk_synth_class_desc(int k);

#endif
