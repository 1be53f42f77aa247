/* bench_data: the data stage's throughput, as "NAME VALUE UNIT" lines.
 *
 *   data_voc_pack_*      voc-pack images/s (JPEG or RGB8 store, -j 1 / 2)
 *   data_augment_1t      pk_augment alone, 473x473 crops on one thread
 *                        (decoded images in memory)
 *   data_augment_logits2x21_1t  the same, also warping a teacher's main and
 *                        aux logits (21 classes each, stride 8) to full crop
 *                        resolution, as student-distill does
 *   data_loader_*_Nt     the loader, augmented 473x473 crops with N worker
 *                        threads (read, CRC, JPEG decode, augment)
 *   semseg_*_1t          the same chain as semseg runs it (Python, OpenCV,
 *                        one thread: bench/semseg_transform.py) on the same
 *                        images, then the ratios ours / semseg's.
 * Crop figures come twice: NAME in crops per CPU second of the process
 * (per-core throughput; steady on a shared machine) and NAME_wall in crops
 * per wall-clock second (what a trainer sees; depends on other load).
 *
 * The images are a voc-synth set at VOC's sizes (333..500 a side) packed
 * with voc-pack, all in a temporary directory. Every figure is the median
 * of RUNS runs. Tools come from $PSPKD_BIN (default bin/), the Python
 * script from $PSPKD_BENCH_PY (default bench/semseg_transform.py).
 *
 * usage: bench_data [IMAGES [CROPS [RUNS]]]   (default 48 192 3) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "data/augment.h"
#include "data/image.h"
#include "data/loader.h"
#include "store/pack.h"
#include "store/record.h"

#define CROP 473
#define MAX_RUNS 9

/* A throughput measured both ways. */
typedef struct rate {
    double cpu, wall;
} rate;

/* Runs a shell command; returns its wall time or -1 on failure. */
static double timed_system(const char *cmd)
{
    double t0 = now();
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "bench_data: command failed (%d): %s\n", rc, cmd);
        return -1.0;
    }
    return now() - t0;
}

/* Augmented crops/s of the loader over `crops` crops after one warm-up
 * batch. */
static rate loader_rate(const char *pack, int threads, int crops, pk_err *e)
{
    rate bad = {-1.0, -1.0};
    pk_loader_opts o = {0};
    o.pack = pack;
    o.batch = 8;
    o.threads = threads;
    o.slots = 2;
    o.seed = 1;
    o.shuffle = 1;
    o.drop_last = 1;
    pk_aug_opts_default(&o.aug, CROP, CROP);
    int iters = crops / o.batch;
    o.end_iter = 1 + iters;
    pk_loader *ld;
    if (pk_loader_open(&ld, &o, e))
        return bad;
    const pk_loader_batch *b;
    double t0 = 0, c0 = 0;
    int rc = 0;
    for (int i = 0; i <= iters && !rc; i++) {
        rc = pk_loader_next(ld, &b, e);
        if (i == 0) { /* after the warm-up batch */
            t0 = now();
            c0 = cpu_now();
        }
    }
    /* the workers stop at end_iter: the ring's last refill is not counted */
    rate r = {iters * o.batch / (cpu_now() - c0), iters * o.batch / (now() - t0)};
    pk_loader_close(ld);
    return rc ? bad : r;
}

/* The pack's images decoded into memory (for the augment-only figure). */
typedef struct images {
    int n;
    pk_image *rgb;
    uint8_t **label;
} images;

typedef struct load_ctx {
    images *im;
    int max;
} load_ctx;

