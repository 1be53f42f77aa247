/* Checkpoints: save/load round trips (parameters, running stats, momentum,
 * step, metadata), frozen files without optimiser state, every malformed
 * file rejected with a message naming the tensor or file, F16 and
 * metadata-free (PyTorch-saved) files, and ImageNet initialisation from
 * torchvision names. PyTorch parity of the same files: test_checkpoint_torch.c. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "core/half.h"
#include "store/safetensors.h"
#include "support.h"

static int failures;

/* ---- helpers ---- */

static pk_model *new_model(pk_ctx *c, pk_arch arch, pk_stem stem, int classes)
{
    pk_model *m = NULL;
    pk_err e = {0};
    pk_model_cfg cfg = {.arch = arch, .stem = stem, .classes = classes, .dropout = 0.1f};
    if (pk_model_create(&m, c, &cfg, &e)) {
        fprintf(stderr, "test_checkpoint: pk_model_create: %s\n", e.msg);
        exit(1);
    }
    return m;
}

/* Random parameters (init), running stats and momentum, tensor by tensor
 * (the buffers' alignment padding belongs to no tensor and is left alone). */
static void randomise(pk_model *m, uint64_t seed)
{
    /* uniform fills, not pk_model_init: its normal draws would dominate the run time */
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        uint64_t s = seed * 1000 + (uint64_t)i;
        if (ti->kind == PK_T_RUNNING) {
            float *st = pk_model_state(m) + ti->offset;
            pk_test_fill(st, ti->count, s, 0.5f);
            if (strstr(ti->name, "running_var"))
                for (size_t k = 0; k < ti->count; k++)
                    st[k] += 1.0f;
        } else if (ti->kind == PK_T_PARAM) {
            pk_test_fill(pk_model_params(m) + ti->offset, ti->count, s + 500, 0.1f);
            pk_test_fill(pk_model_momentum(m) + ti->offset, ti->count, s, 0.01f);
        }
    }
    pk_model_set_num_batches_tracked(m, (int64_t)(seed % 1000) + 7);
}

/* Every tensor of a equal to b's (bitwise). */
static int same_buffers(const char *what, pk_model *a, pk_model *b, int momentum)
{
    int bad = pk_model_tensor_count(a) != pk_model_tensor_count(b);
    for (int i = 0; !bad && i < pk_model_tensor_count(a); i++) {
        const pk_tensor_info *ta = pk_model_tensor(a, i), *tb = pk_model_tensor(b, i);
        if (strcmp(ta->name, tb->name) || ta->count != tb->count || ta->offset != tb->offset) {
            bad = 1;
            break;
        }
        if (ta->kind == PK_T_NUM_BATCHES)
            continue;
        size_t bytes = ta->count * sizeof(float);
        if (ta->kind == PK_T_RUNNING) {
            bad |= memcmp(pk_model_state(a) + ta->offset, pk_model_state(b) + ta->offset, bytes);
            continue;
        }
        bad |= memcmp(pk_model_params(a) + ta->offset, pk_model_params(b) + ta->offset, bytes) != 0;
        if (momentum)
            bad |= memcmp(pk_model_momentum(a) + ta->offset, pk_model_momentum(b) + ta->offset,
                          bytes) != 0;
    }
    bad |= pk_model_num_batches_tracked(a) != pk_model_num_batches_tracked(b);
    fprintf(stderr, "  %s %s: params, running stats%s, num_batches_tracked bit-identical\n",
            bad ? "FAIL" : "ok", what, momentum ? ", momentum" : "");
    return bad;
}

static int all_zero(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return 0;
    return 1;
}

/* A rewrite of a safetensors file, tensor by tensor. The edit callback may
 * drop a tensor (return 0), rename it, or change its dtype or shape; data of
 * the same element count is converted, otherwise zero-filled. Metadata: the
 * pspkd keys present in src are copied unless copy_meta is 0; set_meta is a
 * NULL-terminated list of key, value pairs applied after that. */
typedef int (*edit_fn)(void *user, const char *name, char *out_name, size_t cap,
                       pk_dtype *dtype, int *ndim, int64_t *shape);

