/* Data-parallel training pieces of the model: see pk_model_set_comm in
 * pspnet.h. The exec (SyncBN, dropout offsets) and the training step
 * (counts, losses, gradient sum) call these. */
#include "model/pspnet_impl.h"

#include <stdlib.h>

int pk_model_set_comm(pk_model *m, pk_comm *comm, long first_sample, pk_err *e)
{
    if (first_sample < 0)
        return pk_fail(e, PK_EINVAL, "model: negative first sample %ld", first_sample);
    if (pk_comm_size(comm) > 1 && pk_ctx_device(m->ctx) != PK_DEV_CPU)
        return pk_fail(e, PK_EINVAL,
                       "data-parallel training runs on the CPU only for now (no CUDA SyncBN); "
                       "use --device cpu");
    m->comm = comm;
    m->sample0 = first_sample;
    return PK_OK;
}

pk_comm *pk_model_comm(const pk_model *m) { return m->comm; }

int pk_dist_active(const pk_model *m) { return pk_comm_size(m->comm) > 1; }

int pk_dist_counts(pk_model *m, const pk_batch *b, int ignore, double local[2],
                   double global[2], pk_err *e)
{
    long P = (long)b->n * b->h * b->w, nce = 0, nkd = 0;
    int K = m->cfg.classes;
    const uint8_t *lab = b->label, *val = b->valid;
    uint8_t *host = NULL;
    if (pk_ctx_device(m->ctx) != PK_DEV_CPU) { /* the labels and mask live on the device */
        if (!(host = malloc(2 * (size_t)P)))
            return pk_fail(e, PK_ENOMEM, "out of memory for the loss counts");
        pk_dev_download(m->ctx, host, b->label, (size_t)P);
        if (b->valid)
            pk_dev_download(m->ctx, host + P, b->valid, (size_t)P);
        lab = host;
        val = b->valid ? host + P : NULL;
    }
    for (long p = 0; p < P; p++) { /* as the losses count them (ops/loss.c) */
        nce += (int)lab[p] != ignore && (int)lab[p] < K;
        nkd += !val || val[p] != 0;
    }
    free(host);
    global[0] = local[0] = (double)nce;
    global[1] = local[1] = (double)nkd;
    int rc = pk_comm_allreduce_f64(m->comm, global, 2, e);
    return rc ? pk_wrap(e, "loss counts") : PK_OK;
}

int pk_dist_losses(pk_model *m, pk_losses *l, const double local[2], const double global[2],
                   pk_err *e)
{
    double v[4] = {(double)l->ce * local[0], (double)l->aux_ce * local[0],
                   (double)l->kd * local[1], (double)l->aux_kd * local[1]};
    int rc = pk_comm_allreduce_f64(m->comm, v, 4, e);
    if (rc)
        return pk_wrap(e, "losses");
    l->ce = global[0] > 0 ? (float)(v[0] / global[0]) : 0.0f;
    l->aux_ce = global[0] > 0 ? (float)(v[1] / global[0]) : 0.0f;
    l->kd = global[1] > 0 ? (float)(v[2] / global[1]) : 0.0f;
    l->aux_kd = global[1] > 0 ? (float)(v[3] / global[1]) : 0.0f;
    return PK_OK;
}

int pk_dist_allreduce_grads(pk_model *m, pk_err *e)
{
    /* One allreduce of the whole buffer after the backward (not bucketed,
     * not overlapped with it). */
    int rc = pk_comm_allreduce_f32(m->comm, m->grads, m->nparams, e);
    return rc ? pk_wrap(e, "gradient allreduce") : PK_OK;
}
