/* The training data loader (see loader.h for the order and determinism
 * contract).
 *
 * Work is handed out one sample at a time, in iteration order, under one
 * mutex: a worker claims (iteration, position), waits until the ring slot
 * of that iteration has been released by the trainer, then reads, decodes
 * and augments straight into the slot. The trainer waits for its slot to
 * be complete and releases it on the next call. Since a worker holds one
 * claim at a time and claims in order, the oldest iteration always
 * completes: no deadlock. */
#include "data/loader.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/pack.h"

#define SHUFFLE_SALT 0x5348554646ULL /* keeps the epoch order apart from the augment draws */

typedef struct slot {
    long iter; /* the iteration this slot is released for / holds */
    int n, filled;
    int rc, err_pos; /* first failure, by sample position (deterministic message) */
    pk_err err;
    float *image, *extra;
    uint8_t *label, *valid;
    int *record;
} slot;

typedef struct worker {
    pk_loader *ld;
    pthread_t tid;
    pk_pack_reader *rd;
    pk_aug_ws ws;
    uint8_t *rgb; /* JPEG decode buffer */
    size_t rgb_cap;
    pk_extra_planes planes;
} worker;

struct pk_loader {
    pk_loader_opts o;
    pk_pack *pack;
    int count;
    long ipe; /* iterations per epoch */
    int nslots, nworkers, started;
    slot *slots;
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int stop;
    long claim_it; /* next sample to hand out: (claim_it, claim_pos) */
    int claim_pos;
    long perm_epoch; /* epoch whose order is in perm */
    int *perm;
    long cur_it; /* the iteration the trainer holds or waits for */
    int held;
    int failed_rc;
    pk_err failed;
    pk_loader_batch batch;
};

float *pk_extra_planes_alloc(pk_extra_planes *p, int i, int h, int w, int c, pk_err *e)
{
    if (i < 0 || i >= PK_EXTRA_SETS_MAX || h < 1 || w < 1 || c < 1) {
        pk_fail(e, PK_EINVAL, "extra planes: set %d of %dx%dx%d invalid", i, w, h, c);
        return NULL;
    }
    size_t need = (size_t)h * w * c;
    if (p->cap[i] < need) {
        float *nb = realloc(p->store[i], need * sizeof *nb);
        if (!nb) {
            pk_fail(e, PK_ENOMEM, "extra planes: no memory for %zu floats", need);
            return NULL;
        }
        p->store[i] = nb;
        p->cap[i] = need;
    }
    pk_plane_set *s = &p->set[i];
    s->data = p->store[i];
    s->h = h;
    s->w = w;
    s->c = c;
    return p->store[i];
}

void pk_extra_planes_free(pk_extra_planes *p)
{
    for (int i = 0; i < PK_EXTRA_SETS_MAX; i++) {
        free(p->store[i]);
        p->store[i] = NULL;
        p->cap[i] = 0;
    }
}

static long batch_size(const pk_loader *ld, long it)
{
    if (ld->o.part_len) /* drop_last: every batch is whole, the share too */
        return ld->o.part_len;
    long b = it % ld->ipe, rest = ld->count - b * ld->o.batch;
    return rest < ld->o.batch ? rest : ld->o.batch;
}

static void make_perm(pk_loader *ld, long epoch)
{
    for (int i = 0; i < ld->count; i++)
        ld->perm[i] = i;
    if (ld->o.shuffle) {
        pk_rng r = pk_rng_seed(pk_hash64(pk_hash64(ld->o.seed ^ SHUFFLE_SALT) ^ (uint64_t)epoch));
        for (int i = ld->count - 1; i > 0; i--) {
            int j = (int)pk_rng_below(&r, (uint32_t)i + 1);
            int t = ld->perm[i];
            ld->perm[i] = ld->perm[j];
            ld->perm[j] = t;
        }
    }
    ld->perm_epoch = epoch;
}