static int load_one(const pk_pack_rec *r, void *user, pk_err *e)
{
    load_ctx *c = user;
    if (c->im->n >= c->max)
        return PK_OK;
    pk_record_view rv;
    int rc = pk_record_parse(&rv, r->data, r->len, e);
    int i = c->im->n;
    if (!rc)
        rc = pk_record_image(&c->im->rgb[i], &rv, e);
    if (rc)
        return rc;
    size_t n = (size_t)rv.hdr.width * rv.hdr.height;
    c->im->label[i] = malloc(n);
    if (!c->im->label[i]) {
        pk_image_free(&c->im->rgb[i]);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    memcpy(c->im->label[i], rv.label, n);
    c->im->n++;
    return PK_OK;
}

static int load_images(images *im, const char *pack, int max, pk_err *e)
{
    im->n = 0;
    im->rgb = calloc((size_t)max, sizeof *im->rgb);
    im->label = calloc((size_t)max, sizeof *im->label);
    if (!im->rgb || !im->label)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    pk_pack *p;
    int rc = pk_pack_open(&p, pack, e);
    if (rc)
        return rc;
    load_ctx c = {im, max};
    rc = pk_pack_foreach(p, load_one, &c, e);
    pk_pack_close(p);
    if (!rc && im->n == 0)
        rc = pk_fail(e, PK_EFORMAT, "%s: no records", pack);
    return rc;
}

static void free_images(images *im)
{
    for (int i = 0; i < im->n; i++) {
        pk_image_free(&im->rgb[i]);
        free(im->label[i]);
    }
    free(im->rgb);
    free(im->label);
}

/* classes: 0, or the teacher-logits case: main + aux logits of `classes`
 * channels each at stride 8 (align corners), warped with every crop. */
static rate augment_rate(const images *im, int crops, int classes, pk_err *e)
{
    pk_aug_opts o;
    pk_aug_opts_default(&o, CROP, CROP);
    size_t px = (size_t)CROP * CROP;
    float *out = malloc(px * 3 * sizeof(float));
    uint8_t *lb = malloc(px), *va = malloc(px);
    float *lg = NULL, *lo = NULL;
    pk_plane_set ps[2];
    if (classes) {
        size_t grid = 64 * 64 * (size_t)classes; /* covers 505 x 505 images */
        lg = malloc(grid * sizeof(float));
        lo = malloc(px * 2 * (size_t)classes * sizeof(float));
        for (size_t i = 0; i < grid && lg; i++)
            lg[i] = (float)(i % 97) * 0.01f;
        for (int s = 0; s < 2; s++) {
            pk_plane_set p = {lg, 0, 0, classes, {0.125f, 0, 0, 0, 0.125f, 0},
                              lo ? lo + s * classes : NULL, 2 * classes};
            ps[s] = p;
        }
    }
    pk_aug_ws ws = {0};
    int rc = 0;
    double t0 = now(), c0 = cpu_now();
    for (int i = 0; i < crops && !rc; i++) {
        const pk_image *s = &im->rgb[i % im->n];
        pk_rng r = pk_rng_seed(pk_aug_sample_seed(3, 0, (uint64_t)i));
        pk_aug_params p;
        pk_aug_draw(&p, &o, s->w, s->h, &r);
        for (int k = 0; k < 2 && classes; k++) {
            ps[k].w = (s->w - 1) / 8 + 1;
            ps[k].h = (s->h - 1) / 8 + 1;
        }
        rc = pk_augment(&o, &p, s->px, im->label[i % im->n], s->w, s->h, ps, classes ? 2 : 0,
                        out, lb, va, &ws, e);
    }
    rate r = {crops / (cpu_now() - c0), crops / (now() - t0)};
    pk_aug_ws_free(&ws);
    free(out);
    free(lb);
    free(va);
    free(lg);
    free(lo);
    if (rc)
        r.cpu = r.wall = -1.0;
    return r;
}

static void rm_tree(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_data: could not remove %s\n", path);
}

/* Runs the Python side; echoes its lines and picks its figures. */
static int run_python(const char *script, const char *dir, int crops, int runs, rate *tr,
                      rate *lt)
{
    char cmd[2048], line[256];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 /usr/bin/python3 '%s' '%s/voc/ImageSets/Segmentation/train.txt'"
             " '%s/voc' %d %d %d",
             script, dir, dir, crops, runs, CROP);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    tr->cpu = tr->wall = lt->cpu = lt->wall = -1.0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        double v;
        if (sscanf(line, "semseg_transform_1t %lf", &v) == 1)
            tr->cpu = v;
        else if (sscanf(line, "semseg_transform_1t_wall %lf", &v) == 1)
            tr->wall = v;
        else if (sscanf(line, "semseg_load_transform_1t %lf", &v) == 1)
            lt->cpu = v;
        else if (sscanf(line, "semseg_load_transform_1t_wall %lf", &v) == 1)
            lt->wall = v;
    }
    int rc = pclose(f);
    return rc == 0 && tr->cpu > 0 && tr->wall > 0 && lt->cpu > 0 && lt->wall > 0 ? 0 : -1;
}

/* Median over runs of both figures, printed as NAME (per CPU second) and
 * NAME_wall. */
static rate report(const char *name, const rate *v, int runs)
{
    double c[MAX_RUNS], w[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        c[r] = v[r].cpu;
        w[r] = v[r].wall;
    }
    rate m = {median(c, runs), median(w, runs)};
    printf("%s %.1f crops/cpu-s\n%s_wall %.1f crops/s\n", name, m.cpu, name, m.wall);
    fflush(stdout);
    return m;
}

