/* semseg's test protocol (lib/model/seg_infer.c) against a NumPy/OpenCV
 * re-implementation with a known "network" (tests/fixtures/gen_seg_protocol.py
 * -> seg_protocol.safetensors), cv2.resize parity, the mean padding, the
 * scale-list parser and argmax. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/safetensors.h"
#include "model/seg_infer.h"
#include "support.h"

static int failures;

/* The fixture's network (see gen_seg_protocol.py). */
enum { K = 3 };
static const float A[K][3] = {{0.02f, -0.01f, 0.005f}, {-0.015f, 0.02f, 0.01f},
                              {0.01f, 0.005f, -0.02f}};
static const float B[K] = {1.5f, -0.5f, 0.25f}, C[K] = {-1.0f, 2.0f, 0.5f},
                   D[K] = {0.1f, -0.2f, 0.3f};

struct net_calls {
    int calls, images;
};

static int fake_net(void *user, float *logits, const float *images, int n, int h, int w,
                    pk_err *e)
{
    (void)e;
    struct net_calls *nc = user;
    nc->calls++;
    nc->images += n;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const float *in = images + (((size_t)b * h + y) * w + x) * 3;
                float *out = logits + (((size_t)b * h + y) * w + x) * K;
                for (int j = 0; j < K; j++)
                    out[j] = A[j][0] * in[0] + A[j][1] * in[1] + A[j][2] * in[2] +
                             B[j] * (float)y / (float)(h - 1) +
                             C[j] * (float)x / (float)(w - 1) + D[j];
            }
    return PK_OK;
}

struct pcase {
    int w, h, base, crop_h, crop_w, flip;
    const char *scales;
    const char *desc;
};

static void test_protocol(const pk_st_file *f)
{
    const struct pcase cases[] = {
        {40, 30, 48, 17, 17, 1, "1.0", "w=40 h=30 base=48 crop=17x17 flip=1 scales=1.0"},
        {40, 30, 24, 33, 33, 0, "0.5,1.0,1.75",
         "w=40 h=30 base=24 crop=33x33 flip=0 scales=0.5,1.0,1.75"},
        {25, 38, 40, 25, 17, 1, "0.75,1.25",
         "w=25 h=38 base=40 crop=25x17 flip=1 scales=0.75,1.25"},
    };
    pk_err e = {0, ""};
    for (int i = 0; i < 3; i++) {
        const struct pcase *c = &cases[i];
        char key[32];
        snprintf(key, sizeof key, "case%d", i);
        const char *meta = pk_st_meta(f, key);
        PK_CHECK(failures, meta && !strcmp(meta, c->desc), "%s settings: fixture '%s'", key,
                 meta ? meta : "(none)");
        size_t npix = (size_t)c->w * c->h;
        float *imgf = malloc(npix * 3 * sizeof *imgf), *want = malloc(npix * K * sizeof *want);
        float *got = malloc(npix * K * sizeof *got);
        uint8_t *rgb = malloc(npix * 3);
        if (!imgf || !want || !got || !rgb)
            abort();
        snprintf(key, sizeof key, "case%d.image", i);
        int rc = pk_st_read_f32(f, key, imgf, npix * 3, &e);
        snprintf(key, sizeof key, "case%d.probs", i);
        if (!rc)
            rc = pk_st_read_f32(f, key, want, npix * K, &e);
        PK_CHECK(failures, rc == PK_OK, "fixture: %s", e.msg);
        for (size_t j = 0; j < npix * 3; j++)
            rgb[j] = (uint8_t)imgf[j];
        pk_seg_opts o;
        pk_seg_opts_default(&o);
        o.base_size = c->base;
        o.crop_h = c->crop_h;
        o.crop_w = c->crop_w;
        o.flip = c->flip;
        if (pk_seg_parse_scales(&o, c->scales, &e))
            abort();
        /* Any window batch gives the same answer. */
        for (int batch = 1; batch <= 3; batch += 2) {
            o.batch = batch;
            struct net_calls nc = {0, 0};
            pk_seg_ws *ws = pk_seg_ws_new();
            rc = pk_seg_eval_image_net(fake_net, &nc, K, &o, rgb, c->w, c->h, got, ws, &e);
            pk_seg_ws_free(ws);
            PK_CHECK(failures, rc == PK_OK, "protocol: %s", e.msg);
            char what[96];
            snprintf(what, sizeof what, "protocol case %d (%s), batch %d", i, c->scales, batch);
            failures += pk_check_close(what, got, want, npix * K, 1e-6);
            PK_CHECK(failures, nc.images % (c->flip ? 2 : 1) == 0 && nc.calls >= 1,
                     "network calls %d images %d", nc.calls, nc.images);
        }
        free(imgf);
        free(want);
        free(got);
        free(rgb);
    }
}