/* Reads, decodes and augments record `rec` into position pos of s. */
static int load_sample(worker *w, int rec, long epoch, slot *s, int pos, pk_err *e)
{
    pk_loader *ld = w->ld;
    const pk_loader_opts *o = &ld->o;
    const void *val;
    size_t len;
    pk_record_view rv;
    const pk_meta *meta = pk_pack_meta(ld->pack);
    int rc = pk_pack_read(w->rd, rec, &val, &len, e);
    if (!rc)
        rc = pk_record_parse(&rv, val, len, e);
    if (!rc && meta) /* a label >= classes is an error, not "ignore" */
        rc = pk_record_check_labels(&rv, meta->classes, e);
    if (rc)
        return rc;
    int iw = rv.hdr.width, ih = rv.hdr.height;
    const uint8_t *rgb = rv.image;
    if (rv.hdr.image_enc != PK_IMG_RGB8) {
        size_t need = (size_t)iw * ih * 3;
        if (w->rgb_cap < need) {
            uint8_t *nb = realloc(w->rgb, need);
            if (!nb)
                return pk_fail(e, PK_ENOMEM, "no memory to decode %dx%d", iw, ih);
            w->rgb = nb;
            w->rgb_cap = need;
        }
        rc = pk_record_image_into(w->rgb, &rv, e);
        if (rc)
            return rc;
        rgb = w->rgb;
    }
    size_t px = (size_t)o->aug.crop_h * o->aug.crop_w;
    pk_plane_set sets[PK_EXTRA_SETS_MAX];
    int nsets = 0;
    if (o->extra_fn) {
        w->planes.n = 0;
        rc = o->extra_fn(o->extra_user, pk_pack_key(ld->pack, rec), iw, ih, &w->planes, e);
        if (rc)
            return rc;
        nsets = w->planes.n;
        if (nsets < 1 || nsets > PK_EXTRA_SETS_MAX)
            return pk_fail(e, PK_EFORMAT, "extra planes: %d sets (1..%d)", nsets,
                           PK_EXTRA_SETS_MAX);
        int off = 0, cx = o->extra_channels;
        for (int i = 0; i < nsets; i++) {
            sets[i] = w->planes.set[i];
            if (sets[i].c < 1 || off + sets[i].c > cx)
                return pk_fail(e, PK_EFORMAT, "extra planes exceed the %d channels expected",
                               cx);
            sets[i].out = s->extra + (size_t)pos * px * cx + off;
            sets[i].out_stride = cx;
            off += sets[i].c;
        }
        if (off != cx)
            return pk_fail(e, PK_EFORMAT, "extra planes have %d channels, expected %d", off,
                           cx);
    }
    pk_aug_params p;
    pk_rng r = pk_rng_seed(pk_aug_sample_seed(o->seed, (uint64_t)epoch, (uint64_t)rec));
    pk_aug_draw(&p, &o->aug, iw, ih, &r);
    return pk_augment(&o->aug, &p, rgb, rv.label, iw, ih, sets, nsets,
                      s->image + (size_t)pos * px * 3, s->label + (size_t)pos * px,
                      s->valid + (size_t)pos * px, &w->ws, e);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pk_loader *ld = w->ld;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->stop && ld->o.end_iter > 0 && ld->claim_it >= ld->o.end_iter)
            pthread_cond_wait(&ld->cv_work, &ld->mu);
        if (ld->stop)
            break;
        long it = ld->claim_it, epoch = it / ld->ipe;
        int pos = ld->claim_pos;
        if (epoch != ld->perm_epoch)
            make_perm(ld, epoch);
        int rec = ld->perm[(it % ld->ipe) * ld->o.batch + ld->o.part_off + pos];
        if (pos + 1 == batch_size(ld, it)) {
            ld->claim_it++;
            ld->claim_pos = 0;
        } else {
            ld->claim_pos++;
        }
        slot *s = &ld->slots[it % ld->nslots];
        while (!ld->stop && s->iter != it)
            pthread_cond_wait(&ld->cv_work, &ld->mu);
        if (ld->stop)
            break;
        pthread_mutex_unlock(&ld->mu);

        pk_err e = {0};
        int rc = load_sample(w, rec, epoch, s, pos, &e);
        if (rc)
            pk_wrap(&e, "%s", pk_pack_key(ld->pack, rec));

        pthread_mutex_lock(&ld->mu);
        s->record[pos] = rec;
        if (rc && pos < s->err_pos) {
            s->rc = rc;
            s->err_pos = pos;
            s->err = e;
        }
        if (++s->filled == s->n)
            pthread_cond_broadcast(&ld->cv_ready);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void slot_release_to(pk_loader *ld, slot *s, long it)
{
    s->iter = it;
    s->n = (int)batch_size(ld, it);
    s->filled = 0;
    s->rc = 0;
    s->err_pos = INT_MAX;
}