static void rewrite(const char *src, const char *dst, edit_fn edit, void *user, int copy_meta,
                    const char *const *set_meta)
{
    static const char *const keys[] = {"format", "format_version", "arch", "stem", "classes",
                                       "step",   "frozen",         "seed", "note"};
    pk_err e = {0};
    pk_st_file *f = NULL;
    if (pk_st_open(&f, src, &e)) {
        fprintf(stderr, "test_checkpoint: %s\n", e.msg);
        exit(1);
    }
    pk_st_writer *w = pk_st_writer_new();
    for (int i = 0; i < pk_st_count(f); i++) {
        const pk_st_tensor *t = pk_st_at(f, i);
        char name[160];
        snprintf(name, sizeof name, "%s", t->name);
        pk_dtype dt = t->dtype;
        int nd = t->ndim;
        int64_t sh[PK_ST_MAX_DIMS];
        memcpy(sh, t->shape, sizeof sh);
        if (edit && !edit(user, t->name, name, sizeof name, &dt, &nd, sh))
            continue;
        size_t numel = 1;
        for (int d = 0; d < nd; d++)
            numel *= (size_t)sh[d];
        size_t esz = dt == PK_F16 ? 2 : dt == PK_F32 ? 4 : 8;
        unsigned char *buf = calloc(numel ? numel : 1, esz);
        if (numel == t->numel && dt == t->dtype) {
            memcpy(buf, t->data, numel * esz);
        } else if (numel == t->numel) {
            for (size_t k = 0; k < numel; k++) {
                double v;
                if (t->dtype == PK_F32) {
                    float x;
                    memcpy(&x, (const char *)t->data + 4 * k, 4);
                    v = x;
                } else if (t->dtype == PK_F16) {
                    uint16_t h;
                    memcpy(&h, (const char *)t->data + 2 * k, 2);
                    v = pk_f16_to_f32(h);
                } else {
                    int64_t x;
                    memcpy(&x, (const char *)t->data + 8 * k, 8);
                    v = (double)x;
                }
                if (dt == PK_F32) {
                    float x = (float)v;
                    memcpy(buf + 4 * k, &x, 4);
                } else if (dt == PK_F16) {
                    uint16_t h = pk_f32_to_f16((float)v);
                    memcpy(buf + 2 * k, &h, 2);
                } else {
                    int64_t x = (int64_t)v;
                    memcpy(buf + 8 * k, &x, 8);
                }
            }
        }
        if (pk_st_add(w, name, dt, nd, sh, buf, &e)) {
            fprintf(stderr, "test_checkpoint: rewrite: %s\n", e.msg);
            exit(1);
        }
        free(buf);
    }
    for (size_t k = 0; copy_meta && k < sizeof keys / sizeof *keys; k++) {
        const char *v = pk_st_meta(f, keys[k]);
        if (v && pk_st_set_meta(w, keys[k], v, &e))
            exit(1);
    }
    for (int k = 0; set_meta && set_meta[k]; k += 2)
        if (pk_st_set_meta(w, set_meta[k], set_meta[k + 1], &e))
            exit(1);
    if (pk_st_write(w, dst, &e)) {
        fprintf(stderr, "test_checkpoint: rewrite: %s\n", e.msg);
        exit(1);
    }
    pk_st_writer_free(w);
    pk_st_close(f);
}

/* Expects pk_checkpoint_load_into to fail with PK_EFORMAT and a message
 * containing `needle`; the model must be left untouched. */