static void test_resize(const pk_st_file *f)
{
    pk_err e = {0, ""};
    float src[7 * 5 * 2], down[4 * 3 * 2], up[13 * 11 * 2], got[13 * 11 * 2];
    int rc = pk_st_read_f32(f, "resize.src", src, 70, &e);
    if (!rc)
        rc = pk_st_read_f32(f, "resize.down", down, 24, &e);
    if (!rc)
        rc = pk_st_read_f32(f, "resize.up", up, 286, &e);
    PK_CHECK(failures, rc == PK_OK, "fixture: %s", e.msg);
    pk_seg_resize_linear(got, 3, 4, src, 5, 7, 2);
    failures += pk_check_close("cv2.resize down 5x7 -> 3x4", got, down, 24, 1e-6);
    pk_seg_resize_linear(got, 11, 13, src, 5, 7, 2);
    failures += pk_check_close("cv2.resize up 5x7 -> 11x13", got, up, 286, 1e-6);
    /* Same size: the identity. */
    pk_seg_resize_linear(got, 5, 7, src, 5, 7, 2);
    failures += pk_check_close("cv2.resize identity", got, src, 70, 0);
}

static void test_pad(void)
{
    const uint8_t rgb[2 * 3 * 3] = {0, 128, 255, 10, 20, 30, 40, 50, 60,
                                    70, 80, 90, 100, 110, 120, 130, 140, 150};
    const float mean[3] = {1, 2, 3}, std[3] = {2, 4, 8};
    float out[9 * 9 * 3];
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        out[i] = 99.0f;
    pk_seg_normalize_pad(out, 9, 9, rgb, 3, 2, mean, std);
    int bad = 0;
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++)
            for (int c = 0; c < 3; c++) {
                float v = out[(y * 9 + x) * 3 + c];
                float want = y < 2 && x < 3 ? (rgb[(y * 3 + x) * 3 + c] - mean[c]) / std[c] : 0.0f;
                bad += fabsf(v - want) > 1e-6f;
            }
    PK_CHECK(failures, bad == 0, "normalize_pad: %d wrong values", bad);
}

static void test_parse(void)
{
    pk_err e = {0, ""};
    pk_seg_opts o;
    pk_seg_opts_default(&o);
    PK_CHECK(failures, o.base_size == 512 && o.crop_h == 473 && o.flip == 1 && o.nscales == 1 &&
                           o.scales[0] == 1.0f,
             "defaults");
    PK_CHECK(failures, pk_seg_parse_scales(&o, "0.5,0.75,1.5", &e) == PK_OK && o.nscales == 3 &&
                           o.scales[2] == 1.5f,
             "scale list: %s", e.msg);
    const char *bad[] = {"", ",", "1.0,", "a", "0", "-1", "1.0;2.0", "9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        PK_CHECK(failures, pk_seg_parse_scales(&o, bad[i], &e) == PK_EINVAL,
                 "scale list '%s' accepted", bad[i]);
    pk_seg_set_ms(&o);
    PK_CHECK(failures, o.nscales == 6 && o.scales[0] == 0.5f && o.scales[5] == 1.75f, "ms set");
    o.crop_h = 472;
    PK_CHECK(failures, pk_seg_opts_check(&o, &e) == PK_EINVAL, "crop 472 accepted");
}

static void test_argmax(void)
{
    const float x[3 * 4] = {0, 1, 2, 0, 5, 5, 3, 1, 1, -1, -2, -3};
    uint8_t out[4];
    pk_seg_argmax(out, x, 4, 3);
    PK_CHECK(failures, out[0] == 2 && out[1] == 1 && out[2] == 0 && out[3] == 0,
             "argmax %d %d %d %d", out[0], out[1], out[2], out[3]);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/seg_protocol.safetensors";
    pk_err e = {0, ""};
    pk_st_file *f = NULL;
    if (pk_st_open(&f, path, &e)) {
        fprintf(stderr, "test_seg_infer: %s\n", e.msg);
        return 1;
    }
    test_resize(f);
    test_protocol(f);
    pk_st_close(f);
    test_pad();
    test_parse();
    test_argmax();
    if (failures) {
        fprintf(stderr, "test_seg_infer: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_seg_infer: ok\n");
    return 0;
}
