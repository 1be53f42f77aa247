/* The loader on tiny packs written with the record/LMDB API: same batches
 * whatever the thread count, per-epoch shuffles, resume from an iteration,
 * drop_last, extra planes through the callback, a corrupt record's error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/le_bytes.h"
#include "data/image.h"
#include "store/pack.h"
#include "data/loader.h"
#include "store/record.h"
#include "support.h"

static int failures;

#define NREC 13
#define CLASSES 5

/* The source images, kept to check what the loader produces. */
typedef struct src_set {
    int w[NREC], h[NREC];
    uint8_t *rgb[NREC], *lbl[NREC];
    uint8_t *dec[NREC]; /* the JPEG pack's images as decoded (set by write_pack) */
    char key[NREC][64];
} src_set;

static void src_make(src_set *s)
{
    memset(s, 0, sizeof *s);
    pk_rng r = pk_rng_seed(77);
    for (int i = 0; i < NREC; i++) {
        int w = 40 + (int)pk_rng_below(&r, 30), h = 30 + (int)pk_rng_below(&r, 25);
        s->w[i] = w;
        s->h[i] = h;
        s->rgb[i] = malloc((size_t)w * h * 3);
        s->lbl[i] = malloc((size_t)w * h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = s->rgb[i] + ((size_t)y * w + x) * 3;
                p[0] = (uint8_t)(3 * x + i); /* smooth, survives JPEG roughly */
                p[1] = (uint8_t)(4 * y);
                p[2] = (uint8_t)pk_rng_below(&r, 256);
                s->lbl[i][(size_t)y * w + x] = (x / 9 + y / 7) % 7 == 6
                                                   ? 255 : (uint8_t)((x / 9 + y / 7) % CLASSES);
            }
    }
}

static void src_free(src_set *s)
{
    for (int i = 0; i < NREC; i++) {
        free(s->rgb[i]);
        free(s->lbl[i]);
        free(s->dec[i]);
    }
}

/* Writes the set as a pack; record `corrupt` (or -1) gets one image byte
 * flipped after encoding, so its CRC no longer matches. */
static int write_pack(const char *path, src_set *s, int image_enc, int corrupt)
{
    pk_err e = {0};
    pk_pack_writer *w;
    int rc = pk_pack_writer_open(&w, path, 0, 1, &e);
    pk_meta *m = calloc(1, sizeof *m);
    m->version = PK_META_VERSION;
    m->record_version = PK_RECORD_VERSION;
    m->count = NREC;
    m->classes = CLASSES;
    m->image_enc = image_enc;
    m->pack_id = PK_PACK_ID_INIT;
    for (int c = 0; c < CLASSES; c++)
        snprintf(m->names[c], sizeof m->names[c], "class%d", c);
    for (int i = 0; i < NREC && !rc; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%03d", i);
        rc = pk_record_key(s->key[i], sizeof s->key[i], i, id, &e);
        pk_image im = {s->w[i], s->h[i], 3, s->rgb[i]};
        uint8_t *jpg = NULL, *rec = NULL;
        size_t jlen = 0, rlen = 0;
        if (!rc && image_enc == PK_IMG_JPEG) {
            rc = pk_jpeg_encode(&jpg, &jlen, &im, 95, &e);
            pk_image d = {0};
            if (!rc)
                rc = pk_jpeg_decode(&d, jpg, jlen, &e);
            free(s->dec[i]);
            s->dec[i] = d.px;
        }
        if (!rc)
            rc = pk_record_encode(&rec, &rlen, id, s->w[i], s->h[i], image_enc,
                                  jpg ? jpg : s->rgb[i], jpg ? jlen : (size_t)s->w[i] * s->h[i] * 3,
                                  s->lbl[i], &e);
        if (!rc) {
            pk_pack_id_add(&m->pack_id, s->key[i], pk_get32(rec + rlen - 4));
            if (i == corrupt)
                rec[rlen / 2] ^= 0x5a;
            rc = pk_pack_writer_put(w, s->key[i], rec, rlen, &e);
        }
        free(jpg);
        free(rec);
    }
    uint8_t *mv = NULL;
    size_t mlen = 0;
    if (!rc)
        rc = pk_meta_encode(&mv, &mlen, m, &e);
    if (!rc)
        rc = pk_pack_writer_put(w, PK_META_KEY, mv, mlen, &e);
    free(mv);
    free(m);
    if (!rc)
        rc = pk_pack_writer_finish(w, &e);
    else if (w)
        pk_pack_writer_abort(w);
    if (rc)
        fprintf(stderr, "  write_pack %s: %s\n", path, e.msg);
    return rc;
}

