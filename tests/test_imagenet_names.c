/* --init against files with the exact tensor names and shapes of the
 * ImageNet weights people download: torchvision's resnet18/resnet50
 * state_dict() (also what the Hugging Face timm/resnet18.tv_in1k,
 * timm/resnet50.tv_in1k and timm/resnet50.a1_in1k model.safetensors hold),
 * with and without the BatchNorm counters (num_batches_tracked, I64 []),
 * and semseg's resnet50_v2 (the deep stem: conv1..3 / bn1..3).
 *
 * The names are generated here from torchvision's construction rules, not
 * from pspkd's model table, and the generator is held to torchvision's key
 * counts (resnet18: 122 keys, 102 without counters; resnet50: 320 / 267).
 * Every backbone value must arrive; fc.* is reported as ignored; a file for
 * the other stem or block type, or of another width, is refused naming the
 * tensor. A pspkd model loads too (its backbone; heads and momentum
 * ignored). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "store/safetensors.h"
#include "support.h"

static int failures;

typedef struct gen {
    pk_st_writer *w;
    int keys;
    int counters;       /* write num_batches_tracked */
    unsigned long long seed;
    int widen;          /* layer1.0.conv1 twice as wide (a width mismatch) */
} gen;

static void add(gen *g, const char *name, int ndim, const int64_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    float *v = malloc(n * sizeof *v);
    pk_err e = {0};
    if (!v)
        exit(2);
    pk_test_fill(v, n, g->seed++, 1.0f);
    if (strstr(name, "running_var"))
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] * v[i] + 0.5f;
    if (pk_st_add(g->w, name, PK_F32, ndim, shape, v, &e)) {
        fprintf(stderr, "FAIL add %s: %s\n", name, e.msg);
        exit(2);
    }
    free(v);
    g->keys++;
}

static void conv(gen *g, const char *name, int64_t co, int64_t ci, int64_t k)
{
    char n[128];
    int64_t s[4] = {co, ci, k, k};
    snprintf(n, sizeof n, "%s.weight", name);
    add(g, n, 4, s);
}

static void bn(gen *g, const char *name, int64_t c)
{
    static const char *const part[] = {"weight", "bias", "running_mean", "running_var"};
    char n[128];
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.%s", name, part[i]);
        add(g, n, 1, &c);
    }
    if (g->counters) {
        int64_t count = 12345;
        pk_err e = {0};
        snprintf(n, sizeof n, "%s.num_batches_tracked", name);
        if (pk_st_add(g->w, n, PK_I64, 0, NULL, &count, &e))
            exit(2);
        g->keys++;
    }
}

/* torchvision.models.resnet: conv1 7x7 / bn1 (or semseg's deep stem),
 * layer1..4 of BasicBlock or Bottleneck, downsample.0/.1 where the stride is
 * not 1 or the width changes, fc. */
static void resnet(gen *g, int bottleneck, int deep)
{
    static const int blocks18[4] = {2, 2, 2, 2}, blocks50[4] = {3, 4, 6, 3};
    const int *blocks = bottleneck ? blocks50 : blocks18;
    int exp = bottleneck ? 4 : 1;
    int64_t inplanes = 64;
    if (deep) {
        conv(g, "conv1", 64, 3, 3);
        bn(g, "bn1", 64);
        conv(g, "conv2", 64, 64, 3);
        bn(g, "bn2", 64);
        conv(g, "conv3", 128, 64, 3);
        bn(g, "bn3", 128);
        inplanes = 128;
    } else {
        conv(g, "conv1", 64, 3, 7);
        bn(g, "bn1", 64);
    }
    for (int l = 0; l < 4; l++) {
        int64_t planes = 64 << l;
        int stride = l ? 2 : 1;
        for (int b = 0; b < blocks[l]; b++) {
            char p[64], n[96];
            snprintf(p, sizeof p, "layer%d.%d", l + 1, b);
            int64_t w1 = g->widen && l == 0 && b == 0 ? 2 * planes : planes;
#define NM(s) (snprintf(n, sizeof n, "%s.%s", p, s), n)
            if (bottleneck) {
                conv(g, NM("conv1"), w1, inplanes, 1);
                bn(g, NM("bn1"), planes);
                conv(g, NM("conv2"), planes, planes, 3);
                bn(g, NM("bn2"), planes);
                conv(g, NM("conv3"), planes * 4, planes, 1);
                bn(g, NM("bn3"), planes * 4);
            } else {
                conv(g, NM("conv1"), w1, inplanes, 3);
                bn(g, NM("bn1"), planes);
                conv(g, NM("conv2"), planes, planes, 3);
                bn(g, NM("bn2"), planes);
            }
            if (b == 0 && (stride != 1 || inplanes != planes * exp)) {
                conv(g, NM("downsample.0"), planes * exp, inplanes, 1);
                bn(g, NM("downsample.1"), planes * exp);
            }
#undef NM
            inplanes = planes * exp;
        }
    }
    int64_t fw[2] = {1000, inplanes}, fb[1] = {1000};
    add(g, "fc.weight", 2, fw);
    add(g, "fc.bias", 1, fb);
}

