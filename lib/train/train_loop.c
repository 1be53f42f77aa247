/* The training loop shared by the trainers: see train_loop.h. */
#include "train/train_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "core/run_lock.h"
#include "model/checkpoint.h"
#include "store/pack_meta.h"
#include "cli/progress.h"
#include "train/train_ckpt.h"
#include "train/train_data.h"
#include "train/train_log.h"
#include "train/train_val.h"

void pk_train_opts_defaults(pk_train_opts *o, const char *tool)
{
    *o = (pk_train_opts){.tool = tool, .batch = 16, .crop_h = 473, .crop_w = 473, .augment = 1,
                         .scale_min = 0.5f, .scale_max = 2.0f, .rotate = 10.0f, .workers = 1,
                         .seed = 1, .epochs = 50, .arch = PK_ARCH_R50, .stem = PK_STEM_DEEP,
                         .dropout = 0.1f, .keep = 3, .val_every = 1, .progress_every = 30.0};
    pk_train_cfg_defaults(&o->cfg);
}

/* Everything one run holds. */
typedef struct run {
    pk_model *m;
    const pk_train_opts *o;
    const pk_train_teacher *t;
    pk_stop_fn *stop;
    void *stop_ctx;
    pk_ctx *ctx;
    int on_cpu, K;
    /* data parallel (pk_model_comm): rank 0 alone prints, logs, validates
     * and writes; every rank trains on its share of each batch */
    pk_comm *comm;
    int rank, size, lead, quiet;
    pk_train_cfg cfg;
    long ipe, max_iter, validated;
    const char *ckpt_dir;
    char ckpt_dir_buf[4096];
    pk_train_data *data;
    int n_lab, n_unlab;  /* a batch's labelled and unlabelled images */
    long unlab_pos[PK_UNLAB_MAX]; /* the unlabelled schedule read on resume */
    int have_unlab_pos;
    pk_val_set *val;
    pk_train_log log;
    int have_log;
    pk_progress prog;
    /* staging: device copies (NULL on the CPU, where the loader's buffers
     * are used directly) and the teacher logits [n,h,w,K] */
    float *d_image, *t_main, *t_aux, *h_main, *h_aux;
    uint8_t *d_label, *d_valid;
    size_t px; /* n*h*w of the allocated staging */
    pk_run_lock locks[3]; /* OUTPUT.lock, LOG.lock, CKPT_DIR/.lock */
} run;