static void expect_reject(const char *what, pk_model *m, const char *path, const char *needle)
{
    size_t np = pk_model_num_params(m);
    float *before = malloc(np * sizeof(float));
    memcpy(before, pk_model_params(m), np * sizeof(float));
    pk_err e = {0};
    int rc = pk_checkpoint_load_into(m, path, NULL, &e);
    int ok = rc == PK_EFORMAT && strstr(e.msg, needle) != NULL;
    int untouched = memcmp(before, pk_model_params(m), np * sizeof(float)) == 0;
    fprintf(stderr, "  %s reject %s: rc=%d \"%s\"%s\n", ok && untouched ? "ok" : "FAIL", what,
            rc, e.msg, untouched ? "" : " (model modified)");
    failures += !(ok && untouched);
    free(before);
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* ---- edits ---- */

static int edit_drop_optimizer(void *u, const char *name, char *out, size_t cap, pk_dtype *dt,
                               int *nd, int64_t *sh)
{
    (void)u, (void)out, (void)cap, (void)dt, (void)nd, (void)sh;
    return strncmp(name, "optimizer.", 10) != 0;
}

static int edit_drop(void *u, const char *name, char *out, size_t cap, pk_dtype *dt, int *nd,
                     int64_t *sh)
{
    (void)out, (void)cap, (void)dt, (void)nd, (void)sh;
    return strcmp(name, (const char *)u) != 0;
}

static int edit_to_f16(void *u, const char *name, char *out, size_t cap, pk_dtype *dt, int *nd,
                       int64_t *sh)
{
    (void)u, (void)name, (void)out, (void)cap, (void)nd, (void)sh;
    if (*dt == PK_F32)
        *dt = PK_F16;
    return 1;
}

struct reshape {
    const char *name;
    int ndim;
    int64_t shape[4];
    pk_dtype dtype;
};

static int edit_reshape(void *u, const char *name, char *out, size_t cap, pk_dtype *dt,
                        int *nd, int64_t *sh)
{
    const struct reshape *r = u;
    (void)out, (void)cap;
    if (!strcmp(name, r->name)) {
        *nd = r->ndim;
        memcpy(sh, r->shape, sizeof r->shape);
        *dt = r->dtype;
    }
    return 1;
}

/* torchvision names: layer0.0 -> conv1, layer0.1 -> bn1 (7x7 stem) or the
 * deep stem's conv1/bn1/conv2/bn2/conv3/bn3; heads and optimiser dropped. */
static int edit_to_imagenet(void *u, const char *name, char *out, size_t cap, pk_dtype *dt,
                            int *nd, int64_t *sh)
{
    (void)u, (void)dt, (void)nd, (void)sh;
    static const char *const mod[] = {"conv1", "bn1", NULL, "conv2", "bn2", NULL, "conv3", "bn3"};
    if (!strncmp(name, "layer0.", 7)) {
        int idx = name[7] - '0';
        snprintf(out, cap, "%s%s", mod[idx], name + 8);
        return 1;
    }
    return !strncmp(name, "layer", 5);
}

/* ---- tests ---- */

/* a, d: ResNet18 models with 3 classes (reused: each creation costs an init) */
static void test_round_trip(pk_ctx *c, const char *dir, pk_model *a, pk_model *d)
{
    char *path = path_in(dir, "rt.safetensors");
    randomise(a, 11);
    pk_ckpt_meta meta = {.step = 42};
    pk_err e = {0};
    PK_CHECK(failures, pk_ckpt_meta_set(&meta, "seed", "123") == PK_OK, "meta_set seed");
    PK_CHECK(failures, pk_ckpt_meta_set(&meta, "note", "hello world") == PK_OK, "meta_set");
    PK_CHECK(failures, pk_ckpt_meta_set(&meta, "seed", "124") == PK_OK, "meta_set replace");
    PK_CHECK(failures, pk_ckpt_meta_set(&meta, "arch", "x") == PK_EINVAL, "reserved key");
    PK_CHECK(failures, meta.n_extra == 2, "n_extra %d", meta.n_extra);
    int rc = pk_checkpoint_save(a, path, &meta, 1, &e);
    PK_CHECK(failures, rc == PK_OK, "save: %s", e.msg);

    pk_model *b = NULL;
    pk_ckpt_meta got;
    rc = pk_checkpoint_load(&b, c, path, 0.1f, &got, &e);
    PK_CHECK(failures, rc == PK_OK, "load: %s", e.msg);
    if (rc == PK_OK) {
        const pk_model_cfg *cfg = pk_model_config(b);
        PK_CHECK(failures, cfg->arch == PK_ARCH_R18 && cfg->stem == PK_STEM_7X7 &&
                               cfg->classes == 3,
                 "config %d %d %d", cfg->arch, cfg->stem, cfg->classes);
        failures += same_buffers("save/load round trip", a, b, 1);
        PK_CHECK(failures, got.step == 42 && got.frozen == 0, "step %ld frozen %d", got.step,
                 got.frozen);
        const char *seed = pk_ckpt_meta_get(&got, "seed"), *note = pk_ckpt_meta_get(&got, "note");
        PK_CHECK(failures, seed && !strcmp(seed, "124"), "extra seed %s", seed ? seed : "NULL");
        PK_CHECK(failures, note && !strcmp(note, "hello world"), "extra note");
        PK_CHECK(failures, got.n_extra == 2, "extras %d", got.n_extra);
        pk_model_destroy(b);
    }

    /* load_into an existing model with other values */
    randomise(d, 99);
    rc = pk_checkpoint_load_into(d, path, NULL, &e);
    PK_CHECK(failures, rc == PK_OK, "load_into: %s", e.msg);
    failures += same_buffers("load_into", a, d, 1);

    /* the file itself: PyTorch names, shapes and layouts */
    pk_st_file *f = NULL;
    rc = pk_st_open(&f, path, &e);
    PK_CHECK(failures, rc == PK_OK, "open: %s", e.msg);
    if (rc == PK_OK) {
        const pk_st_tensor *w = pk_st_find(f, "layer1.0.conv2.weight");
        const pk_tensor_info *ti = pk_model_find(a, "layer1.0.conv2.weight");
        int ok = w && ti && w->dtype == PK_F32 && w->ndim == 4 && w->shape[0] == 64 &&
                 w->shape[1] == 64 && w->shape[2] == 3 && w->shape[3] == 3;
        /* file [o][i][y][x] == buffer (OHWI) [o][y][x][i] */
        for (int o = 0; ok && o < 64; o += 7)
            for (int i = 0; i < 64; i += 5)
                for (int y = 0; y < 3; y++)
                    for (int x = 0; x < 3; x++) {
                        float fv;
                        memcpy(&fv, (const char *)w->data + 4 * (((o * 64 + i) * 3 + y) * 3 + x),
                               4);
                        ok &= fv == pk_model_params(a)[ti->offset + ((o * 3 + y) * 3 + x) * 64 + i];
                    }
        PK_CHECK(failures, ok, "layer1.0.conv2.weight not OIHW [64,64,3,3] in the file");
        const pk_st_tensor *nb = pk_st_find(f, "layer2.0.bn1.num_batches_tracked");
        int64_t v = 0;
        if (nb && nb->dtype == PK_I64)
            memcpy(&v, nb->data, 8);
        PK_CHECK(failures, nb && nb->dtype == PK_I64 && nb->ndim == 0 && v == 18,
                 "num_batches_tracked: I64 scalar 18 expected");
        PK_CHECK(failures, pk_st_find(f, "optimizer.momentum.cls.4.bias") != NULL,
                 "momentum entry missing");
        PK_CHECK(failures, pk_st_find(f, "optimizer.momentum.layer0.1.running_mean") == NULL,
                 "momentum for a running stat");
        const char *want[][2] = {{"format", "pspkd-checkpoint"}, {"format_version", "1"},
                                 {"arch", "resnet18"},           {"stem", "7x7"},
                                 {"classes", "3"},               {"step", "42"},
                                 {"frozen", "0"},                {"seed", "124"}};
        for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
            const char *mv = pk_st_meta(f, want[k][0]);
            PK_CHECK(failures, mv && !strcmp(mv, want[k][1]), "metadata %s=%s, want %s",
                     want[k][0], mv ? mv : "NULL", want[k][1]);
        }
        pk_st_close(f);
    }
    fprintf(stderr, "  ok file layout: OIHW weights, I64 scalar counters, metadata\n");

    /* the same logits after the round trip (eval forward) */
    int h = 33, w = 33;
    size_t nin = (size_t)h * w * 3, nout = (size_t)h * w * 3;
    float *img = malloc(nin * sizeof(float)), *la = malloc(nout * sizeof(float)),
          *ld = malloc(nout * sizeof(float));
    pk_test_fill(img, nin, 5, 2.0f);
    rc = pk_model_infer(a, la, NULL, img, 1, h, w, 1, &e);
    if (!rc)
        rc = pk_model_infer(d, ld, NULL, img, 1, h, w, 1, &e);
    PK_CHECK(failures, rc == PK_OK, "infer: %s", e.msg);
    if (!rc)
        PK_CHECK(failures, !memcmp(la, ld, nout * sizeof(float)), "logits differ after reload");
    free(img), free(la), free(ld);
    unlink(path);
    free(path);
}

