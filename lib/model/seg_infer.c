/* Whole-image inference and semseg's sliding-window test protocol (see
 * seg_infer.h). The softmax, window accumulation and resizing run on the
 * host over the downloaded logits; only the network runs on the device. */
#include "model/seg_infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "store/logits_cache.h"

struct pk_seg_ws {
    pk_ctx *ctx;           /* owner of the device buffers */
    float *d_in, *d_out;   /* device: network input and output */
    size_t d_in_cap, d_out_cap, d_aux_cap;
    float *d_aux;
    float *img, *scaled, *padded, *in, *out, *acc, *cnt, *crop, *tmp; /* host */
    size_t img_cap, scaled_cap, padded_cap, in_cap, out_cap, acc_cap, cnt_cap, crop_cap,
        tmp_cap;
};

void pk_seg_opts_default(pk_seg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->base_size = 512;
    o->crop_h = o->crop_w = 473;
    o->nscales = 1;
    o->scales[0] = 1.0f;
    o->flip = 1;
    o->batch = 2;
    pk_aug_opts a;
    pk_aug_opts_default(&a, 473, 473);
    memcpy(o->mean, a.mean, sizeof o->mean);
    memcpy(o->std, a.std, sizeof o->std);
}

int pk_seg_opts_check(const pk_seg_opts *o, pk_err *e)
{
    if (o->base_size < 1 || o->base_size > 16384)
        return pk_fail(e, PK_EINVAL, "base size %d outside 1..16384", o->base_size);
    if (o->crop_h < 1 || o->crop_w < 1 || (o->crop_h - 1) % 8 || (o->crop_w - 1) % 8 ||
        o->crop_h > 8193 || o->crop_w > 8193)
        return pk_fail(e, PK_EINVAL, "crop %dx%d: each side must be 8k+1 (e.g. 473, 65)",
                       o->crop_h, o->crop_w);
    if (o->nscales < 1 || o->nscales > PK_SEG_MAX_SCALES)
        return pk_fail(e, PK_EINVAL, "need 1..%d scales", PK_SEG_MAX_SCALES);
    for (int i = 0; i < o->nscales; i++)
        if (!(o->scales[i] > 0.0f && o->scales[i] <= 8.0f))
            return pk_fail(e, PK_EINVAL, "scale %g outside (0, 8]", o->scales[i]);
    if (o->batch < 1 || o->batch > 256)
        return pk_fail(e, PK_EINVAL, "window batch %d outside 1..256", o->batch);
    for (int k = 0; k < 3; k++)
        if (!(o->std[k] > 0.0f) || !isfinite(o->mean[k]))
            return pk_fail(e, PK_EINVAL, "std must be > 0 and mean finite");
    return PK_OK;
}

int pk_seg_parse_scales(pk_seg_opts *o, const char *s, pk_err *e)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0.0 && v <= 8.0) || (*end != ',' && *end != '\0'))
            return pk_fail(e, PK_EINVAL, "bad scale list '%s' (e.g. 1.0 or 0.5,0.75,1.0)", s);
        if (n == PK_SEG_MAX_SCALES)
            return pk_fail(e, PK_EINVAL, "more than %d scales in '%s'", PK_SEG_MAX_SCALES, s);
        o->scales[n++] = (float)v;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    o->nscales = n;
    return PK_OK;
}

void pk_seg_set_ms(pk_seg_opts *o)
{
    const float ms[6] = {0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f};
    memcpy(o->scales, ms, sizeof ms);
    o->nscales = 6;
}

pk_seg_ws *pk_seg_ws_new(void) { return calloc(1, sizeof(pk_seg_ws)); }

void pk_seg_ws_free(pk_seg_ws *ws)
{
    if (!ws)
        return;
    if (ws->ctx) {
        pk_dev_free(ws->ctx, ws->d_in);
        pk_dev_free(ws->ctx, ws->d_out);
        pk_dev_free(ws->ctx, ws->d_aux);
    }
    free(ws->img);
    free(ws->scaled);
    free(ws->padded);
    free(ws->in);
    free(ws->out);
    free(ws->acc);
    free(ws->cnt);
    free(ws->crop);
    free(ws->tmp);
    free(ws);
}