static void say(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run *r, const char *fmt, ...)
{
    if (r->quiet)
        return;
    pk_progress_break(&r->prog);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", r->o->tool);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- checkpoint metadata ------------------------------------------------ */

/* "unlabeled": the mix (ratio, unlabelled images per batch, a hash of the
 * packs' ids); "unlabeled_pos": the schedule's state, pos[] of unlab_mix.h. */
static void unlab_mix_desc(const run *r, char *buf, size_t cap)
{
    uint64_t h = PK_FNV1A64_INIT;
    for (int p = 0; p < r->o->n_unlab; p++)
        h = pk_hash64(h ^ pk_logits_cache_meta(r->t->unlab_cache[p])->pack_id);
    snprintf(buf, cap, "%g,%d,%016" PRIx64, r->o->unlab_ratio, r->n_unlab, h);
}

static int unlab_meta(const run *r, pk_ckpt_meta *meta, pk_err *e)
{
    if (!r->o->n_unlab)
        return PK_OK;
    long pos[PK_UNLAB_MAX];
    int n = r->data ? pk_train_data_unlab_pos(r->data, pos) : 0;
    if (!r->data)
        for (n = 0; n < r->o->n_unlab; n++)
            pos[n] = r->unlab_pos[n];
    char mix[128], at[128];
    size_t len = 0;
    unlab_mix_desc(r, mix, sizeof mix);
    at[0] = '\0';
    for (int p = 0; p < n && len < sizeof at; p++)
        len += (size_t)snprintf(at + len, sizeof at - len, "%s%ld", p ? "," : "", pos[p]);
    if (len >= sizeof at || pk_ckpt_meta_set(meta, "unlabeled", mix) ||
        pk_ckpt_meta_set(meta, "unlabeled_pos", at))
        return pk_fail(e, PK_EINVAL, "checkpoint metadata too long");
    return PK_OK;
}

/* On resume: the unlabelled schedule the checkpoint holds, when it was
 * written with the same mix (else it is replayed from the step). */
static void read_unlab_pos(run *r, const pk_ckpt_meta *meta)
{
    const char *was = pk_ckpt_meta_get(meta, "unlabeled");
    const char *at = pk_ckpt_meta_get(meta, "unlabeled_pos");
    char now[128];
    r->have_unlab_pos = 0;
    if (!r->o->n_unlab) {
        if (was)
            fprintf(stderr, "%s: warning: resuming a run with unlabelled packs, now none\n",
                    r->o->tool);
        return;
    }
    unlab_mix_desc(r, now, sizeof now);
    if (!was || !at || strcmp(was, now)) {
        fprintf(stderr, "%s: warning: resuming a run with %s unlabelled packs or ratio\n",
                r->o->tool, was ? "other" : "no");
        return;
    }
    const char *s = at;
    for (int p = 0, n = r->o->n_unlab; p < n; p++) {
        char *end;
        r->unlab_pos[p] = strtol(s, &end, 10);
        if (end == s || *end != (p + 1 < n ? ',' : '\0'))
            return; /* not ours: replayed */
        s = end + 1;
    }
    r->have_unlab_pos = 1;
}

static int fill_meta(run *r, long step, int frozen, pk_ckpt_meta *meta, pk_err *e)
{
    memset(meta, 0, sizeof *meta);
    meta->step = step;
    meta->frozen = frozen;
    char v[4][64];
    snprintf(v[0], sizeof v[0], "%" PRIu64, r->o->seed);
    snprintf(v[1], sizeof v[1], "%ld", r->max_iter);
    snprintf(v[2], sizeof v[2], "%d", r->o->batch);
    snprintf(v[3], sizeof v[3], "%dx%d", r->o->crop_h, r->o->crop_w);
    char vd[32];
    snprintf(vd, sizeof vd, "%ld", r->validated);
    if (pk_ckpt_meta_set(meta, "tool", r->o->tool) || pk_ckpt_meta_set(meta, "seed", v[0]) ||
        pk_ckpt_meta_set(meta, "max_iter", v[1]) || pk_ckpt_meta_set(meta, "batch", v[2]) ||
        pk_ckpt_meta_set(meta, "crop", v[3]) || pk_ckpt_meta_set(meta, "validated", vd))
        return pk_fail(e, PK_EINVAL, "checkpoint metadata too long");
    return unlab_meta(r, meta, e);
}

static int save_ckpt(run *r, long step, pk_train_result *res, pk_err *e)
{
    if (!r->lead)
        return PK_OK;
    pk_ckpt_meta meta;
    int rc = fill_meta(r, step, 0, &meta, e);
    if (!rc)
        rc = pk_ckpt_dir_save(r->m, r->ckpt_dir, &meta, r->o->keep, res->checkpoint,
                              sizeof res->checkpoint, e);
    return rc;
}

/* Warns when the run's schedule differs from the checkpoint's: resuming
 * still works, but is no longer the uninterrupted run. */
static void check_resume_meta(run *r, const pk_ckpt_meta *meta)
{
    char now[4][64];
    snprintf(now[0], sizeof now[0], "%" PRIu64, r->o->seed);
    snprintf(now[1], sizeof now[1], "%ld", r->max_iter);
    snprintf(now[2], sizeof now[2], "%d", r->o->batch);
    snprintf(now[3], sizeof now[3], "%dx%d", r->o->crop_h, r->o->crop_w);
    static const char *const keys[4] = {"seed", "max_iter", "batch", "crop"};
    for (int i = 0; i < 4; i++) {
        const char *was = pk_ckpt_meta_get(meta, keys[i]);
        if (was && strcmp(was, now[i]) && r->lead)
            fprintf(stderr, "%s: warning: resuming a run with %s %s, now %s\n", r->o->tool,
                    keys[i], was, now[i]);
    }
}

static int resume(run *r, long *start, pk_err *e)
{
    const char *path = r->o->resume;
    char found[4096];
    struct stat st;
    *start = 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        long s;
        int rc = pk_ckpt_dir_latest(path, found, sizeof found, &s, e);
        if (rc == PK_ENOTFOUND) {
            say(r, "no checkpoint in %s: starting from step 0", path);
            return PK_OK;
        }
        if (rc)
            return rc;
        path = found;
    }
    pk_ckpt_meta meta;
    int rc = pk_checkpoint_load_into(r->m, path, &meta, e);
    if (rc)
        return rc;
    if (meta.frozen)
        return pk_fail(e, PK_EINVAL,
                       "%s: a frozen model has no optimiser state and cannot be resumed "
                       "(use --init for weights)", path);
    if (meta.step < 0)
        return pk_fail(e, PK_EFORMAT, "%s: negative step %ld", path, meta.step);
    check_resume_meta(r, &meta);
    const char *vd = pk_ckpt_meta_get(&meta, "validated");
    r->validated = vd ? strtol(vd, NULL, 10) : 0;
    read_unlab_pos(r, &meta);
    *start = meta.step;
    say(r, "resuming from %s at step %ld", path, meta.step);
    return PK_OK;
}

