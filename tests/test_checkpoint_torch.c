/* Checkpoints against PyTorch (tests/fixtures/checkpoint_torch.safetensors,
 * written by tests/fixtures/gen_checkpoint.py):
 *  - save: a model holding the formula weights (tests/support_model.h) is
 *    saved, and every tensor in the file must equal the formula evaluated
 *    in PyTorch's layout (OIHW), i.e. what PSPNet.state_dict() holds;
 *  - load: a state_dict-shaped file written straight from the formula, with
 *    no pspkd metadata (as PyTorch's safetensors package writes one), loads
 *    with arch/stem/classes inferred and gives PyTorch's eval logits.
 * With arguments it is the helper the fixture script drives (usage()). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "store/safetensors.h"
#include "support.h"
#include "support_model.h"

#define FIXTURE "tests/fixtures/checkpoint_torch.safetensors"
#define TOL 1e-4

static int failures;

static _Noreturn void die(const char *what, const pk_err *e)
{
    fprintf(stderr, "test_checkpoint_torch: %s: %s\n", what, e->msg);
    exit(1);
}

static pk_model *new_model(pk_ctx *c, const char *arch, const char *stem, int classes)
{
    pk_model *m = NULL;
    pk_err e = {0};
    pk_model_cfg cfg = {.classes = classes, .dropout = 0.1f};
    if (pk_arch_parse(arch, &cfg.arch) || pk_stem_parse(stem, &cfg.stem)) {
        fprintf(stderr, "test_checkpoint_torch: bad arch/stem %s/%s\n", arch, stem);
        exit(2);
    }
    if (pk_model_create(&m, c, &cfg, &e))
        die("pk_model_create", &e);
    return m;
}

/* The formula's range for a state_dict tensor (see support_model.h). */
static void formula_range(const pk_tensor_info *t, double *lo, double *hi)
{
    const char *leaf = strrchr(t->name, '.') + 1;
    if (t->ndim == 4) {
        double a = sqrt(3.0 / (double)(t->shape[1] * t->shape[2] * t->shape[3]));
        *lo = -a, *hi = a;
    } else if (!strcmp(leaf, "weight")) {
        *lo = 0.75, *hi = 1.25;
    } else if (!strcmp(leaf, "running_var")) {
        *lo = 0.5, *hi = 1.5;
    } else {
        *lo = -0.1, *hi = 0.1;
    }
}

/* The state_dict as PyTorch would save it with the formula weights, written
 * without any metadata: tensor table names and shapes, values in OIHW. */
static void write_formula_state_dict(const pk_model *m, const char *path)
{
    pk_err e = {0};
    pk_st_writer *w = pk_st_writer_new();
    int64_t zero = 0;
    for (int k = 0; k < pk_model_tensor_count(m); k++) {
        const pk_tensor_info *t = pk_model_tensor(m, k);
        int rc;
        if (t->kind == PK_T_NUM_BATCHES) {
            rc = pk_st_add(w, t->name, PK_I64, 0, NULL, &zero, &e);
        } else {
            double lo, hi;
            formula_range(t, &lo, &hi);
            float *v = malloc(t->count * sizeof *v);
            pk_test_formula_fill(v, t->count, (uint64_t)k + 1, lo, hi);
            rc = pk_st_add(w, t->name, PK_F32, t->ndim, t->shape, v, &e);
            free(v);
        }
        if (rc)
            die("write state_dict", &e);
    }
    if (pk_st_write(w, path, &e))
        die("write state_dict", &e);
    pk_st_writer_free(w);
}

/* Every model tensor in the saved file equals the formula in PyTorch order. */
static void check_saved_layout(pk_ctx *c, const char *arch, const char *stem, int K,
                               const char *path)
{
    pk_model *m = new_model(c, arch, stem, K);
    pk_err e = {0};
    if (pk_test_model_fill(m, 0))
        exit(1);
    pk_ckpt_meta meta = {.frozen = 1};
    if (pk_checkpoint_save(m, path, &meta, 0, &e))
        die("save", &e);
    pk_st_file *f = NULL;
    if (pk_st_open(&f, path, &e))
        die("open", &e);
    int bad = 0, n = 0;
    for (int k = 0; k < pk_model_tensor_count(m); k++) {
        const pk_tensor_info *t = pk_model_tensor(m, k);
        const pk_st_tensor *ft = pk_st_find(f, t->name);
        if (!ft || t->kind == PK_T_NUM_BATCHES) {
            bad += !ft;
            continue;
        }
        double lo, hi;
        formula_range(t, &lo, &hi);
        float *want = malloc(t->count * sizeof *want);
        pk_test_formula_fill(want, t->count, (uint64_t)k + 1, lo, hi);
        if (ft->dtype != PK_F32 || ft->numel != t->count ||
            memcmp(ft->data, want, t->count * sizeof(float))) {
            if (bad < 3)
                fprintf(stderr, "  FAIL %s: saved tensor differs from PyTorch's layout\n",
                        t->name);
            bad++;
        }
        n++;
        free(want);
    }
    fprintf(stderr, "  %s save %s %s: %d tensors equal PyTorch's state_dict (OIHW) exactly\n",
            bad ? "FAIL" : "ok", arch, stem, n);
    failures += bad != 0;
    pk_st_close(f);
    pk_model_destroy(m);
}