static void test_frozen(const char *dir, pk_model *a, pk_model *b)
{
    char *path = path_in(dir, "frozen.safetensors");
    randomise(a, 21);
    pk_err e = {0};
    pk_ckpt_meta meta = {.step = 300, .frozen = 1};
    int rc = pk_checkpoint_save(a, path, &meta, 1, &e);
    PK_CHECK(failures, rc == PK_OK, "save frozen: %s", e.msg);
    pk_st_file *f = NULL;
    if (pk_st_open(&f, path, &e) == PK_OK) {
        int opt = 0;
        for (int i = 0; i < pk_st_count(f); i++)
            opt += !strncmp(pk_st_at(f, i)->name, "optimizer.", 10);
        const char *fr = pk_st_meta(f, "frozen");
        PK_CHECK(failures, opt == 0, "frozen file has %d optimizer entries", opt);
        PK_CHECK(failures, fr && !strcmp(fr, "1"), "frozen metadata");
        PK_CHECK(failures, pk_st_count(f) == pk_model_tensor_count(a),
                 "frozen file has %d tensors, the model %d", pk_st_count(f),
                 pk_model_tensor_count(a));
        fprintf(stderr, "  %s frozen file: %d tensors, no optimizer entries\n",
                opt ? "FAIL" : "ok", pk_st_count(f));
        pk_st_close(f);
    }
    randomise(b, 3); /* nonzero momentum must be cleared by a file without any */
    pk_ckpt_meta got;
    rc = pk_checkpoint_load_into(b, path, &got, &e);
    PK_CHECK(failures, rc == PK_OK, "load frozen: %s", e.msg);
    failures += same_buffers("frozen load", a, b, 0);
    PK_CHECK(failures, all_zero(pk_model_momentum(b), pk_model_num_params(b)),
             "momentum not cleared");
    PK_CHECK(failures, got.frozen == 1 && got.step == 300, "frozen meta %d %ld", got.frozen,
             got.step);

    /* not frozen, without optimiser: also no optimizer entries */
    meta.frozen = 0;
    rc = pk_checkpoint_save(a, path, &meta, 0, &e);
    PK_CHECK(failures, rc == PK_OK, "save: %s", e.msg);
    if (pk_st_open(&f, path, &e) == PK_OK) {
        PK_CHECK(failures, pk_st_count(f) == pk_model_tensor_count(a),
                 "with_optimizer=0 wrote %d tensors", pk_st_count(f));
        pk_st_close(f);
    }
    unlink(path);
    free(path);
}