/* ---- batches ------------------------------------------------------------- */

static void free_staging(run *r)
{
    float *f[] = {r->d_image, r->t_main, r->t_aux};
    for (int i = 0; i < 3; i++)
        if (f[i])
            pk_dev_free(r->ctx, f[i]);
    if (r->d_label)
        pk_dev_free(r->ctx, r->d_label);
    if (r->d_valid)
        pk_dev_free(r->ctx, r->d_valid);
    free(r->h_main);
    free(r->h_aux);
    r->d_image = r->t_main = r->t_aux = r->h_main = r->h_aux = NULL;
    r->d_label = r->d_valid = NULL;
    r->px = 0;
}

static int alloc_staging(run *r, size_t px, pk_err *e)
{
    if (r->px == px)
        return PK_OK;
    free_staging(r);
    size_t tk = px * (size_t)r->K * sizeof(float);
    int teacher = r->t->cache || r->t->model;
    int ok = 1;
    if (!r->on_cpu) {
        ok &= !!(r->d_image = pk_dev_alloc(r->ctx, px * 3 * sizeof(float)));
        ok &= !!(r->d_label = pk_dev_alloc(r->ctx, px));
        ok &= !!(r->d_valid = pk_dev_alloc(r->ctx, px));
        if (r->t->cache) {
            ok &= !!(r->h_main = malloc(tk));
            ok &= !!(r->h_aux = malloc(tk));
        }
    }
    if (teacher) {
        ok &= !!(r->t_main = pk_dev_alloc(r->ctx, tk));
        ok &= !!(r->t_aux = pk_dev_alloc(r->ctx, tk));
    }
    if (!ok) {
        free_staging(r);
        return pk_fail(e, PK_ENOMEM, "out of memory for a batch of %zu pixels", px);
    }
    r->px = px;
    return PK_OK;
}

/* Splits the cache's [P, 2K] planes into main and aux [P, K]. */
static void split_planes(float *main_out, float *aux_out, const float *planes, size_t P, int K)
{
    for (size_t p = 0; p < P; p++) {
        memcpy(main_out + p * K, planes + p * 2 * K, (size_t)K * sizeof(float));
        memcpy(aux_out + p * K, planes + p * 2 * K + K, (size_t)K * sizeof(float));
    }
}

