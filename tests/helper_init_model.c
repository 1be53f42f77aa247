/* helper_init_model: what --init does, alone: a fresh PSPNet (initialised
 * from SEED), its backbone loaded from the ImageNet file IN by
 * pk_load_imagenet_report, written frozen to OUT, with the report on
 * stdout. pth2safetensors.bats uses it to check a converted .pth end to end
 * against PyTorch without a training step changing the running statistics.
 * usage: helper_init_model ARCH STEM CLASSES SEED IN OUT */
#include <stdio.h>
#include <stdlib.h>
#include "model/checkpoint.h"

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: helper_init_model ARCH STEM CLASSES SEED IN OUT\n");
        return 2;
    }
    pk_model_cfg cfg = {.classes = atoi(argv[3]), .dropout = 0.1f};
    if (pk_arch_parse(argv[1], &cfg.arch) || pk_stem_parse(argv[2], &cfg.stem)) {
        fprintf(stderr, "helper_init_model: bad arch or stem\n");
        return 2;
    }
    pk_err e = {0};
    pk_ctx_opts co = {.device = PK_DEV_CPU, .threads = 1};
    pk_ctx *c = NULL;
    pk_model *m = NULL;
    pk_imagenet_report rep;
    pk_ckpt_meta meta = {.frozen = 1};
    int rc = pk_ctx_create(&c, &co, &e);
    if (!rc)
        rc = pk_model_create(&m, c, &cfg, &e);
    if (!rc)
        rc = pk_model_init(m, strtoull(argv[4], NULL, 10), &e);
    if (!rc)
        rc = pk_load_imagenet_report(m, argv[5], &rep, &e);
    if (!rc)
        rc = pk_checkpoint_save(m, argv[6], &meta, 0, &e);
    if (!rc)
        printf("loaded %d ignored %d (%s) counters %d\n", rep.loaded, rep.ignored,
               rep.ignored_names, rep.counters);
    else
        fprintf(stderr, "helper_init_model: %s\n", e.msg);
    pk_model_destroy(m);
    pk_ctx_destroy(c);
    return rc ? 1 : 0;
}