static void truncate_copy(const char *src, const char *dst, long cut, long poke_at, char poke)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out)
        exit(1);
    fseek(in, 0, SEEK_END);
    long n = ftell(in) - cut;
    fseek(in, 0, SEEK_SET);
    char buf[65536];
    for (long at = 0; at < n;) {
        size_t k = fread(buf, 1, (size_t)(n - at < (long)sizeof buf ? n - at : (long)sizeof buf),
                         in);
        if (!k)
            exit(1);
        if (poke_at >= at && poke_at < at + (long)k)
            buf[poke_at - at] = poke;
        if (fwrite(buf, 1, k, out) != k)
            exit(1);
        at += (long)k;
    }
    fclose(in);
    if (fclose(out))
        exit(1);
}

static void test_rejects(pk_ctx *c, const char *dir, pk_model *a)
{
    /* most cases edit a file without optimiser state: half the bytes to copy */
    char *good = path_in(dir, "good.safetensors"), *bad = path_in(dir, "bad.safetensors");
    char *goodopt = path_in(dir, "goodopt.safetensors");
    randomise(a, 31);
    pk_err e = {0};
    pk_ckpt_meta meta = {.step = 9};
    if (pk_checkpoint_save(a, good, &meta, 0, &e) ||
        pk_checkpoint_save(a, goodopt, &meta, 1, &e)) {
        fprintf(stderr, "  FAIL save: %s\n", e.msg);
        failures++;
        return;
    }
    truncate_copy(good, bad, 1000, -1, 0);
    expect_reject("truncated file", a, bad, "bad.safetensors");
    truncate_copy(good, bad, 0, 9, '#'); /* breaks the JSON's first key */
    expect_reject("corrupt header", a, bad, "JSON");
    {
        FILE *fp = fopen(bad, "wb");
        if (!fp || fwrite("\x10\0\0", 1, 3, fp) != 3 || fclose(fp))
            exit(1);
    }
    expect_reject("3-byte file", a, bad, "bad.safetensors");

    struct reshape wrong_k = {"cls.4.weight", 4, {4, 512, 1, 1}, PK_F32};
    rewrite(good, bad, edit_reshape, &wrong_k, 1, NULL);
    expect_reject("wrong shape (classes)", a, bad, "'cls.4.weight' has shape [4,512,1,1]");
    struct reshape ohwi = {"layer1.0.conv1.weight", 4, {64, 3, 3, 64}, PK_F32};
    rewrite(good, bad, edit_reshape, &ohwi, 1, NULL);
    expect_reject("wrong shape (OHWI)", a, bad, "layer1.0.conv1.weight");
    struct reshape i64 = {"layer0.0.weight", 4, {64, 3, 7, 7}, PK_I64};
    rewrite(good, bad, edit_reshape, &i64, 1, NULL);
    expect_reject("wrong dtype", a, bad, "'layer0.0.weight' has dtype I64");
    struct reshape mom = {"optimizer.momentum.aux.0.weight", 4, {128, 256, 3, 1}, PK_F32};
    rewrite(goodopt, bad, edit_reshape, &mom, 1, NULL);
    expect_reject("wrong momentum shape", a, bad, "optimizer.momentum.aux.0.weight");

    rewrite(good, bad, edit_drop, (void *)"layer2.1.bn2.running_var", 1, NULL);
    expect_reject("missing tensor", a, bad, "missing tensor 'layer2.1.bn2.running_var'");
    rewrite(good, bad, edit_drop, (void *)"layer3.0.downsample.1.num_batches_tracked", 1, NULL);
    expect_reject("missing counter", a, bad, "layer3.0.downsample.1.num_batches_tracked");
    rewrite(goodopt, bad, edit_drop, (void *)"optimizer.momentum.ppm.features.2.2.bias", 1,
            NULL);
    expect_reject("partial optimizer", a, bad, "optimizer.momentum.ppm.features.2.2.bias");
    {
        /* the good file plus a stray tensor */
        pk_st_file *f = NULL;
        pk_st_writer *w = pk_st_writer_new();
        if (pk_st_open(&f, good, &e))
            exit(1);
        for (int i = 0; i < pk_st_count(f); i++) {
            const pk_st_tensor *t = pk_st_at(f, i);
            if (pk_st_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &e))
                exit(1);
        }
        float z[2] = {0, 0};
        int64_t sh[1] = {2};
        if (pk_st_add(w, "layer5.0.conv1.weight", PK_F32, 1, sh, z, &e) ||
            pk_st_set_meta(w, "format", "pt", &e) || pk_st_write(w, bad, &e))
            exit(1);
        pk_st_writer_free(w);
        pk_st_close(f);
    }
    expect_reject("extra tensor", a, bad, "unexpected tensor 'layer5.0.conv1.weight'");
    const char *deep[] = {"stem", "deep", NULL};
    rewrite(good, bad, NULL, NULL, 1, deep);
    expect_reject("metadata stem mismatch", a, bad, "deep stem");
    const char *newer[] = {"format_version", "2", NULL};
    rewrite(good, bad, NULL, NULL, 1, newer);
    expect_reject("newer format", a, bad, "format_version 2");
    const char *step[] = {"step", "8", NULL};
    rewrite(goodopt, bad, NULL, NULL, 1, step);
    expect_reject("step disagreement", a, bad, "optimizer.step");

    pk_model *m = NULL;
    int rc = pk_checkpoint_load(&m, c, "/nonexistent/x.safetensors", 0.1f, NULL, &e);
    PK_CHECK(failures, rc == PK_ENOTFOUND && m == NULL && strstr(e.msg, "/nonexistent"),
             "missing file: rc %d %s", rc, e.msg);
    unlink(good), unlink(bad), unlink(goodopt);
    free(good), free(bad), free(goodopt);
}