static void write_file(const char *path, int bottleneck, int deep, int counters, int widen)
{
    gen g = {pk_st_writer_new(), 0, counters, 1000, widen};
    pk_err e = {0};
    if (!g.w)
        exit(2);
    resnet(&g, bottleneck, deep);
    int want = bottleneck ? (counters ? 320 : 267) : (counters ? 122 : 102);
    if (deep) /* two more convs and BNs */
        want += counters ? 2 * 6 : 2 * 5;
    PK_CHECK(failures, widen || g.keys == want, "%s: %d keys, torchvision has %d", path,
             g.keys, want);
    if (pk_st_write(g.w, path, &e)) {
        fprintf(stderr, "FAIL write %s: %s\n", path, e.msg);
        exit(2);
    }
    pk_st_writer_free(g.w);
}

/* The ImageNet name of a backbone tensor of the model ("layer0.<i>" -> the
 * stem's module), or NULL for a head tensor. */
static const char *file_name(const char *name, int deep, char *buf, size_t cap)
{
    static const char *const stem[] = {"conv1", "bn1", NULL, "conv2", "bn2", NULL, "conv3", "bn3"};
    if (deep < 0) /* a pspkd file: the backbone under its own names */
        return strncmp(name, "layer", 5) ? NULL : name;
    if (!strncmp(name, "layer0.", 7)) {
        int i = name[7] - '0';
        if ((!deep && i > 1) || !stem[i])
            return NULL;
        snprintf(buf, cap, "%s%s", stem[i], name + 8);
        return buf;
    }
    return strncmp(name, "layer", 5) ? NULL : name;
}

/* Saves the model and compares each backbone tensor with the file's. */
static void check_values(pk_model *m, const char *file, const char *saved, int deep,
                         const char *what)
{
    pk_err e = {0};
    pk_st_file *a = NULL, *b = NULL;
    int rc = pk_checkpoint_save(m, saved, NULL, 0, &e);
    if (!rc)
        rc = pk_st_open(&a, file, &e);
    if (!rc)
        rc = pk_st_open(&b, saved, &e);
    PK_CHECK(failures, rc == PK_OK, "%s: %s", what, e.msg);
    int same = 0, diff = 0;
    for (int i = 0; !rc && i < pk_st_count(b); i++) {
        const pk_st_tensor *t = pk_st_at(b, i);
        char buf[128];
        const char *fn = file_name(t->name, deep, buf, sizeof buf);
        if (!fn || strstr(fn, "num_batches_tracked"))
            continue;
        const pk_st_tensor *s = pk_st_find(a, fn);
        if (s && s->nbytes == t->nbytes && !memcmp(s->data, t->data, t->nbytes))
            same++;
        else
            diff++;
    }
    fprintf(stderr, "  %s %s: %d backbone tensors equal the file's, %d differ\n",
            diff || !same ? "FAIL" : "ok", what, same, diff);
    failures += diff || !same;
    pk_st_close(a);
    pk_st_close(b);
}

static pk_model *model(pk_ctx *c, pk_arch arch, pk_stem stem)
{
    pk_model *m = NULL;
    pk_err e = {0};
    pk_model_cfg cfg = {arch, stem, 21, 0.1f};
    if (pk_model_create(&m, c, &cfg, &e)) {
        fprintf(stderr, "FAIL model: %s\n", e.msg);
        exit(2);
    }
    return m;
}

static void accept(pk_ctx *c, const char *dir, pk_arch arch, pk_stem stem, int counters)
{
    int deep = stem == PK_STEM_DEEP, bottleneck = arch == PK_ARCH_R50;
    char path[512], saved[512], what[128];
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    snprintf(saved, sizeof saved, "%s/saved.safetensors", dir);
    snprintf(what, sizeof what, "%s %s%s", deep ? "semseg resnet50_v2" : "torchvision",
             pk_arch_name(arch), counters ? " with num_batches_tracked" : "");
    write_file(path, bottleneck, deep, counters, 0);
    pk_model *m = model(c, arch, stem);
    pk_imagenet_report rep;
    pk_err e = {0};
    int rc = pk_load_imagenet_report(m, path, &rep, &e);
    int want_loaded = bottleneck ? 265 : 100, bns = bottleneck ? 53 : 20;
    if (deep)
        want_loaded += 10, bns += 2;
    PK_CHECK(failures, rc == PK_OK, "%s: %s", what, e.msg);
    PK_CHECK(failures,
             !rc && rep.loaded == want_loaded && rep.ignored == 2 &&
                 !strcmp(rep.ignored_names, "fc.weight, fc.bias") &&
                 rep.counters == (counters ? bns : 0),
             "%s: loaded %d (want %d), ignored %d '%s', counters %d", what, rep.loaded,
             want_loaded, rep.ignored, rep.ignored_names, rep.counters);
    fprintf(stderr, "  ok %s: loaded %d tensors (%.2fM values), ignored %s, %d counters\n",
            what, rep.loaded, rep.loaded_floats / 1e6, rep.ignored_names, rep.counters);
    if (!rc)
        check_values(m, path, saved, deep, what);
    pk_model_destroy(m);
    unlink(path);
    unlink(saved);
}