/* A copy of every batch of a run. */
typedef struct run_log {
    int nb;
    long iter[16], epoch[16];
    int n[16];
    int record[16][8];
    size_t img_bytes, lbl_bytes, ext_bytes;
    float *img[16], *ext[16];
    uint8_t *lbl[16], *val[16];
} run_log;

static void log_free(run_log *l)
{
    for (int i = 0; i < l->nb; i++) {
        free(l->img[i]);
        free(l->ext[i]);
        free(l->lbl[i]);
        free(l->val[i]);
    }
    memset(l, 0, sizeof *l);
}

static int run_loader(const pk_loader_opts *o, int nbatches, run_log *l, pk_err *e)
{
    memset(l, 0, sizeof *l);
    pk_loader *ld;
    int rc = pk_loader_open(&ld, o, e);
    if (rc)
        return rc;
    for (int b = 0; b < nbatches && !rc; b++) {
        const pk_loader_batch *bt;
        rc = pk_loader_next(ld, &bt, e);
        if (rc || !bt)
            break;
        size_t px = (size_t)bt->n * bt->h * bt->w;
        l->iter[b] = bt->iter;
        l->epoch[b] = bt->epoch;
        l->n[b] = bt->n;
        memcpy(l->record[b], bt->record, (size_t)bt->n * sizeof(int));
        l->img[b] = malloc(px * 3 * sizeof(float));
        l->lbl[b] = malloc(px);
        l->val[b] = malloc(px);
        memcpy(l->img[b], bt->image, px * 3 * sizeof(float));
        memcpy(l->lbl[b], bt->label, px);
        memcpy(l->val[b], bt->valid, px);
        if (bt->c_extra) {
            l->ext[b] = malloc(px * bt->c_extra * sizeof(float));
            memcpy(l->ext[b], bt->extra, px * bt->c_extra * sizeof(float));
        }
        l->nb = b + 1;
    }
    pk_loader_close(ld);
    return rc;
}

/* Batches a[ia..] and b[ib..] (count of them) hold the same bytes. */
static int same_batches(const run_log *a, int ia, const run_log *b, int ib, int count,
                        size_t px1, int cx)
{
    for (int k = 0; k < count; k++) {
        int i = ia + k, j = ib + k;
        if (i >= a->nb || j >= b->nb || a->iter[i] != b->iter[j] || a->n[i] != b->n[j] ||
            memcmp(a->record[i], b->record[j], (size_t)a->n[i] * sizeof(int)))
            return 0;
        size_t px = px1 * a->n[i];
        if (memcmp(a->img[i], b->img[j], px * 3 * sizeof(float)) ||
            memcmp(a->lbl[i], b->lbl[j], px) || memcmp(a->val[i], b->val[j], px))
            return 0;
        if (cx && memcmp(a->ext[i], b->ext[j], px * cx * sizeof(float)))
            return 0;
    }
    return 1;
}

static void base_opts(pk_loader_opts *o, const char *pack)
{
    memset(o, 0, sizeof *o);
    o->pack = pack;
    o->batch = 4;
    o->threads = 1;
    o->seed = 1234;
    o->shuffle = 1;
    o->drop_last = 1;
    pk_aug_opts_default(&o->aug, 33, 29);
}