static int check_opts(const pk_loader_opts *o, pk_err *e)
{
    if (!o->pack || !o->pack[0])
        return pk_fail(e, PK_EINVAL, "loader: no pack given");
    if (o->batch < 1 || o->batch > 65536)
        return pk_fail(e, PK_EINVAL, "loader: batch %d out of range", o->batch);
    if (o->threads < 1 || o->threads > 256)
        return pk_fail(e, PK_EINVAL, "loader: threads %d out of range (1..256)", o->threads);
    if (o->slots < 0 || o->slots == 1 || o->slots > 64)
        return pk_fail(e, PK_EINVAL, "loader: slots %d out of range (2..64)", o->slots);
    if (o->part_len && (o->part_len < 0 || o->part_off < 0 || !o->drop_last ||
                        o->part_off + o->part_len > o->batch))
        return pk_fail(e, PK_EINVAL, "loader: share [%d, +%d) of a batch of %d invalid%s",
                       o->part_off, o->part_len, o->batch, o->drop_last ? "" : " (no drop_last)");
    if (o->start_iter < 0 || o->end_iter < 0)
        return pk_fail(e, PK_EINVAL, "loader: negative start/end iteration");
    if (o->extra_fn && (o->extra_channels < 1 || o->extra_channels > 4096))
        return pk_fail(e, PK_EINVAL, "loader: extra_channels %d out of range",
                       o->extra_channels);
    return pk_aug_opts_check(&o->aug, e);
}

static int alloc_slots(pk_loader *ld, pk_err *e)
{
    size_t px = (size_t)ld->o.aug.crop_h * ld->o.aug.crop_w;
    size_t b = (size_t)(ld->o.part_len ? ld->o.part_len : ld->o.batch);
    int cx = ld->o.extra_fn ? ld->o.extra_channels : 0;
    ld->slots = calloc((size_t)ld->nslots, sizeof *ld->slots);
    if (!ld->slots)
        return pk_fail(e, PK_ENOMEM, "loader: no memory for the batch ring");
    for (int i = 0; i < ld->nslots; i++) {
        slot *s = &ld->slots[i];
        s->image = malloc(b * px * 3 * sizeof(float));
        s->label = malloc(b * px);
        s->valid = malloc(b * px);
        s->record = malloc(b * sizeof(int));
        s->extra = cx ? malloc(b * px * (size_t)cx * sizeof(float)) : NULL;
        if (!s->image || !s->label || !s->valid || !s->record || (cx && !s->extra))
            return pk_fail(e, PK_ENOMEM, "loader: no memory for %d batches of %zu crops",
                           ld->nslots, b);
    }
    for (long t = 0; t < ld->nslots; t++) { /* S consecutive iterations cover every slot */
        long it = ld->o.start_iter + t;
        slot_release_to(ld, &ld->slots[it % ld->nslots], it);
    }
    return PK_OK;
}

static int start_workers(pk_loader *ld, pk_err *e)
{
    ld->workers = calloc((size_t)ld->o.threads, sizeof *ld->workers);
    if (!ld->workers)
        return pk_fail(e, PK_ENOMEM, "loader: no memory for the workers");
    ld->nworkers = ld->o.threads;
    for (int i = 0; i < ld->nworkers; i++) {
        worker *w = &ld->workers[i];
        w->ld = ld;
        int rc = pk_pack_reader_open(&w->rd, ld->pack, e);
        if (rc)
            return rc;
    }
    for (int i = 0; i < ld->nworkers; i++) {
        if (pthread_create(&ld->workers[i].tid, NULL, worker_main, &ld->workers[i]))
            return pk_fail(e, PK_ENOMEM, "loader: cannot start worker thread %d", i);
        ld->started++;
    }
    return PK_OK;
}