static int grow(float **p, size_t *cap, size_t n, pk_err *e)
{
    if (n <= *cap)
        return PK_OK;
    float *q = realloc(*p, n * sizeof *q);
    if (!q)
        return pk_fail(e, PK_ENOMEM, "out of memory (%zu MB)", n * sizeof *q >> 20);
    *p = q;
    *cap = n;
    return PK_OK;
}

static int dev_grow(pk_seg_ws *ws, pk_ctx *c, float **p, size_t *cap, size_t n, pk_err *e)
{
    if (ws->ctx && ws->ctx != c)
        return pk_fail(e, PK_EINVAL, "inference workspace used with two contexts");
    ws->ctx = c;
    if (n <= *cap)
        return PK_OK;
    pk_dev_free(c, *p);
    *cap = 0;
    if (!(*p = pk_dev_alloc(c, n * sizeof(float))))
        return pk_fail(e, PK_ENOMEM, "out of device memory (%zu MB)", n * sizeof(float) >> 20);
    *cap = n;
    return PK_OK;
}

void pk_seg_normalize_pad(float *dst, int pw, int ph, const uint8_t *rgb, int w, int h,
                          const float mean[3], const float std[3])
{
    const float inv[3] = {1.0f / std[0], 1.0f / std[1], 1.0f / std[2]};
    for (int y = 0; y < ph; y++) {
        float *d = dst + (size_t)y * pw * 3;
        if (y >= h) {
            memset(d, 0, (size_t)pw * 3 * sizeof *d);
            continue;
        }
        const uint8_t *s = rgb + (size_t)y * w * 3;
        for (int i = 0; i < w * 3; i++)
            d[i] = ((float)s[i] - mean[i % 3]) * inv[i % 3];
        memset(d + (size_t)w * 3, 0, (size_t)(pw - w) * 3 * sizeof *d);
    }
}

/* One axis of cv2's INTER_LINEAR: source index and weight of the next. */
typedef struct lin_tap {
    int i0, i1;
    float f;
} lin_tap;

static void lin_taps(lin_tap *t, int dn, int sn)
{
    double scale = (double)sn / dn;
    for (int d = 0; d < dn; d++) {
        float fx = (float)((d + 0.5) * scale - 0.5);
        int sx = (int)floorf(fx);
        fx -= (float)sx;
        if (sx < 0) {
            sx = 0;
            fx = 0.0f;
        }
        if (sx >= sn - 1) {
            sx = sn - 1;
            fx = 0.0f;
        }
        t[d].i0 = sx;
        t[d].i1 = sx < sn - 1 ? sx + 1 : sx;
        t[d].f = fx;
    }
}

void pk_seg_resize_linear(float *dst, int dw, int dh, const float *src, int sw, int sh,
                          int c)
{
    lin_tap *tx = malloc((size_t)dw * sizeof *tx), *ty = malloc((size_t)dh * sizeof *ty);
    if (!tx || !ty) { /* tiny tables: only fails when memory is gone */
        free(tx);
        free(ty);
        abort();
    }
    lin_taps(tx, dw, sw);
    lin_taps(ty, dh, sh);
    for (int y = 0; y < dh; y++) {
        const float *r0 = src + (size_t)ty[y].i0 * sw * c, *r1 = src + (size_t)ty[y].i1 * sw * c;
        float fy = ty[y].f, gy = 1.0f - fy;
        float *d = dst + (size_t)y * dw * c;
        for (int x = 0; x < dw; x++) {
            const float *a = r0 + (size_t)tx[x].i0 * c, *b = r0 + (size_t)tx[x].i1 * c;
            const float *p = r1 + (size_t)tx[x].i0 * c, *q = r1 + (size_t)tx[x].i1 * c;
            float fx = tx[x].f, gx = 1.0f - fx;
            for (int k = 0; k < c; k++)
                d[(size_t)x * c + k] = gy * (gx * a[k] + fx * b[k]) + fy * (gx * p[k] + fx * q[k]);
        }
    }
    free(tx);
    free(ty);
}