/* The model's batch for the loader's crops, with the teacher's logits. */
static int make_batch(run *r, const pk_train_crops *c, pk_batch *b, pk_err *e)
{
    size_t px = (size_t)c->n * c->h * c->w;
    int rc = alloc_staging(r, px, e);
    if (rc)
        return rc;
    *b = (pk_batch){.n = c->n, .h = c->h, .w = c->w};
    if (r->on_cpu) {
        b->image = c->image;
        b->label = c->label;
        b->valid = c->valid;
    } else {
        pk_dev_upload(r->ctx, r->d_image, c->image, px * 3 * sizeof(float));
        pk_dev_upload(r->ctx, r->d_label, c->label, px);
        pk_dev_upload(r->ctx, r->d_valid, c->valid, px);
        b->image = r->d_image;
        b->label = r->d_label;
        b->valid = r->d_valid;
    }
    if (r->t->cache) {
        if (!c->teacher)
            return pk_fail(e, PK_EINVAL, "loader gave no teacher planes");
        if (r->on_cpu) {
            split_planes(r->t_main, r->t_aux, c->teacher, px, r->K);
        } else {
            split_planes(r->h_main, r->h_aux, c->teacher, px, r->K);
            size_t bytes = px * (size_t)r->K * sizeof(float);
            pk_dev_upload(r->ctx, r->t_main, r->h_main, bytes);
            pk_dev_upload(r->ctx, r->t_aux, r->h_aux, bytes);
        }
    } else if (r->t->model) {
        rc = pk_model_infer(r->t->model, r->t_main, r->t_aux, b->image, c->n, c->h, c->w, 1,
                            e);
        if (rc)
            return pk_wrap(e, "teacher");
    }
    if (r->t->cache || r->t->model) {
        b->teacher_main = r->t_main;
        b->teacher_aux = r->t_aux;
    }
    return PK_OK;
}

/* ---- validation ---------------------------------------------------------- */

static int is_val_point(const run *r, long step)
{
    if (!r->val || step <= 0)
        return 0;
    if (step == r->max_iter)
        return 1;
    return step % r->ipe == 0 && (step / r->ipe) % r->o->val_every == 0;
}

/* Validates at `step`; *interrupted when a stop request cut it short. */
static int validate(run *r, long step, int *interrupted, pk_err *e)
{
    pk_seg_scores s;
    double t0 = pk_now();
    int rc = pk_val_run(r->val, r->m, r->stop, r->stop_ctx, &s, interrupted, e);
    if (rc || *interrupted)
        return rc;
    long epoch = (step - 1) / r->ipe + 1;
    say(r, "validation at step %ld (epoch %ld): mIoU %.4f mAcc %.4f aAcc %.4f, mIoU over the %d "
           "present classes %.4f (%d images, %.1fs)",
        step, epoch, s.miou, s.macc, s.aacc, s.present, s.miou_present, pk_val_count(r->val),
        pk_now() - t0);
    r->validated = step;
    if (r->have_log)
        rc = pk_train_log_val(&r->log, step, epoch, &s, e);
    return rc;
}

/* ---- the loop ------------------------------------------------------------ */

static void losses_kv(const run *r, const pk_losses *l, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "loss=%.4f ce=%.4f aux=%.4f", l->total, l->ce, l->aux_ce);
    if ((r->t->cache || r->t->model) && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - n, " kd=%.4f akd=%.4f", l->kd, l->aux_kd);
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - n, " lr=%.3g", l->lr);
}

/* Before the update: a non-finite loss or gradient norm stops the run (the
 * weights are still those of the last step; the output is not written). */
static int check_finite(run *r, const pk_losses *l, pk_err *e)
{
    double norm = 0.0;
    int rc = isfinite(l->total) ? pk_model_grad_norm(r->m, &norm, e) : PK_OK;
    if (rc)
        return rc;
    if (isfinite(l->total) && isfinite(norm))
        return PK_OK;
    char ck[4096];
    long at;
    pk_err ignore;
    int have = pk_ckpt_dir_latest(r->ckpt_dir, ck, sizeof ck, &at, &ignore) == PK_OK;
    return pk_fail(e, PK_EINVAL, "non-finite %s (%g); stopped without writing %s%s%s",
                   isfinite(l->total) ? "gradient norm" : "loss",
                   isfinite(l->total) ? norm : (double)l->total, r->o->output,
                   have ? "; the last good checkpoint is " : "", have ? ck : "");
}