static const pk_st_tensor *need(const pk_st_file *f, const char *name)
{
    const pk_st_tensor *t = pk_st_find(f, name);
    if (!t || t->dtype != PK_F32) {
        fprintf(stderr, "test_checkpoint_torch: fixture lacks F32 '%s'\n", name);
        exit(1);
    }
    return t;
}

/* m's eval logits of the [n, h, w, 3] image tensor at its resolution: *main
 * and *aux receive malloc'd [n, h, w, K] floats. */
static void infer_image(pk_model *m, const pk_st_tensor *img, float **main, float **aux)
{
    int n = (int)img->shape[0], h = (int)img->shape[1], w = (int)img->shape[2];
    size_t nout = (size_t)n * h * w * pk_model_config(m)->classes;
    float *image = malloc(img->numel * sizeof *image);
    *main = malloc(nout * sizeof **main);
    *aux = malloc(nout * sizeof **aux);
    memcpy(image, img->data, img->numel * sizeof *image);
    pk_err e = {0};
    if (pk_model_infer(m, *main, *aux, image, n, h, w, 1, &e))
        die("infer", &e);
    free(image);
}

/* A PyTorch-style file loads (config inferred) and gives PyTorch's logits. */
static void check_load_logits(pk_ctx *c, const pk_st_file *fx, const char *arch,
                              const char *stem, int K, const char *path)
{
    char key[96];
    snprintf(key, sizeof key, "%s_%s.image", arch, stem);
    const pk_st_tensor *img = need(fx, key);
    snprintf(key, sizeof key, "%s_%s.main", arch, stem);
    const pk_st_tensor *want_main = need(fx, key);
    snprintf(key, sizeof key, "%s_%s.aux", arch, stem);
    const pk_st_tensor *want_aux = need(fx, key);
    int n = (int)img->shape[0], h = (int)img->shape[1], w = (int)img->shape[2];

    pk_model *shape_only = new_model(c, arch, stem, K);
    write_formula_state_dict(shape_only, path);
    pk_model_destroy(shape_only);

    pk_model *m = NULL;
    pk_err e = {0};
    if (pk_checkpoint_load(&m, c, path, 0.1f, NULL, &e))
        die("load PyTorch-style file", &e);
    const pk_model_cfg *cfg = pk_model_config(m);
    PK_CHECK(failures, !strcmp(pk_arch_name(cfg->arch), arch) &&
                           !strcmp(pk_stem_name(cfg->stem), stem) && cfg->classes == K,
             "inferred %s %s %d", pk_arch_name(cfg->arch), pk_stem_name(cfg->stem),
             cfg->classes);
    size_t nout = (size_t)n * h * w * K;
    float *main, *aux;
    infer_image(m, img, &main, &aux);
    char what[128];
    snprintf(what, sizeof what, "load %s %s state_dict file: main logits vs PyTorch", arch,
             stem);
    failures += pk_check_close(what, main, want_main->data, nout, TOL);
    snprintf(what, sizeof what, "load %s %s state_dict file: aux logits vs PyTorch", arch,
             stem);
    failures += pk_check_close(what, aux, want_aux->data, nout, TOL);
    free(main), free(aux);
    pk_model_destroy(m);
}

/* ---- helper modes for gen_checkpoint.py ---- */

static int usage(void)
{
    fprintf(stderr,
            "usage: test_checkpoint_torch                      run the tests\n"
            "       test_checkpoint_torch --trained ARCH STEM K OUT\n"
            "           formula weights, 2 SGD steps (batch 2, 33x33), saved with optimizer\n"
            "       test_checkpoint_torch --logits CKPT IMAGE OUT\n"
            "           loads CKPT, eval logits of IMAGE's 'image' [n,h,w,3] -> OUT main/aux\n");
    return 2;
}