/* F16 tensors and files from PyTorch (no pspkd metadata, or "format": "pt"). */
static void test_foreign(pk_ctx *c, const char *dir, pk_model *a)
{
    char *good = path_in(dir, "good.safetensors"), *alt = path_in(dir, "alt.safetensors");
    randomise(a, 41);
    pk_err e = {0};
    pk_ckpt_meta meta = {.step = 1};
    int rc = pk_checkpoint_save(a, good, &meta, 1, &e);
    PK_CHECK(failures, rc == PK_OK, "save: %s", e.msg);

    const char *pt[] = {"format", "pt", NULL};
    for (int variant = 0; variant < 2; variant++) {
        rewrite(good, alt, edit_drop_optimizer, NULL, 0, variant ? pt : NULL);
        pk_model *b = NULL;
        pk_ckpt_meta got;
        rc = pk_checkpoint_load(&b, c, alt, 0.1f, &got, &e);
        PK_CHECK(failures, rc == PK_OK, "load metadata-free: %s", e.msg);
        if (rc)
            continue;
        const pk_model_cfg *cfg = pk_model_config(b);
        PK_CHECK(failures, cfg->arch == PK_ARCH_R18 && cfg->stem == PK_STEM_7X7 &&
                               cfg->classes == 3,
                 "inferred config %d %d %d", cfg->arch, cfg->stem, cfg->classes);
        PK_CHECK(failures, got.step == 0 && got.frozen == 0 && got.n_extra == 0,
                 "metadata-free meta");
        failures += same_buffers(variant ? "PyTorch-style file (format=pt): inferred config"
                                         : "PyTorch-style file (no metadata): inferred config",
                                 a, b, 0);
        pk_model_destroy(b);
    }

    rewrite(good, alt, edit_to_f16, NULL, 1, NULL);
    pk_model *b = NULL;
    rc = pk_checkpoint_load(&b, c, alt, 0.1f, NULL, &e);
    PK_CHECK(failures, rc == PK_OK, "load F16: %s", e.msg);
    if (!rc) {
        int ok = 1;
        for (int t = 0; t < pk_model_tensor_count(a) && ok; t++) {
            const pk_tensor_info *ti = pk_model_tensor(a, t);
            if (ti->kind != PK_T_PARAM)
                continue;
            for (size_t i = ti->offset; i < ti->offset + ti->count && ok; i++) {
                ok &= pk_model_params(b)[i] ==
                      pk_f16_to_f32(pk_f32_to_f16(pk_model_params(a)[i]));
                ok &= pk_model_momentum(b)[i] ==
                      pk_f16_to_f32(pk_f32_to_f16(pk_model_momentum(a)[i]));
            }
        }
        PK_CHECK(failures, ok, "F16 values are not the rounded F32 ones");
        fprintf(stderr, "  %s F16 file: params and momentum equal the F16-rounded values\n",
                ok ? "ok" : "FAIL");
        pk_model_destroy(b);
    }
    unlink(good), unlink(alt);
    free(good), free(alt);
}