static void refuse(pk_ctx *c, const char *dir, const char *what, pk_arch arch, pk_stem stem,
                   int file_bottleneck, int file_deep, int widen, const char *want)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    write_file(path, file_bottleneck, file_deep, 0, widen);
    pk_model *m = model(c, arch, stem);
    pk_err e = {0};
    int rc = pk_load_imagenet_report(m, path, NULL, &e);
    int ok = rc == PK_EFORMAT && strstr(e.msg, want);
    fprintf(stderr, "  %s refuse %s: \"%s\"\n", ok ? "ok" : "FAIL", what, e.msg);
    failures += !ok;
    pk_model_destroy(m);
    unlink(path);
}

/* A pspkd model as --init (pretraining on other data): a checkpoint with
 * optimiser state and 21 classes starts a 5-class model. Every backbone
 * tensor arrives under its own name; the heads and the momentum are
 * ignored (the 5-class heads could not take the 21-class ones). */
static void from_pspkd(pk_ctx *c, const char *dir, pk_arch arch, pk_stem stem)
{
    char path[512], saved[512], what[128];
    snprintf(path, sizeof path, "%s/pspkd.safetensors", dir);
    snprintf(saved, sizeof saved, "%s/saved.safetensors", dir);
    snprintf(what, sizeof what, "pspkd %s (%s stem)", pk_arch_name(arch), pk_stem_name(stem));
    pk_model *src = model(c, arch, stem);
    pk_test_fill(pk_model_params(src), pk_model_num_params(src), 7, 0.5f);
    pk_err e = {0};
    int rc = pk_checkpoint_save(src, path, NULL, 1, &e);
    pk_model_destroy(src);
    pk_model *m = NULL;
    pk_model_cfg cfg = {arch, stem, 5, 0.1f};
    if (!rc)
        rc = pk_model_create(&m, c, &cfg, &e);
    pk_imagenet_report rep;
    if (!rc)
        rc = pk_load_imagenet_report(m, path, &rep, &e);
    int want = (arch == PK_ARCH_R50 ? 265 : 100) + (stem == PK_STEM_DEEP ? 10 : 0);
    PK_CHECK(failures, rc == PK_OK, "%s: %s", what, e.msg);
    PK_CHECK(failures,
             !rc && rep.loaded == want && rep.ignored > 0 &&
                 !strncmp(rep.ignored_names, "ppm.", 4) && strstr(rep.ignored_names, ", ..."),
             "%s: loaded %d (want %d), ignored %d '%s'", what, rep.loaded, want, rep.ignored,
             rep.ignored_names);
    fprintf(stderr, "  ok %s: loaded %d tensors, ignored %d (heads, momentum)\n", what,
            rep.loaded, rep.ignored);
    if (!rc) /* identity names: file_name's "deep" mapping does not apply */
        check_values(m, path, saved, -1, what);
    pk_model_destroy(m);
    unlink(path);
    unlink(saved);
}

int main(void)
{
    char dir[] = "/dev/shm/pspkd-test-names-XXXXXX";
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof dir, "/tmp/pspkd-test-names-XXXXXX");
        if (!mkdtemp(dir))
            return 2;
    }
    pk_ctx *c = pk_test_ctx(1);
    accept(c, dir, PK_ARCH_R18, PK_STEM_7X7, 0);
    accept(c, dir, PK_ARCH_R18, PK_STEM_7X7, 1);
    accept(c, dir, PK_ARCH_R50, PK_STEM_7X7, 0);
    accept(c, dir, PK_ARCH_R50, PK_STEM_7X7, 1);
    accept(c, dir, PK_ARCH_R50, PK_STEM_DEEP, 1);
    refuse(c, dir, "resnet50 file, resnet18 model", PK_ARCH_R18, PK_STEM_7X7, 1, 0, 0,
           "'layer1.0.conv3.weight' is present: the file is a bottleneck");
    refuse(c, dir, "resnet18 file, resnet50 model", PK_ARCH_R50, PK_STEM_7X7, 0, 0, 0,
           "'layer1.0.conv3.weight' is absent: the file is a basic-block");
    refuse(c, dir, "7x7 file, deep-stem model", PK_ARCH_R50, PK_STEM_DEEP, 1, 0, 0,
           "'conv1.weight' has shape [64,3,7,7]: torchvision's 7x7 stem");
    refuse(c, dir, "deep file, 7x7 model", PK_ARCH_R50, PK_STEM_7X7, 1, 1, 0,
           "'conv1.weight' has shape [64,3,3,3]: semseg's deep stem");
    refuse(c, dir, "wider layer1.0.conv1", PK_ARCH_R18, PK_STEM_7X7, 0, 0, 1,
           "'layer1.0.conv1.weight' has shape [128,64,3,3]");
    from_pspkd(c, dir, PK_ARCH_R50, PK_STEM_DEEP);
    from_pspkd(c, dir, PK_ARCH_R18, PK_STEM_7X7);
    pk_ctx_destroy(c);
    rmdir(dir);
    if (failures)
        fprintf(stderr, "test_imagenet_names: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