/* After step `step` completed: returns 1 when the run must stop now. */
static int maybe_stop(run *r, long step, int ckpt_written, pk_train_result *res, pk_err *e,
                      int *rc)
{
    int sig = r->stop ? r->stop(r->stop_ctx) : 0;
    if (r->size > 1) { /* every rank stops at the same step, or none */
        double v = sig;
        if ((*rc = pk_comm_allmax_f64(r->comm, &v, 1, e)))
            return 1;
        sig = sig ? sig : (int)v;
    }
    if (!sig || step >= r->max_iter)
        return 0;
    pk_progress_break(&r->prog);
    if (!ckpt_written) {
        *rc = save_ckpt(r, step, res, e);
        if (*rc)
            return 1;
    }
    res->signal = sig;
    if (!r->quiet)
        fprintf(stderr, "%s: %s at step %ld: checkpoint %s\n", r->o->tool,
                sig == SIGINT ? "interrupted" : "terminated", step, res->checkpoint);
    return 1;
}

static int loop(run *r, long start, pk_train_result *res, pk_err *e)
{
    int rc = PK_OK;
    long ckpt_every = r->o->ckpt_every > 0 ? r->o->ckpt_every : r->ipe;
    double t_run = pk_now();
    long images = 0;
    char kv[160] = "";
    pk_progress_init(&r->prog, r->max_iter, r->o->tool, stderr);
    r->prog.start = start;
    r->prog.items_per_step = r->o->batch;
    r->prog.interval = r->o->progress_every;
    res->step = start;
    /* A validation that a stop request cut short before the checkpoint. */
    if (is_val_point(r, start) && r->validated < start) {
        int intr = 0;
        rc = validate(r, start, &intr, e);
        if (rc || (intr && maybe_stop(r, start, 0, res, e, &rc)))
            return rc;
    }
    for (long it = start; it < r->max_iter; it++) {
        if (maybe_stop(r, it, 0, res, e, &rc))
            return rc;
        double t0 = pk_now();
        pk_train_crops c;
        pk_batch b;
        rc = pk_train_data_next(r->data, &c, e);
        if (!rc && c.n == 0)
            rc = pk_fail(e, PK_EINVAL, "loader ended early at iteration %ld", it);
        if (!rc && c.iter != it)
            rc = pk_fail(e, PK_EINVAL, "loader gave iteration %ld, expected %ld", c.iter, it);
        if (!rc)
            rc = make_batch(r, &c, &b, e);
        pk_losses l;
        if (!rc)
            rc = pk_model_forward_backward(r->m, &b, &r->cfg, it, &l, e);
        if (!rc)
            rc = check_finite(r, &l, e);
        if (!rc)
            l.lr = pk_model_sgd_step(r->m, &r->cfg, it);
        if (rc) {
            pk_progress_break(&r->prog);
            return pk_wrap(e, "step %ld", it + 1);
        }
        pk_dev_sync(r->ctx);
        long step = it + 1;
        double dt = pk_now() - t0;
        images += (long)c.n * r->size;
        res->step = step;
        losses_kv(r, &l, kv, sizeof kv);
        if (!r->quiet)
            pk_progress_update(&r->prog, step, kv);
        if (r->have_log) {
            pk_train_log_row row = {step, c.epoch + 1, l.lr, l.total, l.ce, l.aux_ce, l.kd,
                                    l.aux_kd, dt > 0 ? (double)c.n * r->size / dt : 0};
            if ((rc = pk_train_log_step(&r->log, &row, e)))
                return rc;
        }
        int intr = 0;
        if (is_val_point(r, step) && (rc = validate(r, step, &intr, e)))
            return rc;
        int written = 0;
        if (!intr && step % ckpt_every == 0 && step < r->max_iter) {
            if ((rc = save_ckpt(r, step, res, e)))
                return rc;
            written = 1;
        }
        if (maybe_stop(r, step, written, res, e, &rc))
            return rc;
    }
    res->seconds = pk_now() - t_run;
    res->img_s = res->seconds > 0 ? images / res->seconds : 0;
    if (!r->quiet)
        pk_progress_finish(&r->prog, res->step, kv);
    return PK_OK;
}