int pk_loader_open(pk_loader **out, const pk_loader_opts *opts, pk_err *e)
{
    *out = NULL;
    int rc = check_opts(opts, e);
    if (rc)
        return rc;
    pk_loader *ld = calloc(1, sizeof *ld);
    if (!ld)
        return pk_fail(e, PK_ENOMEM, "loader: out of memory");
    ld->o = *opts;
    ld->nslots = opts->slots ? opts->slots : 2;
    ld->perm_epoch = -1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_work, NULL);
    pthread_cond_init(&ld->cv_ready, NULL);
    rc = pk_pack_open(&ld->pack, opts->pack, e);
    if (rc)
        goto fail;
    ld->count = pk_pack_count(ld->pack);
    ld->ipe = opts->drop_last ? ld->count / opts->batch
                              : (ld->count + opts->batch - 1) / opts->batch;
    if (ld->ipe == 0) {
        rc = pk_fail(e, PK_EINVAL, "%s: %d records, fewer than one batch of %d", opts->pack,
                     ld->count, opts->batch);
        goto fail;
    }
    ld->perm = malloc((size_t)ld->count * sizeof *ld->perm);
    if (!ld->perm) {
        rc = pk_fail(e, PK_ENOMEM, "loader: out of memory");
        goto fail;
    }
    ld->claim_it = ld->cur_it = opts->start_iter;
    rc = alloc_slots(ld, e);
    if (!rc)
        rc = start_workers(ld, e);
    if (rc)
        goto fail;
    *out = ld;
    return PK_OK;
fail:
    pk_loader_close(ld);
    return rc;
}

int pk_loader_next(pk_loader *ld, const pk_loader_batch **out, pk_err *e)
{
    *out = NULL;
    if (ld->failed_rc) {
        if (e)
            *e = ld->failed;
        return ld->failed_rc;
    }
    pthread_mutex_lock(&ld->mu);
    if (ld->held) {
        slot_release_to(ld, &ld->slots[ld->cur_it % ld->nslots], ld->cur_it + ld->nslots);
        ld->cur_it++;
        ld->held = 0;
        pthread_cond_broadcast(&ld->cv_work);
    }
    if (ld->o.end_iter > 0 && ld->cur_it >= ld->o.end_iter) {
        pthread_mutex_unlock(&ld->mu);
        return PK_OK;
    }
    slot *s = &ld->slots[ld->cur_it % ld->nslots];
    while (s->iter != ld->cur_it || s->filled < s->n)
        pthread_cond_wait(&ld->cv_ready, &ld->mu);
    ld->held = 1;
    pthread_mutex_unlock(&ld->mu);
    if (s->rc) {
        ld->failed_rc = s->rc;
        ld->failed = s->err;
        if (e)
            *e = s->err;
        return s->rc;
    }
    pk_loader_batch *b = &ld->batch;
    b->iter = ld->cur_it;
    b->epoch = ld->cur_it / ld->ipe;
    b->index = ld->cur_it % ld->ipe;
    b->n = s->n;
    b->h = ld->o.aug.crop_h;
    b->w = ld->o.aug.crop_w;
    b->c_extra = ld->o.extra_fn ? ld->o.extra_channels : 0;
    b->image = s->image;
    b->label = s->label;
    b->valid = s->valid;
    b->extra = s->extra;
    b->record = s->record;
    *out = b;
    return PK_OK;
}

void pk_loader_close(pk_loader *ld)
{
    if (!ld)
        return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->started; i++)
        pthread_join(ld->workers[i].tid, NULL);
    for (int i = 0; i < ld->nworkers; i++) {
        worker *w = &ld->workers[i];
        pk_pack_reader_close(w->rd);
        pk_aug_ws_free(&w->ws);
        free(w->rgb);
        pk_extra_planes_free(&w->planes);
    }
    free(ld->workers);
    if (ld->slots)
        for (int i = 0; i < ld->nslots; i++) {
            slot *s = &ld->slots[i];
            free(s->image);
            free(s->label);
            free(s->valid);
            free(s->record);
            free(s->extra);
        }
    free(ld->slots);
    free(ld->perm);
    pk_pack_close(ld->pack);
    pthread_cond_destroy(&ld->cv_work);
    pthread_cond_destroy(&ld->cv_ready);
    pthread_mutex_destroy(&ld->mu);
    free(ld);
}

int pk_loader_count(const pk_loader *ld) { return ld->count; }
long pk_loader_iters_per_epoch(const pk_loader *ld) { return ld->ipe; }
const pk_meta *pk_loader_meta(const pk_loader *ld) { return pk_pack_meta(ld->pack); }
const char *pk_loader_key(const pk_loader *ld, int record)
{
    return pk_pack_key(ld->pack, record);
}