/* n normalised host images [n, h, w, 3] through the model: main (and aux,
 * may be NULL) receive host logits as pk_model_infer gives them. */
static int run_model(pk_model *m, pk_seg_ws *ws, const float *in, int n, int h, int w,
                     int upsample, float *main_logits, float *aux_logits, pk_err *e)
{
    pk_ctx *c = pk_model_ctx(m);
    size_t nin = (size_t)n * h * w * 3;
    size_t nout = (upsample ? (size_t)h * w : (size_t)((h - 1) / 8 + 1) * ((w - 1) / 8 + 1)) *
                  (size_t)n * pk_model_config(m)->classes;
    int rc;
    if ((rc = dev_grow(ws, c, &ws->d_in, &ws->d_in_cap, nin, e)) ||
        (rc = dev_grow(ws, c, &ws->d_out, &ws->d_out_cap, nout, e)) ||
        (aux_logits && (rc = dev_grow(ws, c, &ws->d_aux, &ws->d_aux_cap, nout, e))))
        return rc;
    pk_dev_upload(c, ws->d_in, in, nin * sizeof(float));
    rc = pk_model_infer(m, ws->d_out, aux_logits ? ws->d_aux : NULL, ws->d_in, n, h, w,
                        upsample, e);
    if (rc)
        return rc;
    pk_dev_download(c, main_logits, ws->d_out, nout * sizeof(float));
    if (aux_logits)
        pk_dev_download(c, aux_logits, ws->d_aux, nout * sizeof(float));
    pk_dev_sync(c);
    return PK_OK;
}

int pk_seg_whole_padded(pk_model *m, const float *in, int pw, int ph, int upsample,
                        float *main_logits, float *aux_logits, pk_seg_ws *ws, pk_err *e)
{
    return run_model(m, ws, in, 1, ph, pw, upsample, main_logits, aux_logits, e);
}

int pk_seg_whole_image(pk_model *m, const uint8_t *rgb, int w, int h, int upsample,
                       const float mean[3], const float std[3], float *main_logits,
                       float *aux_logits, pk_seg_ws *ws, pk_err *e)
{
    pk_logits_geom g;
    pk_logits_geom_init(&g, w, h);
    int rc = grow(&ws->in, &ws->in_cap, (size_t)g.pad_w * g.pad_h * 3, e);
    if (rc)
        return rc;
    pk_seg_normalize_pad(ws->in, g.pad_w, g.pad_h, rgb, w, h, mean, std);
    return pk_seg_whole_padded(m, ws->in, g.pad_w, g.pad_h, upsample, main_logits, aux_logits,
                               ws, e);
}

/* In place over npix pixels of k logits. */
static void softmax_rows(float *x, size_t npix, int k)
{
    for (size_t p = 0; p < npix; p++) {
        float *v = x + p * k, mx = v[0], s = 0.0f;
        for (int j = 1; j < k; j++)
            mx = v[j] > mx ? v[j] : mx;
        for (int j = 0; j < k; j++)
            s += (v[j] = expf(v[j] - mx));
        float inv = 1.0f / s;
        for (int j = 0; j < k; j++)
            v[j] *= inv;
    }
}

typedef struct window {
    int y, x;
} window;

/* The protocol's network: the model on its device. */
struct model_net {
    pk_model *m;
    pk_seg_ws *ws;
};

static int model_net_fn(void *user, float *logits, const float *images, int n, int h, int w,
                        pk_err *e)
{
    struct model_net *mn = user;
    return run_model(mn->m, mn->ws, images, n, h, w, 1, logits, NULL, e);
}

struct net {
    pk_seg_net_fn fn;
    void *user;
    int k;
};

/* Runs windows [0, n) of the padded frame (fw wide, 3 channels,
 * normalised) through the network and adds their probabilities to acc and
 * 1 to cnt over each window. */