static int mode_trained(pk_ctx *c, const char *arch, const char *stem, int K, const char *out)
{
    pk_model *m = new_model(c, arch, stem, K);
    pk_err e = {0};
    if (pk_test_model_fill(m, 0))
        return 1;
    int n = 2, h = 33, w = 33;
    size_t pix = (size_t)n * h * w;
    float *img = malloc(pix * 3 * sizeof *img);
    uint8_t *lab = malloc(pix);
    pk_test_formula_fill(img, pix * 3, 200001, -2.0, 2.0);
    pk_test_formula_labels(lab, pix, 200002, K);
    pk_train_cfg t;
    pk_train_cfg_defaults(&t);
    t.max_iter = 10;
    pk_batch b = {.n = n, .h = h, .w = w, .image = img, .label = lab};
    pk_losses l;
    for (long it = 0; it < 2; it++)
        if (pk_model_train_step(m, &b, &t, it, &l, &e))
            die("train step", &e);
    pk_ckpt_meta meta = {.step = 2};
    pk_ckpt_meta_set(&meta, "seed", "200001");
    if (pk_checkpoint_save(m, out, &meta, 1, &e))
        die("save", &e);
    free(img), free(lab);
    pk_model_destroy(m);
    return 0;
}

static int mode_logits(pk_ctx *c, const char *ckpt, const char *image_path, const char *out)
{
    pk_err e = {0};
    pk_model *m = NULL;
    pk_st_file *f = NULL;
    if (pk_checkpoint_load(&m, c, ckpt, 0.1f, NULL, &e))
        die("load", &e);
    if (pk_st_open(&f, image_path, &e))
        die("open image", &e);
    const pk_st_tensor *img = need(f, "image");
    int n = (int)img->shape[0], h = (int)img->shape[1], w = (int)img->shape[2];
    float *main, *aux;
    infer_image(m, img, &main, &aux);
    int64_t shape[4] = {n, h, w, pk_model_config(m)->classes};
    pk_st_writer *wr = pk_st_writer_new();
    if (pk_st_add(wr, "main", PK_F32, 4, shape, main, &e) ||
        pk_st_add(wr, "aux", PK_F32, 4, shape, aux, &e) || pk_st_write(wr, out, &e))
        die("write logits", &e);
    pk_st_writer_free(wr);
    pk_st_close(f);
    free(main), free(aux);
    pk_model_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    pk_ctx *c = pk_test_ctx(0);
    int rc;
    if (argc == 6 && !strcmp(argv[1], "--trained")) {
        rc = mode_trained(c, argv[2], argv[3], atoi(argv[4]), argv[5]);
    } else if (argc == 5 && !strcmp(argv[1], "--logits")) {
        rc = mode_logits(c, argv[2], argv[3], argv[4]);
    } else if (argc > 1) {
        rc = usage();
    } else {
        char dir[] = "/tmp/pspkd-test-ckpt-torch-XXXXXX";
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        char path[sizeof dir + 32];
        snprintf(path, sizeof path, "%s/sd.safetensors", dir);
        pk_st_file *fx = NULL;
        pk_err e = {0};
        if (pk_st_open(&fx, FIXTURE, &e))
            die("fixture (run from the repository root)", &e);
        const char *models = pk_st_meta(fx, "models"); /* "resnet18:7x7:5,..." */
        char list[256];
        snprintf(list, sizeof list, "%s", models ? models : "");
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            char arch[32], stem[32];
            int K;
            if (sscanf(tok, "%31[^:]:%31[^:]:%d", arch, stem, &K) != 3) {
                fprintf(stderr, "test_checkpoint_torch: bad models entry '%s'\n", tok);
                return 1;
            }
            check_saved_layout(c, arch, stem, K, path);
            check_load_logits(c, fx, arch, stem, K, path);
            unlink(path);
        }
        PK_CHECK(failures, models != NULL, "fixture has no 'models' metadata");
        pk_st_close(fx);
        if (rmdir(dir) != 0)
            fprintf(stderr, "  note: could not remove %s: %s\n", dir, strerror(errno));
        if (failures)
            fprintf(stderr, "test_checkpoint_torch: %d failure(s)\n", failures);
        rc = failures != 0;
    }
    pk_ctx_destroy(c);
    return rc;
}
