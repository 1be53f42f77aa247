/* Training augmentation: semseg's transform chain (RandScale, RandRotate,
 * RandomGaussianBlur, RandomHorizontalFlip, Crop 'rand', Normalize) with
 * its distributions and order, computed as ONE inverse affine warp per
 * sample. Every output pixel is mapped back through crop -> flip -> rotate
 * -> scale to a point of the source image, where the image is sampled
 * bilinearly, the label by nearest neighbour and any number of extra float
 * plane sets (e.g. a teacher's stride-8 logits) bilinearly.
 *
 * Geometry (pixel centres at integer coordinates, as OpenCV):
 *   scale:  the scaled image is W1 = round(W*s) x H1 = round(H*s), and a
 *           scaled pixel x1 comes from source x0 = (x1 + 0.5)/s - 0.5
 *           (cv2.resize with fx = fy = s).
 *   rotate: about (W1/2, H1/2) by `angle` degrees, counter-clockwise on
 *           screen, keeping the W1 x H1 frame (cv2.getRotationMatrix2D +
 *           warpAffine); points that fall outside the scaled frame are
 *           border: image = mean, label = ignore.
 *   flip:   x -> W1-1-x.
 *   crop:   the W1 x H1 frame is padded to at least crop size with
 *           pad//2 before (image = mean, label = ignore), then cut at
 *           (off_x, off_y).
 * The valid mask is 1 exactly where the output pixel maps inside the
 * scaled frame AND inside the rotated source, i.e. where the label is a
 * source pixel; it is 0 on crop padding and on the rotation border.
 *
 * Blur: semseg blurs the rotated image before flip and crop, with
 * cv2.GaussianBlur(img, (5,5), 0). For ksize 5 and sigma 0 OpenCV uses its
 * fixed kernel [1 4 6 4 1]/16 (not the sigma-formula 1.1 Gaussian), and so
 * do we. We blur after the warp, on the image only, over the crop plus a
 * 2-pixel margin that is sampled from the warped frame (real neighbours
 * beyond the crop edge, reflect-101 at the frame's edge as OpenCV does);
 * crop padding stays exactly the mean. So the result matches blurring the
 * whole rotated image and then cropping, without computing the whole image.
 *
 * Differences from semseg's four separate resamplings (by design): one
 * interpolation instead of resize-then-warp (sharper, no double blur); the
 * bilinear image is clamped at the source edge instead of blending the
 * rotation border colour into edge pixels; the label is the source pixel
 * nearest to the composed point. */
#ifndef PSPKD_AUGMENT_H
#define PSPKD_AUGMENT_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "core/rng.h"

typedef struct pk_aug_opts {
    int crop_h, crop_w;           /* output size */
    float scale_min, scale_max;   /* RandScale range (0.5, 2) */
    float rotate_min, rotate_max; /* RandRotate range in degrees (-10, 10) */
    float rotate_p;               /* probability of rotating (0.5) */
    float blur_p;                 /* probability of the 5x5 Gaussian blur (0.5) */
    float flip_p;                 /* probability of the horizontal flip (0.5) */
    float mean[3], std[3];        /* RGB, in pixel units (0.485*255 ...) */
    int ignore_label;             /* label on padding / rotation border (255) */
    int none;                     /* 1: no random transform, only centred pad/crop
                                     and normalise (for debugging) */
} pk_aug_opts;

/* semseg's training defaults for a crop_h x crop_w crop. */
void pk_aug_opts_default(pk_aug_opts *o, int crop_h, int crop_w);
/* PK_EINVAL with a message when a field is out of range. */
int pk_aug_opts_check(const pk_aug_opts *o, pk_err *e);

/* One sample's drawn parameters. */
typedef struct pk_aug_params {
    float scale;      /* RandScale factor, both axes */
    int rotate;       /* whether RandRotate fired */
    float angle;      /* degrees (used when rotate) */
    int blur;         /* whether the blur fired */
    int flip;         /* whether the flip fired */
    int off_x, off_y; /* crop offset in the padded scaled frame */
} pk_aug_params;

/* The per-sample generator seed: hash of (seed, epoch, sample index), so a
 * sample's augmentation does not depend on which thread handles it. */
uint64_t pk_aug_sample_seed(uint64_t seed, uint64_t epoch, uint64_t index);

/* Draws a sample's parameters for a w x h source image in semseg's order:
 * scale, rotate (p, angle), blur (p), flip (p), crop offsets. Always
 * consumes the same number of draws. With o->none: scale 1, no rotate,
 * blur or flip, centred crop. */
void pk_aug_draw(pk_aug_params *p, const pk_aug_opts *o, int w, int h, pk_rng *r);

/* An extra plane set to warp with the image: data is [h, w, c] float
 * (channels interleaved). m maps source image pixel coordinates (x, y) to
 * plane coordinates: px = m[0]*x + m[1]*y + m[2], py = m[3]*x + m[4]*y +
 * m[5] (e.g. stride-8 logits with align_corners: m = {1/8,0,0, 0,1/8,0}).
 * Sampling is bilinear, clamped at the plane's edge. The output pixel
 * (y, x) channel k goes to out[(y*crop_w + x)*out_stride + k]
 * (out_stride >= c; lets several sets interleave into one buffer);
 * invalid output pixels get 0. */
typedef struct pk_plane_set {
    const float *data;
    int h, w, c;
    float m[6];
    float *out;
    int out_stride;
} pk_plane_set;

/* Scratch memory reused across calls (zero-initialise; free with
 * pk_aug_ws_free). One per thread. */
typedef struct pk_aug_ws {
    float *buf;
    size_t cap;
} pk_aug_ws;
void pk_aug_ws_free(pk_aug_ws *ws);

/* Applies p to a w x h source: rgb is RGB8 HWC, label w*h indices (may be
 * NULL, then out_label is untouched). Outputs (crop_h x crop_w):
 * out_image [crop_h, crop_w, 3] float normalised (x - mean)/std,
 * out_label uint8, out_valid uint8 0/1 (may be NULL), and each plane set's
 * out. ws may be NULL (then scratch is allocated per call). */
int pk_augment(const pk_aug_opts *o, const pk_aug_params *p, const uint8_t *rgb,
               const uint8_t *label, int w, int h, const pk_plane_set *planes,
               int nplanes, float *out_image, uint8_t *out_label, uint8_t *out_valid,
               pk_aug_ws *ws, pk_err *e);

#endif
