/* Inference protocols on top of pk_model_infer:
 *  - the whole-image pass (teacher-dump, seg-predict): the image normalised
 *    and padded at the bottom/right with the mean (0 after normalising) to
 *    the smallest (Hp-1) % 8 == 0 size, as pk_logits_geom_init gives it;
 *  - hszhao/semseg's test protocol (seg-eval): per scale, resize so the
 *    long side is round(base_size * scale), pad (centred, with the mean) to
 *    at least the crop, slide crop windows with stride ceil(crop * 2/3),
 *    sum each window's softmax (averaged with the flipped window's when
 *    flip is on), divide by the per-pixel window count, drop the padding,
 *    resize bilinearly to the original size; average over the scales.
 * Resizing follows cv2.resize INTER_LINEAR (half-pixel centres), as
 * semseg's test.py does. Buffers passed to and from the model go through
 * pk_dev_upload/download, so the same code runs on either backend. */
#ifndef PSPKD_SEG_INFER_H
#define PSPKD_SEG_INFER_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "model/pspnet.h"

#define PK_SEG_MAX_SCALES 16

typedef struct pk_seg_opts {
    int base_size;      /* long side at scale 1 (512) */
    int crop_h, crop_w; /* window size, (c-1) % 8 == 0 (473) */
    int nscales;
    float scales[PK_SEG_MAX_SCALES]; /* {1.0} */
    int flip;           /* average with the horizontally flipped window (1) */
    int batch;          /* windows per forward pass (>= 1; 2) */
    float mean[3], std[3]; /* RGB, pixel units (ImageNet's, as augment.h) */
} pk_seg_opts;

void pk_seg_opts_default(pk_seg_opts *o);
int pk_seg_opts_check(const pk_seg_opts *o, pk_err *e);
/* Parses "1.0" or "0.5,0.75,1.0" into o->scales (each in (0, 8]). */
int pk_seg_parse_scales(pk_seg_opts *o, const char *s, pk_err *e);
/* semseg's multi-scale set 0.5, 0.75, 1.0, 1.25, 1.5, 1.75. */
void pk_seg_set_ms(pk_seg_opts *o);

/* Scratch memory reused across images (host and device buffers). */
typedef struct pk_seg_ws pk_seg_ws;
pk_seg_ws *pk_seg_ws_new(void);
void pk_seg_ws_free(pk_seg_ws *ws);

/* rgb (w x h RGB8) -> dst [ph, pw, 3] normalised (x - mean) / std, the
 * columns >= w and rows >= h set to 0 (the mean). ph >= h, pw >= w. */
void pk_seg_normalize_pad(float *dst, int pw, int ph, const uint8_t *rgb, int w, int h,
                          const float mean[3], const float std[3]);

/* cv2.resize(src, (dw, dh), interpolation=INTER_LINEAR) for float HWC with
 * c channels: source x = (x' + 0.5) * sw/dw - 0.5, clamped to the edge. */
void pk_seg_resize_linear(float *dst, int dw, int dh, const float *src, int sw, int sh,
                          int c);

/* The whole-image pass. main (and aux, may be NULL) receive [gh, gw, K]
 * logits on the stride-8 grid when upsample is 0, or [ph, pw, K] at the
 * padded input size when 1 (pk_logits_geom_init(w, h) gives the sizes). */
int pk_seg_whole_image(pk_model *m, const uint8_t *rgb, int w, int h, int upsample,
                       const float mean[3], const float std[3], float *main_logits,
                       float *aux_logits, pk_seg_ws *ws, pk_err *e);

/* The same pass from an image the caller has normalised and padded: in is
 * [ph, pw, 3] host floats with (ph-1) % 8 == 0 and (pw-1) % 8 == 0; the
 * logits as above for that padded size (training's validation centres its
 * images in the padding). */
int pk_seg_whole_padded(pk_model *m, const float *in, int pw, int ph, int upsample,
                        float *main_logits, float *aux_logits, pk_seg_ws *ws, pk_err *e);

/* semseg's test protocol on one w x h image: probs [h, w, K] receives the
 * class probabilities averaged over the scales. */
int pk_seg_eval_image(pk_model *m, const pk_seg_opts *o, const uint8_t *rgb, int w, int h,
                      float *probs, pk_seg_ws *ws, pk_err *e);

/* The same protocol over any network: net maps n normalised host images
 * [n, h, w, 3] to host logits [n, h, w, k] at the input resolution (the
 * model version uploads, runs pk_model_infer with upsample = 1 and
 * downloads). Lets tests check the protocol with a known function. */
typedef int (*pk_seg_net_fn)(void *user, float *logits, const float *images, int n, int h,
                             int w, pk_err *e);
int pk_seg_eval_image_net(pk_seg_net_fn net, void *user, int k, const pk_seg_opts *o,
                          const uint8_t *rgb, int w, int h, float *probs, pk_seg_ws *ws,
                          pk_err *e);

/* Per pixel, the index of the largest of k values (the first on ties). */
void pk_seg_argmax(uint8_t *out, const float *x, size_t npix, int k);

#endif