/* The head tensors (ppm/cls/aux) must keep model b's init; the backbone takes
 * a's values. */
static void check_imagenet_split(const char *what, pk_model *a, pk_model *b,
                                 const float *b_params, const float *b_state)
{
    int bad_bb = 0, bad_head = 0, nbb = 0, nhead = 0;
    for (int i = 0; i < pk_model_tensor_count(b); i++) {
        const pk_tensor_info *ti = pk_model_tensor(b, i);
        if (ti->kind == PK_T_NUM_BATCHES)
            continue;
        const float *got = (ti->kind == PK_T_PARAM ? pk_model_params(b) : pk_model_state(b)) +
                           ti->offset;
        const float *want_head = (ti->kind == PK_T_PARAM ? b_params : b_state) + ti->offset;
        const float *want_bb =
            (ti->kind == PK_T_PARAM ? pk_model_params(a) : pk_model_state(a)) + ti->offset;
        if (ti->head) {
            nhead++;
            bad_head += memcmp(got, want_head, ti->count * sizeof(float)) != 0;
        } else {
            nbb++;
            bad_bb += memcmp(got, want_bb, ti->count * sizeof(float)) != 0;
        }
    }
    fprintf(stderr, "  %s %s: %d backbone tensors loaded (%d wrong), %d head tensors kept (%d changed)\n",
            bad_bb || bad_head || !nbb || !nhead ? "FAIL" : "ok", what, nbb, bad_bb, nhead,
            bad_head);
    failures += bad_bb || bad_head || !nbb || !nhead;
}

static void add_fc(const char *path, int with_stray)
{
    pk_err e = {0};
    pk_st_file *f = NULL;
    pk_st_writer *w = pk_st_writer_new();
    if (pk_st_open(&f, path, &e))
        exit(1);
    for (int i = 0; i < pk_st_count(f); i++) {
        const pk_st_tensor *t = pk_st_at(f, i);
        if (pk_st_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &e))
            exit(1);
    }
    float *fc = calloc(1000 * 512, sizeof(float));
    int64_t sw[2] = {1000, 512}, sb[1] = {1000};
    if (pk_st_add(w, "fc.weight", PK_F32, 2, sw, fc, &e) ||
        pk_st_add(w, "fc.bias", PK_F32, 1, sb, fc, &e) ||
        (with_stray && pk_st_add(w, "conv2.weight", PK_F32, 1, sb, fc, &e)) ||
        pk_st_write(w, path, &e))
        exit(1);
    free(fc);
    pk_st_writer_free(w);
    pk_st_close(f);
}