static void test_threads_epochs_resume(const char *pack)
{
    pk_loader_opts o;
    base_opts(&o, pack);
    pk_err e = {0};
    run_log l1, l2, l3, lr;
    size_t px1 = 33 * 29;
    int rc = run_loader(&o, 9, &l1, &e); /* 3 iterations per epoch: 3 epochs */
    PK_CHECK(failures, rc == 0 && l1.nb == 9, "1-thread run: %s", e.msg);
    o.threads = 2;
    rc = run_loader(&o, 9, &l2, &e);
    PK_CHECK(failures, rc == 0 && same_batches(&l1, 0, &l2, 0, 9, px1, 0),
             "2 threads give other batches than 1 (%s)", e.msg);
    o.threads = 3;
    o.slots = 3;
    rc = run_loader(&o, 9, &l3, &e);
    PK_CHECK(failures, rc == 0 && same_batches(&l1, 0, &l3, 0, 9, px1, 0),
             "3 threads / 3 slots give other batches than 1 (%s)", e.msg);
    /* epochs: 12 distinct records each (drop_last drops one), orders differ */
    int epoch_ok = 1, order_differs = 0;
    for (int ep = 0; ep < 3; ep++) {
        int seen[NREC] = {0}, nseen = 0;
        for (int b = 0; b < 3; b++) {
            epoch_ok &= l1.epoch[ep * 3 + b] == ep && l1.iter[ep * 3 + b] == ep * 3 + b;
            for (int j = 0; j < 4; j++)
                nseen += !seen[l1.record[ep * 3 + b][j]]++;
        }
        epoch_ok &= nseen == 12;
        if (ep > 0)
            for (int b = 0; b < 3; b++)
                order_differs |= memcmp(l1.record[b], l1.record[ep * 3 + b], 4 * sizeof(int));
    }
    PK_CHECK(failures, epoch_ok, "epochs do not hold 12 distinct records each");
    PK_CHECK(failures, order_differs, "the shuffle is the same every epoch");
    /* resume at iteration 4 (mid epoch 1): the same as the uninterrupted run */
    o.threads = 2;
    o.slots = 0;
    o.start_iter = 4;
    o.end_iter = 8;
    rc = run_loader(&o, 16, &lr, &e);
    PK_CHECK(failures, rc == 0 && lr.nb == 4 && same_batches(&l1, 4, &lr, 0, 4, px1, 0),
             "resume at 4 differs from the uninterrupted run (%d batches, %s)", lr.nb, e.msg);
    /* another seed, another order */
    run_log ls;
    o.start_iter = 0;
    o.end_iter = 0;
    o.seed = 4321;
    rc = run_loader(&o, 1, &ls, &e);
    PK_CHECK(failures, rc == 0 && memcmp(ls.record[0], l1.record[0], 4 * sizeof(int)),
             "seed 4321 gave seed 1234's first batch");
    printf("  ok 9 batches equal with 1, 2, 3 threads; epochs shuffled differently; resume at"
           " 4 equal; epoch 0 starts with records %d %d %d %d\n",
           l1.record[0][0], l1.record[0][1], l1.record[0][2], l1.record[0][3]);
    log_free(&l1);
    log_free(&l2);
    log_free(&l3);
    log_free(&lr);
    log_free(&ls);
}

/* No shuffle, no drop_last, augment none, crop larger than every image:
 * batches are records in order, the last batch short, labels and pixels
 * exactly the source (centred). */
/* jpeg: compare with the decoded JPEGs. */
static void test_order_and_content(const char *pack, const src_set *s, int jpeg)
{
    pk_loader_opts o;
    base_opts(&o, pack);
    o.shuffle = 0;
    o.drop_last = 0;
    o.threads = 2;
    o.aug.none = 1;
    int ch = 57, cw = 73;
    pk_aug_opts_default(&o.aug, ch, cw);
    o.aug.none = 1;
    pk_loader *ld;
    pk_err e = {0};
    int rc = pk_loader_open(&ld, &o, &e);
    PK_CHECK(failures, rc == 0, "open: %s", e.msg);
    if (rc)
        return;
    PK_CHECK(failures, pk_loader_count(ld) == NREC && pk_loader_iters_per_epoch(ld) == 4,
             "count %d, %ld iterations per epoch", pk_loader_count(ld),
             pk_loader_iters_per_epoch(ld));
    PK_CHECK(failures, pk_loader_meta(ld)->classes == CLASSES, "meta classes");
    int bad = 0, seen = 0;
    double maxd = 0;
    for (int b = 0; b < 4; b++) {
        const pk_loader_batch *bt;
        if (pk_loader_next(ld, &bt, &e) || !bt) {
            bad++;
            break;
        }
        bad += bt->n != (b < 3 ? 4 : 1);
        for (int j = 0; j < bt->n; j++) {
            int r = bt->record[j];
            bad += r != b * 4 + j || strcmp(pk_loader_key(ld, r), s->key[r]);
            int w = s->w[r], h = s->h[r], top = (ch - h) / 2, left = (cw - w) / 2;
            const uint8_t *px = jpeg ? s->dec[r] : s->rgb[r];
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    size_t i = (size_t)j * ch * cw + (size_t)(y + top) * cw + (x + left);
                    size_t k = (size_t)y * w + x;
                    bad += bt->label[i] != s->lbl[r][k] || bt->valid[i] != 1;
                    for (int c = 0; c < 3; c++) {
                        float v = bt->image[i * 3 + c] * o.aug.std[c] + o.aug.mean[c];
                        maxd = fmax(maxd, fabs(v - px[k * 3 + c]));
                    }
                }
            seen++;
        }
    }
    PK_CHECK(failures, bad == 0 && seen == NREC && maxd < 1e-3,
             "%s pack: %d wrong, %d seen, max pixel diff %g", jpeg ? "JPEG" : "RGB8", bad, seen,
             maxd);
    const pk_loader_batch *bt;
    rc = pk_loader_next(ld, &bt, &e);
    PK_CHECK(failures, rc == 0 && bt && bt->epoch == 1 && bt->record[0] == 0,
             "epoch 1 does not restart in record order");
    pk_loader_close(ld);
    printf("  ok %s pack: record order, short last batch, labels exact, pixels within %.3g\n",
           jpeg ? "JPEG" : "RGB8", maxd);
}