int main(int argc, char **argv)
{
    int nimg = argc > 1 ? atoi(argv[1]) : 48;
    int crops = argc > 2 ? atoi(argv[2]) : 192;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    if (nimg < 8 || crops < 8 || runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "usage: bench_data [IMAGES>=8 [CROPS>=8 [RUNS 1..%d]]]\n", MAX_RUNS);
        return 2;
    }
    const char *bin = getenv("PSPKD_BIN") ? getenv("PSPKD_BIN") : "bin";
    const char *py = getenv("PSPKD_BENCH_PY") ? getenv("PSPKD_BENCH_PY")
                                              : "bench/semseg_transform.py";
    char dir[] = "/tmp/pspkd-bench-data.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_data: mkdtemp");
        return 1;
    }
    int fail = 0;
    char cmd[2048], jpeg[600], rgb[600];
    snprintf(jpeg, sizeof jpeg, "%s/jpeg.lmdb", dir);
    snprintf(rgb, sizeof rgb, "%s/rgb.lmdb", dir);
    snprintf(cmd, sizeof cmd, "'%s/voc-synth' -q -o '%s/voc' -n %d --val 1 --size 333:500",
             bin, dir, nimg);
    if (timed_system(cmd) < 0) {
        rm_tree(dir);
        return 1;
    }
    /* voc-pack: images/s (wall clock, the tool's own threads) */
    const struct { const char *store, *out; int jobs; } packs[] = {
        {"jpeg", jpeg, 1}, {"jpeg", jpeg, 2}, {"rgb", rgb, 1}, {"rgb", rgb, 2}};
    for (size_t k = 0; k < sizeof packs / sizeof packs[0] && !fail; k++) {
        double v[MAX_RUNS];
        for (int r = 0; r < runs && !fail; r++) {
            snprintf(cmd, sizeof cmd,
                     "'%s/voc-pack' -q -f '%s/voc' --split train --store %s -j %d -o '%s'", bin,
                     dir, packs[k].store, packs[k].jobs, packs[k].out);
            double t = timed_system(cmd);
            fail |= t < 0;
            v[r] = nimg / t;
        }
        if (!fail)
            printf("data_voc_pack_%s_j%d %.1f img/s\n", packs[k].store, packs[k].jobs,
                   median(v, runs));
    }
    pk_err e = {0};
    rate aug = {-1.0, -1.0}, ld1 = {-1.0, -1.0}, v[MAX_RUNS];
    if (!fail) {
        images im = {0};
        if (load_images(&im, rgb, nimg, &e)) {
            fprintf(stderr, "bench_data: %s\n", e.msg);
            fail = 1;
        } else {
            augment_rate(&im, 8, 0, &e); /* warm-up */
            for (int r = 0; r < runs && !fail; r++) {
                v[r] = augment_rate(&im, crops, 0, &e);
                fail |= v[r].cpu < 0;
            }
            if (!fail)
                aug = report("data_augment_1t", v, runs);
            for (int r = 0; r < runs && !fail; r++) {
                v[r] = augment_rate(&im, crops / 2, 21, &e);
                fail |= v[r].cpu < 0;
            }
            if (!fail)
                report("data_augment_logits2x21_1t", v, runs);
            else
                fprintf(stderr, "bench_data: augment: %s\n", e.msg);
        }
        free_images(&im);
    }
    const struct { const char *name, *pack; } lps[] = {{"jpeg", jpeg}, {"rgb", rgb}};
    for (size_t k = 0; k < 2 && !fail; k++)
        for (int t = 1; t <= 2 && !fail; t++) {
            for (int r = 0; r < runs && !fail; r++) {
                v[r] = loader_rate(lps[k].pack, t, crops, &e);
                fail |= v[r].cpu < 0;
            }
            if (fail) {
                fprintf(stderr, "bench_data: loader: %s\n", e.msg);
                break;
            }
            char name[64];
            snprintf(name, sizeof name, "data_loader_%s_%dt", lps[k].name, t);
            rate m = report(name, v, runs);
            if (k == 0 && t == 1)
                ld1 = m;
        }
    if (!fail) {
        rate tr, lt;
        struct stat st;
        if (stat(py, &st) != 0) {
            fprintf(stderr, "bench_data: %s not found: no OpenCV figures\n", py);
        } else if (run_python(py, dir, crops / 2 < 64 ? 64 : crops / 2, runs, &tr, &lt)) {
            fprintf(stderr, "bench_data: %s failed: no OpenCV figures (needs python3-opencv)\n",
                    py);
        } else {
            /* per core: crops per CPU second on both sides */
            printf("ratio_augment_vs_semseg_transform %.2f x\n", aug.cpu / tr.cpu);
            printf("ratio_augment_vs_semseg_transform_wall %.2f x\n", aug.wall / tr.wall);
            printf("ratio_loader_jpeg_1t_vs_semseg_load_transform %.2f x\n", ld1.cpu / lt.cpu);
            printf("ratio_loader_jpeg_1t_vs_semseg_load_transform_wall %.2f x\n",
                   ld1.wall / lt.wall);
        }
    }
    rm_tree(dir);
    return fail;
}