static int write_output(run *r, pk_err *e)
{
    if (!r->lead)
        return PK_OK;
    pk_ckpt_meta meta;
    int rc = fill_meta(r, r->max_iter, r->o->freeze, &meta, e);
    if (!rc)
        rc = pk_checkpoint_save(r->m, r->o->output, &meta, !r->o->freeze, e);
    if (!rc)
        say(r, "wrote %s%s", r->o->output, r->o->freeze ? " (frozen)" : "");
    return rc;
}

/* The default checkpoint directory: OUTPUT without ".safetensors", plus
 * ".ckpt". */
static int default_ckpt_dir(run *r, pk_err *e)
{
    const char *out = r->o->output;
    size_t n = strlen(out), ls = strlen(".safetensors");
    if (n > ls && !strcmp(out + n - ls, ".safetensors"))
        n -= ls;
    int len = snprintf(r->ckpt_dir_buf, sizeof r->ckpt_dir_buf, "%.*s.ckpt", (int)n, out);
    if (len < 0 || (size_t)len >= sizeof r->ckpt_dir_buf)
        return pk_fail(e, PK_EINVAL, "output path too long");
    r->ckpt_dir = r->ckpt_dir_buf;
    return PK_OK;
}

/* One run per output, log and checkpoint directory: the output's and the
 * log's lock files sit beside them (removed at the end), the checkpoint
 * directory's inside it (created here when missing; its parent must
 * exist). Under mpirun rank 0 alone writes, so it alone locks. */
static int take_locks(run *r, pk_err *e)
{
    if (!r->lead)
        return PK_OK;
    const char *what[2] = {r->o->output, r->o->log};
    char path[4200];
    for (int i = 0; i < 2; i++) {
        if (!what[i])
            continue;
        if (snprintf(path, sizeof path, "%s.lock", what[i]) >= (int)sizeof path)
            return pk_fail(e, PK_EINVAL, "%s: path too long", what[i]);
        if (pk_run_lock_take(&r->locks[i], path, what[i], 1, e))
            return e->code;
    }
    if (mkdir(r->ckpt_dir, 0777) != 0 && errno != EEXIST)
        return pk_fail(e, PK_EIO, "%s: cannot create: %s", r->ckpt_dir, strerror(errno));
    if (snprintf(path, sizeof path, "%s/.lock", r->ckpt_dir) >= (int)sizeof path)
        return pk_fail(e, PK_EINVAL, "%s: path too long", r->ckpt_dir);
    return pk_run_lock_take(&r->locks[2], path, r->ckpt_dir, 0, e);
}