/* Extra planes: set 0 = the record's R channel at full resolution, set 1
 * = 2 channels at half resolution (align corners) holding 2x and 4y, so
 * they must equal what the image and the geometry say. */
typedef struct extra_user {
    const src_set *s;
    int wrong_channels;
} extra_user;

static int extra_fill(void *user, const char *key, int img_w, int img_h, pk_extra_planes *out,
                      pk_err *e)
{
    const extra_user *u = user;
    int r = atoi(key); /* keys are "%08d_<id>" */
    if (r < 0 || r >= NREC || img_w != u->s->w[r] || img_h != u->s->h[r])
        return pk_fail(e, PK_EINVAL, "unexpected key / size");
    float *p0 = pk_extra_planes_alloc(out, 0, img_h, img_w, 1, e);
    if (!p0)
        return e->code;
    for (size_t i = 0; i < (size_t)img_w * img_h; i++)
        p0[i] = u->s->rgb[r][i * 3];
    int hw = (img_w - 1) / 2 + 1 + 1, hh = (img_h - 1) / 2 + 1 + 1, c1 = u->wrong_channels ? 3 : 2;
    float *p1 = pk_extra_planes_alloc(out, 1, hh, hw, c1, e);
    if (!p1)
        return e->code;
    for (int y = 0; y < hh; y++)
        for (int x = 0; x < hw; x++) {
            float *q = p1 + ((size_t)y * hw + x) * c1;
            q[0] = 2.0f * x;
            q[1] = 2.0f * y;
            if (c1 == 3)
                q[2] = 0;
        }
    const float m0[6] = {1, 0, 0, 0, 1, 0}, m1[6] = {0.5f, 0, 0, 0, 0.5f, 0};
    memcpy(out->set[0].m, m0, sizeof m0);
    memcpy(out->set[1].m, m1, sizeof m1);
    out->n = 2;
    return PK_OK;
}

static void test_extra(const char *pack, const src_set *s)
{
    extra_user u = {s, 0};
    pk_loader_opts o;
    base_opts(&o, pack);
    o.threads = 2;
    o.aug.blur_p = 0.0f; /* the blur touches the image only */
    o.extra_fn = extra_fill;
    o.extra_user = &u;
    o.extra_channels = 3;
    run_log l1, l2;
    pk_err e = {0};
    int rc = run_loader(&o, 4, &l1, &e);
    PK_CHECK(failures, rc == 0 && l1.nb == 4, "extra run: %s", e.msg);
    o.threads = 1;
    rc = run_loader(&o, 4, &l2, &e);
    size_t px1 = 33 * 29;
    PK_CHECK(failures, rc == 0 && same_batches(&l1, 0, &l2, 0, 4, px1, 3),
             "extra planes differ between 1 and 2 threads");
    double er = 0, eh = 0;
    int nvalid = 0, zero_bad = 0;
    for (int b = 0; b < l1.nb; b++)
        for (int j = 0; j < 4; j++) {
            int r = l1.record[b][j];
            for (size_t q = 0; q < px1; q++) {
                size_t i = (size_t)j * px1 + q;
                const float *x = l1.ext[b] + i * 3;
                if (!l1.val[b][i]) {
                    zero_bad += x[0] != 0 || x[1] != 0 || x[2] != 0;
                    continue;
                }
                nvalid++;
                float rv = l1.img[b][i * 3] * o.aug.std[0] + o.aug.mean[0];
                float gv = l1.img[b][i * 3 + 1] * o.aug.std[1] + o.aug.mean[1];
                er = fmax(er, fabs(x[0] - rv));
                /* source point from R = 3x + r and G = 4y (linear: exact) */
                double x0 = (rv - r) / 3.0, y0 = gv / 4.0;
                if (x0 > 0.5 && y0 > 0.5 && x0 < s->w[r] - 1.5 && y0 < s->h[r] - 1.5)
                    eh = fmax(eh, fmax(fabs(x[1] - x0), fabs(x[2] - y0)));
            }
        }
    PK_CHECK(failures, er < 2e-3 && eh < 2e-3 && nvalid > 1000 && zero_bad == 0,
             "extra planes vs image: max diff %g (full), %g (half) over %d valid pixels, %d"
             " non-zero invalid", er, eh, nvalid, zero_bad);
    log_free(&l2);
    u.wrong_channels = 1;
    rc = run_loader(&o, 1, &l2, &e);
    PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "channels"),
             "4 extra channels for 3 not reported (rc %d: %s)", rc, e.msg);
    printf("  ok extra planes follow the image (max |diff| %.2g full res, %.2g half res, %d"
           " pixels); wrong channel count: %s\n", er, eh, nvalid, e.msg);
    log_free(&l1);
    log_free(&l2);
}