/* a's backbone goes through a torchvision-named file into b. */
static void test_imagenet(const char *dir, pk_model *a, pk_model *b)
{
    char *ck = path_in(dir, "src.safetensors"), *in = path_in(dir, "imagenet.safetensors");
    pk_arch arch = pk_model_config(a)->arch;
    pk_stem stem = pk_model_config(a)->stem;
    randomise(a, 51);
    randomise(b, 52);
    pk_err e = {0};
    int rc = pk_checkpoint_save(a, ck, NULL, 0, &e);
    PK_CHECK(failures, rc == PK_OK, "save: %s", e.msg);
    rewrite(ck, in, edit_to_imagenet, NULL, 0, NULL);
    add_fc(in, 0);
    size_t np = pk_model_num_params(b), ns = pk_model_num_state(b);
    float *bp = malloc(np * sizeof(float)), *bs = malloc(ns * sizeof(float));
    memcpy(bp, pk_model_params(b), np * sizeof(float));
    memcpy(bs, pk_model_state(b), ns * sizeof(float));
    rc = pk_load_imagenet(b, in, &e);
    PK_CHECK(failures, rc == PK_OK, "load_imagenet: %s", e.msg);
    char what[96];
    snprintf(what, sizeof what, "ImageNet init %s %s stem", pk_arch_name(arch),
             pk_stem_name(stem));
    check_imagenet_split(what, a, b, bp, bs);

    /* failures: a missing backbone tensor, a stray name, the other stem */
    pk_model *fresh = b; /* a failed load leaves it untouched; any model will do */
    rewrite(ck, in, edit_to_imagenet, NULL, 0, NULL);
    rewrite(in, in, edit_drop, (void *)"layer4.1.bn2.weight", 0, NULL);
    rc = pk_load_imagenet(fresh, in, &e);
    PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "missing tensor 'layer4.1.bn2.weight'"),
             "ImageNet missing: rc %d %s", rc, e.msg);
    fprintf(stderr, "  ok ImageNet reject missing: \"%s\"\n", e.msg);
    if (stem == PK_STEM_7X7) {
        rewrite(ck, in, edit_to_imagenet, NULL, 0, NULL);
        add_fc(in, 1);
        rc = pk_load_imagenet(fresh, in, &e);
        PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "'conv2.weight'"),
                 "ImageNet stray: rc %d %s", rc, e.msg);
        fprintf(stderr, "  ok ImageNet reject stray: \"%s\"\n", e.msg);
        struct reshape deep_conv1 = {"conv1.weight", 4, {64, 3, 3, 3}, PK_F32};
        rewrite(ck, in, edit_to_imagenet, NULL, 0, NULL);
        rewrite(in, in, edit_reshape, &deep_conv1, 0, NULL);
        rc = pk_load_imagenet(fresh, in, &e);
        PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "'conv1.weight' has shape [64,3,3,3]"),
                 "ImageNet shape: rc %d %s", rc, e.msg);
        fprintf(stderr, "  ok ImageNet reject shape: \"%s\"\n", e.msg);
    }
    free(bp), free(bs);
    unlink(ck), unlink(in);
    free(ck), free(in);
}

/* ResNet50 with the deep stem: arch and stem inferred from a PyTorch-style
 * file; ImageNet init from semseg's resnet names. */
static void test_r50_deep(pk_ctx *c, const char *dir)
{
    char *ck = path_in(dir, "r50.safetensors"), *pt = path_in(dir, "r50pt.safetensors");
    pk_model *a = new_model(c, PK_ARCH_R50, PK_STEM_DEEP, 21);
    randomise(a, 61);
    pk_err e = {0};
    int rc = pk_checkpoint_save(a, ck, NULL, 0, &e);
    PK_CHECK(failures, rc == PK_OK, "save r50: %s", e.msg);
    rewrite(ck, pt, NULL, NULL, 0, NULL);
    pk_model *b = NULL;
    rc = pk_checkpoint_load(&b, c, pt, 0.1f, NULL, &e);
    PK_CHECK(failures, rc == PK_OK, "load r50: %s", e.msg);
    if (!rc) {
        const pk_model_cfg *cfg = pk_model_config(b);
        PK_CHECK(failures, cfg->arch == PK_ARCH_R50 && cfg->stem == PK_STEM_DEEP &&
                               cfg->classes == 21,
                 "r50 inferred config %d %d %d", cfg->arch, cfg->stem, cfg->classes);
        failures += same_buffers("ResNet50 deep stem, metadata-free: inferred config", a, b, 0);
        test_imagenet(dir, a, b);
        pk_model_destroy(b);
    }
    pk_model_destroy(a);
    unlink(ck), unlink(pt);
    free(ck), free(pt);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    /* checkpoints are 60-200 MB: tmpfs keeps the disk (and fsync) out of it */
    struct stat st;
    char dir[64];
    snprintf(dir, sizeof dir, "%s/pspkd-test-ckpt-XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                 ? "/dev/shm"
                 : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    pk_ctx *c = pk_test_ctx(0);
    double t0 = seconds();
    pk_model *a = new_model(c, PK_ARCH_R18, PK_STEM_7X7, 3);
    pk_model *b = new_model(c, PK_ARCH_R18, PK_STEM_7X7, 3);
    test_round_trip(c, dir, a, b);
    test_frozen(dir, a, b);
    test_rejects(c, dir, a);
    test_foreign(c, dir, a);
    test_imagenet(dir, a, b);
    pk_model_destroy(a);
    pk_model_destroy(b);
    double t1 = seconds();
    test_r50_deep(c, dir);
    fprintf(stderr, "  (ResNet18 tests %.1f s, ResNet50 %.1f s)\n", t1 - t0, seconds() - t1);
    pk_ctx_destroy(c);
    if (rmdir(dir) != 0)
        fprintf(stderr, "  note: could not remove %s: %s\n", dir, strerror(errno));
    if (failures)
        fprintf(stderr, "test_checkpoint: %d failure(s)\n", failures);
    return failures != 0;
}