static int run_windows(const struct net *net, const pk_seg_opts *o, const window *win, int n,
                       const float *frame, int fw, float *acc, float *cnt, pk_seg_ws *ws,
                       pk_err *e)
{
    int k = net->k, ch = o->crop_h, cw = o->crop_w;
    int per = o->flip ? 2 : 1, nimg = n * per;
    size_t win_in = (size_t)ch * cw * 3, win_out = (size_t)ch * cw * k;
    int rc;
    if ((rc = grow(&ws->in, &ws->in_cap, win_in * nimg, e)) ||
        (rc = grow(&ws->out, &ws->out_cap, win_out * nimg, e)))
        return rc;
    for (int i = 0; i < n; i++) {
        float *dst = ws->in + win_in * i * per;
        for (int y = 0; y < ch; y++) {
            const float *s = frame + ((size_t)(win[i].y + y) * fw + win[i].x) * 3;
            memcpy(dst + (size_t)y * cw * 3, s, (size_t)cw * 3 * sizeof *s);
            if (o->flip) {
                float *f = dst + win_in + (size_t)y * cw * 3;
                for (int x = 0; x < cw; x++)
                    memcpy(f + (size_t)x * 3, s + (size_t)(cw - 1 - x) * 3, 3 * sizeof *s);
            }
        }
    }
    if ((rc = net->fn(net->user, ws->out, ws->in, nimg, ch, cw, e)))
        return rc;
    softmax_rows(ws->out, (size_t)ch * cw * nimg, k);
    for (int i = 0; i < n; i++) {
        const float *p = ws->out + win_out * i * per, *q = p + win_out;
        for (int y = 0; y < ch; y++) {
            float *a = acc + ((size_t)(win[i].y + y) * fw + win[i].x) * k;
            float *cn = cnt + (size_t)(win[i].y + y) * fw + win[i].x;
            const float *pr = p + (size_t)y * cw * k, *qr = q + (size_t)y * cw * k;
            for (int x = 0; x < cw; x++) {
                const float *pv = pr + (size_t)x * k, *qv = qr + (size_t)(cw - 1 - x) * k;
                float *av = a + (size_t)x * k;
                if (o->flip)
                    for (int j = 0; j < k; j++)
                        av[j] += 0.5f * (pv[j] + qv[j]);
                else
                    for (int j = 0; j < k; j++)
                        av[j] += pv[j];
                cn[x] += 1.0f;
            }
        }
    }
    return PK_OK;
}

/* semseg's scale_process for one scale: adds this scale's [h, w, K]
 * probabilities to probs. img is the w x h image as float pixel values. */