static void test_errors(const char *dir, src_set *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/corrupt.lmdb", dir);
    if (write_pack(path, s, PK_IMG_RGB8, 5)) {
        failures++;
        return;
    }
    pk_loader_opts o;
    base_opts(&o, path);
    o.shuffle = 0;
    o.threads = 2;
    pk_loader *ld;
    pk_err e = {0};
    int rc = pk_loader_open(&ld, &o, &e);
    PK_CHECK(failures, rc == 0, "open corrupt pack: %s", e.msg);
    if (rc)
        return;
    const pk_loader_batch *bt;
    int rc1 = pk_loader_next(ld, &bt, &e); /* records 0-3 */
    int rc2 = pk_loader_next(ld, &bt, &e); /* records 4-7: 5 is corrupt */
    PK_CHECK(failures, rc1 == 0 && rc2 == PK_EFORMAT && strstr(e.msg, s->key[5]) &&
                           strstr(e.msg, "CRC") && !bt,
             "corrupt record: rc %d/%d, message '%s'", rc1, rc2, e.msg);
    pk_err e2 = {0};
    int rc3 = pk_loader_next(ld, &bt, &e2);
    PK_CHECK(failures, rc3 == rc2 && strcmp(e.msg, e2.msg) == 0, "the failure is not sticky");
    pk_loader_close(ld);
    printf("  ok corrupt record: %s\n", e.msg);

    snprintf(path, sizeof path, "%s/missing.lmdb", dir);
    o.pack = path;
    rc = pk_loader_open(&ld, &o, &e);
    PK_CHECK(failures, rc == PK_ENOTFOUND && !ld && strstr(e.msg, "missing.lmdb"),
             "missing pack: rc %d '%s'", rc, e.msg);
    printf("  ok missing pack: %s\n", e.msg);
    snprintf(path, sizeof path, "%s/rgb.lmdb", dir);
    o.batch = NREC + 1;
    rc = pk_loader_open(&ld, &o, &e);
    PK_CHECK(failures, rc == PK_EINVAL && !ld, "batch > records with drop_last: rc %d", rc);
    printf("  ok too few records: %s\n", e.msg);
    o.batch = 4;
    o.threads = 0;
    rc = pk_loader_open(&ld, &o, &e);
    PK_CHECK(failures, rc == PK_EINVAL && !ld, "0 threads accepted");
}

int main(void)
{
    char dir[] = "/tmp/pspkd-test-loader.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    src_set s;
    src_make(&s);
    char rgb[512], jpg[512];
    snprintf(rgb, sizeof rgb, "%s/rgb.lmdb", dir);
    snprintf(jpg, sizeof jpg, "%s/jpeg.lmdb", dir);
    if (write_pack(rgb, &s, PK_IMG_RGB8, -1) || write_pack(jpg, &s, PK_IMG_JPEG, -1)) {
        failures++;
    } else {
        test_threads_epochs_resume(rgb);
        test_order_and_content(rgb, &s, 0);
        test_order_and_content(jpg, &s, 1);
        test_extra(rgb, &s);
        test_errors(dir, &s);
    }
    const char *names[] = {"rgb.lmdb", "jpeg.lmdb", "corrupt.lmdb"};
    for (int i = 0; i < 3; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    if (rmdir(dir))
        perror(dir);
    src_free(&s);
    if (failures) {
        fprintf(stderr, "test_loader: %d failures\n", failures);
        return 1;
    }
    return 0;
}
