/* The logits cache as the loader's extra planes: see logits_extra.h. */
#include "data/logits_extra.h"

int pk_logits_extra_fn(void *user, const char *key, int img_w, int img_h,
                       pk_extra_planes *out, pk_err *e)
{
    pk_logits_cache *c = user;
    int k = pk_logits_cache_meta(c)->classes;
    pk_logits_geom g;
    pk_logits_geom_init(&g, img_w, img_h);
    float *main_logits = pk_extra_planes_alloc(out, 0, g.grid_h, g.grid_w, k, e);
    if (!main_logits)
        return e ? e->code : PK_ENOMEM;
    float *aux_logits = pk_extra_planes_alloc(out, 1, g.grid_h, g.grid_w, k, e);
    if (!aux_logits)
        return e ? e->code : PK_ENOMEM;
    int rc = pk_logits_cache_get(c, key, img_w, img_h, main_logits, aux_logits, &g, e);
    if (rc)
        return rc;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 6; j++)
            out->set[i].m[j] = g.m[j];
    out->n = 2;
    return PK_OK;
}