static int eval_scale(const struct net *net, const pk_seg_opts *o, float scale, const float *img,
                      int w, int h, float *probs, pk_seg_ws *ws, pk_err *e)
{
    int k = net->k, ch = o->crop_h, cw = o->crop_w;
    /* Python's round() on floats is round-half-even, as rint. */
    int lng = (int)rint((double)scale * o->base_size), nh = lng, nw = lng;
    if (h > w)
        nw = (int)rint(lng / (double)h * w);
    else
        nh = (int)rint(lng / (double)w * h);
    nh = nh < 1 ? 1 : nh;
    nw = nw < 1 ? 1 : nw;
    int ph = ch > nh ? ch - nh : 0, pw = cw > nw ? cw - nw : 0;
    int top = ph / 2, left = pw / 2, fh = nh + ph, fw = nw + pw;
    int rc;
    if ((rc = grow(&ws->scaled, &ws->scaled_cap, (size_t)nw * nh * 3, e)) ||
        (rc = grow(&ws->padded, &ws->padded_cap, (size_t)fw * fh * 3, e)) ||
        (rc = grow(&ws->acc, &ws->acc_cap, (size_t)fw * fh * k, e)) ||
        (rc = grow(&ws->cnt, &ws->cnt_cap, (size_t)fw * fh, e)) ||
        (rc = grow(&ws->crop, &ws->crop_cap, (size_t)nw * nh * k, e)) ||
        (rc = grow(&ws->tmp, &ws->tmp_cap, (size_t)w * h * k, e)))
        return rc;
    pk_seg_resize_linear(ws->scaled, nw, nh, img, w, h, 3);
    /* Pad with the mean = 0 after normalising. */
    memset(ws->padded, 0, (size_t)fw * fh * 3 * sizeof(float));
    const float inv[3] = {1.0f / o->std[0], 1.0f / o->std[1], 1.0f / o->std[2]};
    for (int y = 0; y < nh; y++) {
        const float *s = ws->scaled + (size_t)y * nw * 3;
        float *d = ws->padded + ((size_t)(y + top) * fw + left) * 3;
        for (int i = 0; i < nw * 3; i++)
            d[i] = (s[i] - o->mean[i % 3]) * inv[i % 3];
    }
    memset(ws->acc, 0, (size_t)fw * fh * k * sizeof(float));
    memset(ws->cnt, 0, (size_t)fw * fh * sizeof(float));
    int sh = (int)ceil(ch * (2.0 / 3.0)), sw = (int)ceil(cw * (2.0 / 3.0));
    int gh = (int)ceil((double)(fh - ch) / sh) + 1, gw = (int)ceil((double)(fw - cw) / sw) + 1;
    window batch[256];
    int nb = 0;
    for (int iy = 0; iy < gh; iy++)
        for (int ix = 0; ix < gw; ix++) {
            int ey = iy * sh + ch < fh ? iy * sh + ch : fh;
            int ex = ix * sw + cw < fw ? ix * sw + cw : fw;
            batch[nb].y = ey - ch;
            batch[nb].x = ex - cw;
            if (++nb == o->batch) {
                if ((rc = run_windows(net, o, batch, nb, ws->padded, fw, ws->acc, ws->cnt, ws,
                                      e)))
                    return rc;
                nb = 0;
            }
        }
    if (nb && (rc = run_windows(net, o, batch, nb, ws->padded, fw, ws->acc, ws->cnt, ws, e)))
        return rc;
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++) {
            size_t fp = (size_t)(y + top) * fw + x + left;
            float inv_c = 1.0f / ws->cnt[fp];
            const float *a = ws->acc + fp * k;
            float *d = ws->crop + ((size_t)y * nw + x) * k;
            for (int j = 0; j < k; j++)
                d[j] = a[j] * inv_c;
        }
    pk_seg_resize_linear(ws->tmp, w, h, ws->crop, nw, nh, k);
    size_t n = (size_t)w * h * k;
    for (size_t i = 0; i < n; i++)
        probs[i] += ws->tmp[i];
    return PK_OK;
}

int pk_seg_eval_image_net(pk_seg_net_fn fn, void *user, int k, const pk_seg_opts *o,
                          const uint8_t *rgb, int w, int h, float *probs, pk_seg_ws *ws,
                          pk_err *e)
{
    int rc = pk_seg_opts_check(o, e);
    if (rc)
        return rc;
    if (w < 1 || h < 1)
        return pk_fail(e, PK_EINVAL, "bad image size %dx%d", w, h);
    if (k < 1)
        return pk_fail(e, PK_EINVAL, "bad class count %d", k);
    struct net net = {fn, user, k};
    size_t npix = (size_t)w * h;
    if ((rc = grow(&ws->img, &ws->img_cap, npix * 3, e)))
        return rc;
    for (size_t i = 0; i < npix * 3; i++)
        ws->img[i] = (float)rgb[i];
    memset(probs, 0, npix * k * sizeof *probs);
    for (int s = 0; s < o->nscales; s++)
        if ((rc = eval_scale(&net, o, o->scales[s], ws->img, w, h, probs, ws, e)))
            return rc;
    float inv = 1.0f / (float)o->nscales;
    for (size_t i = 0; i < npix * k; i++)
        probs[i] *= inv;
    return PK_OK;
}

int pk_seg_eval_image(pk_model *m, const pk_seg_opts *o, const uint8_t *rgb, int w, int h,
                      float *probs, pk_seg_ws *ws, pk_err *e)
{
    struct model_net mn = {m, ws};
    return pk_seg_eval_image_net(model_net_fn, &mn, pk_model_config(m)->classes, o, rgb, w, h,
                                 probs, ws, e);
}

void pk_seg_argmax(uint8_t *out, const float *x, size_t npix, int k)
{
    for (size_t p = 0; p < npix; p++) {
        const float *v = x + p * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (v[j] > v[best])
                best = j;
        out[p] = (uint8_t)best;
    }
}