static int setup(run *r, long *start, pk_err *e)
{
    const pk_train_opts *o = r->o;
    pk_meta meta;
    int rc = pk_pack_meta_read(o->data, &meta, e);
    if (rc)
        return rc;
    if (meta.classes != r->K)
        return pk_fail(e, PK_EINVAL, "%s has %d classes but the model %d", o->data,
                       meta.classes, r->K);
    if (meta.unlabeled)
        return pk_fail(e, PK_EINVAL, "%s is an unlabelled pack: nothing to train on (student-"
                       "distill takes it as --unlabeled PACK:LOGITS)", o->data);
    r->n_lab = o->batch;
    r->n_unlab = 0;
    if (o->n_unlab && pk_unlab_split(o->batch, o->unlab_ratio, &r->n_lab, &r->n_unlab))
        return pk_fail(e, PK_EINVAL, "-b %d at --unlabeled-ratio %g leaves no labelled or no "
                       "unlabelled image", o->batch, o->unlab_ratio);
    r->ipe = meta.count / r->n_lab;
    if (r->ipe < 1)
        return pk_fail(e, PK_EINVAL, "%s: %d images, fewer than one batch of %d", o->data,
                       meta.count, r->n_lab);
    r->max_iter = o->iters > 0 ? o->iters : (long)o->epochs * r->ipe;
    r->cfg = o->cfg;
    r->cfg.max_iter = r->max_iter;
    r->cfg.seed = o->seed;
    if (!(r->t->cache || r->t->model))
        r->cfg.kd_weight = r->cfg.auxkd_weight = 0.0f;
    r->ckpt_dir = o->ckpt_dir;
    if (!r->ckpt_dir && (rc = default_ckpt_dir(r, e)))
        return rc;
    if ((rc = take_locks(r, e)))
        return rc;
    if (o->resume && (rc = resume(r, start, e)))
        return rc;
    if (o->batch % r->size)
        return pk_fail(e, PK_EINVAL, "the global batch %d does not split over %d ranks",
                       o->batch, r->size);
    if (r->lead && o->val && (rc = pk_val_open(&r->val, o->val, r->K, e)))
        return rc;
    if (r->lead && o->log) {
        if ((rc = pk_train_log_open(&r->log, o->log, *start, e)))
            return rc;
        r->have_log = 1;
    }
    pk_train_data_opts d = {.pack = o->data,
                            .batch = r->n_lab,
                            .workers = o->workers,
                            .seed = o->seed,
                            .start_iter = *start,
                            .end_iter = r->max_iter,
                            .cache = r->t->cache,
                            .classes = r->K};
    if (r->size > 1) {
        d.part_len = o->batch / r->size;
        d.part_off = r->rank * d.part_len;
    }
    pk_aug_opts_default(&d.aug, o->crop_h, o->crop_w);
    d.aug.none = !o->augment;
    d.aug.scale_min = o->scale_min;
    d.aug.scale_max = o->scale_max;
    d.aug.rotate_min = -o->rotate;
    d.aug.rotate_max = o->rotate;
    if ((rc = pk_aug_opts_check(&d.aug, e)))
        return rc;
    d.unlab = (pk_unlab_stream_opts){.n = o->n_unlab, .batch = r->n_unlab,
                                     .pos = r->have_unlab_pos ? r->unlab_pos : NULL};
    for (int p = 0; p < o->n_unlab; p++) {
        d.unlab.pack[p] = o->unlab_pack[p];
        d.unlab.cache[p] = r->t->unlab_cache[p];
    }
    if (*start >= r->max_iter)
        return PK_OK; /* nothing left to train: no loader */
    if ((rc = pk_train_data_open(&r->data, &d, e)))
        return rc;
    if (pk_train_data_iters_per_epoch(r->data) != r->ipe)
        return pk_fail(e, PK_EINVAL, "%s: the pack's record count changed", o->data);
    return PK_OK;
}

int pk_train_run(pk_model *m, const pk_train_opts *o, const pk_train_teacher *t,
                 pk_stop_fn *stop, void *stop_ctx, pk_train_result *res, pk_err *e)
{
    memset(res, 0, sizeof *res);
    run r = {.m = m, .o = o, .t = t, .stop = stop, .stop_ctx = stop_ctx, .ctx = pk_model_ctx(m),
             .locks = {PK_RUN_LOCK_NONE, PK_RUN_LOCK_NONE, PK_RUN_LOCK_NONE}};
    r.on_cpu = pk_ctx_device(r.ctx) == PK_DEV_CPU;
    r.comm = pk_model_comm(m);
    r.rank = pk_comm_rank(r.comm);
    r.size = pk_comm_size(r.comm);
    r.lead = r.rank == 0;
    r.quiet = o->quiet || !r.lead;
    r.K = pk_model_config(m)->classes;
    pk_progress_init(&r.prog, 0, o->tool, stderr);
    if (t->cache && t->model)
        return pk_fail(e, PK_EINVAL, "give the teacher as a cache or a model, not both");

    long start = 0;
    int rc = setup(&r, &start, e);
    res->start_step = start;
    res->max_iter = r.max_iter;
    if (!rc)
        rc = loop(&r, start, res, e);
    if (!rc && !res->signal)
        rc = write_output(&r, e);
    pk_err e2;
    if (r.have_log && pk_train_log_close(&r.log, &e2) && !rc) {
        *e = e2;
        rc = e2.code;
    }
    pk_train_data_close(r.data);
    pk_val_close(r.val);
    free_staging(&r);
    for (int i = 2; i >= 0; i--)
        pk_run_lock_release(&r.locks[i]);
    return rc;
}
