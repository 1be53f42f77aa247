/* teacher-dump: run a frozen teacher once over every image of a data pack
 * and cache its main and aux logits at stride 8 (see teacher-dump(1) and
 * pspkd-logits(5)).
 *
 * The output is written to a temporary LMDB and renamed into place. When
 * the output exists and was made by the same teacher from the same pack,
 * its records are copied into the new file and only the missing keys are
 * computed (resume after --limit or an interrupt). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/stop_signals.h"
#include "cli/tool_opts.h"
#include "core/atomic_file.h"
#include "model/checkpoint.h"
#include "cli/device_opt.h"
#include "store/pack.h"
#include "store/logits_cache.h"
#include "store/logits_merge.h"
#include "cli/progress.h"
#include "store/record.h"
#include "model/seg_infer.h"

#define TOOL "teacher-dump"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -m TEACHER -d DATA -o LOGITS [--shard I/N] [options]\n"
            "       " TOOL " --merge LOGITS -d DATA SLICE...\n"
            "Runs a frozen teacher once per image of a data pack and caches its main and\n"
            "aux logits (stride 8, fp16) in an LMDB keyed as the pack.\n"
            "\n"
            "  -m, --model FILE      frozen teacher checkpoint (teacher-train --freeze)\n"
            "  -d, --data PACK       data pack written by voc-pack\n"
            "  -o, --output FILE     the logits cache to write (resumed when it exists\n"
            "                        and matches the teacher and the pack)\n"
            "  -t, --threads N       compute threads (0, the default: all CPUs)\n"
            "      --device DEV      cpu, cuda or cuda:N (default: the first GPU if any)\n"
            PK_PRECISION_HELP
            "      --limit N         compute at most N new images, then write the cache\n"
            "      --shard I/N       only slice I (0..N-1) of the pack's images, for one\n"
            "                        machine of N; join the slices with --merge\n"
            "      --merge LOGITS    join the SLICE caches into LOGITS; every image of DATA\n"
            "                        must be in exactly one slice\n"
            "  -f, --force           recompute everything, replacing OUTPUT\n"
            "      --json            print the summary as JSON\n"
            "  -q, --quiet           no progress line\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n");
}

struct opts {
    const char *model, *data, *out, *device;
    pk_ctx_opts ctx;
    long limit; /* < 0: none */
    int shard_i, shard_n; /* --shard I/N (shard_n 0: the whole pack) */
    const char *merge;    /* --merge OUT: slices are the operands */
    int force, json, quiet;
};

enum { OPT_DEVICE = 256, OPT_LIMIT, OPT_JSON, OPT_PRECISION, OPT_SHARD, OPT_MERGE };

static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},   {"data", required_argument, 0, 'd'},
    {"output", required_argument, 0, 'o'},  {"threads", required_argument, 0, 't'},
    {"device", required_argument, 0, OPT_DEVICE},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"shard", required_argument, 0, OPT_SHARD}, {"merge", required_argument, 0, OPT_MERGE},
    {"force", no_argument, 0, 'f'},         {"json", no_argument, 0, OPT_JSON},
    {"quiet", no_argument, 0, 'q'},         {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "m:d:o:t:fq", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    const pk_num_opt nums[] = {
        {'t', 0, 1024, "--threads takes 0..1024 (0: all CPUs)", .i = &o->ctx.threads},
        {OPT_LIMIT, 0, 1L << 40, "--limit takes a count >= 0", .l = &o->limit},
    };
    switch (c) {
    case 'm': o->model = arg; break;
    case 'd': o->data = arg; break;
    case 'o': o->out = arg; break;
    case 'f': o->force = 1; break;
    case 'q': o->quiet = 1; break;
    case OPT_JSON: o->json = 1; break;
    case OPT_DEVICE: o->device = arg; break;
    case OPT_PRECISION: return pk_precision_opt(TOOL, arg, &o->ctx.precision);
    case OPT_MERGE: o->merge = arg; break;
    case OPT_SHARD: {
        int n = 0;
        if (sscanf(arg, "%d/%d%n", &o->shard_i, &o->shard_n, &n) != 2 || arg[n] ||
            o->shard_n < 1 || o->shard_n > 65536 || o->shard_i < 0 || o->shard_i >= o->shard_n)
            return pk_usage_error(TOOL, "--shard takes I/N with 0 <= I < N <= 65536");
        break;
    }
    default: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    }
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.limit = -1};
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st == PK_GO_ON)
        st = pk_device_opt(TOOL, o->device, &o->ctx);
    if (st != PK_GO_ON)
        return st;
    if (o->merge) {
        if (!o->data || o->model || o->out || o->shard_n)
            return pk_usage_error(TOOL, "--merge LOGITS takes -d DATA and the SLICE caches only");
        if (optind == argc)
            return pk_usage_error(TOOL, "--merge needs at least one SLICE");
        return PK_GO_ON;
    }
    if (optind != argc)
        return pk_usage_error(TOOL, "unexpected argument");
    if (!o->model || !o->data || !o->out)
        return pk_usage_error(TOOL, "need -m TEACHER, -d DATA and -o LOGITS");
    return PK_GO_ON;
}

/* ---- the run ---- */

struct run {
    struct opts o;
    pk_stop_signals *sig; /* SIGINT/SIGTERM, polled between images */
    pk_pack *pack;
    pk_meta meta;
    uint64_t teacher_hash;
    pk_ctx *ctx;
    pk_model *model;
    pk_ckpt_meta cmeta;
    pk_pack *resume;      /* the existing output being resumed, or NULL */
    pk_seg_ws *ws;
    float *main_l, *aux_l;
    size_t logits_cap;
    long computed, kept, missing;
    double compute_s;
    size_t record_bytes;
};

static int fail(pk_err *e)
{
    fprintf(stderr, TOOL ": %s\n", e->msg);
    return 1;
}

static int open_pack(struct run *r, pk_err *e)
{
    if (pk_pack_open(&r->pack, r->o.data, e))
        return e->code; /* the message names the file */
    r->meta = *pk_pack_meta(r->pack);
    return PK_OK;
}

static int load_teacher(struct run *r, pk_err *e)
{
    const char *path = r->o.model;
    if (pk_fnv1a64_file(&r->teacher_hash, path, e))
        return e->code;
    if (pk_ctx_create(&r->ctx, &r->o.ctx, e))
        return e->code;
    if (pk_checkpoint_load(&r->model, r->ctx, path, 0.0f, &r->cmeta, e))
        return e->code; /* the message names the file */
    if (!r->cmeta.frozen)
        return pk_fail(e, PK_EINVAL, "%s is not frozen (run teacher-train --freeze)", path);
    int k = pk_model_config(r->model)->classes;
    if (k != r->meta.classes)
        return pk_fail(e, PK_EINVAL, "%s has %d classes, %s has %d", path, k, r->o.data,
                       r->meta.classes);
    return PK_OK;
}

/* The existing record for key when it is valid for this image, else NULL
 * (*len its length). */
static const void *reusable(struct run *r, const char *key, const pk_record_view *rec,
                            size_t *len)
{
    pk_err e = {0, ""};
    pk_logits_view lv;
    const void *v;
    int i = r->resume ? pk_pack_find(r->resume, key) : -1;
    if (i < 0 || pk_pack_get(r->resume, i, &v, len, &e) || pk_logits_parse(&lv, v, *len, &e))
        return NULL;
    if (strcmp(lv.key, key) || lv.geom.img_w != rec->hdr.width ||
        lv.geom.img_h != rec->hdr.height || lv.classes != r->meta.classes)
        return NULL;
    return v;
}

/* Record i of the data pack, parsed; the message names the pack and key. */
static int data_record(struct run *r, int i, pk_record_view *rec, pk_err *e)
{
    const void *dv;
    size_t dlen;
    int rc = pk_pack_get(r->pack, i, &dv, &dlen, e);
    if (!rc)
        rc = pk_record_parse(rec, dv, dlen, e);
    if (!rc)
        rc = pk_record_check_labels(rec, r->meta.classes, e);
    if (rc)
        pk_wrap(e, "%s: %s", r->o.data, pk_pack_key(r->pack, i));
    return rc;
}

/* The images this run computes: [lo, hi) of the pack (--shard: one slice). */
static void shard_range(const struct run *r, int *lo, int *hi)
{
    int count = pk_pack_count(r->pack);
    *lo = 0;
    *hi = count;
    if (r->o.shard_n) {
        *lo = pk_shard_first(count, r->o.shard_i, r->o.shard_n);
        *hi = pk_shard_first(count, r->o.shard_i + 1, r->o.shard_n);
    }
}

/* Whether the existing output is complete: as many records as the pack
 * (or the slice), each one present and valid (parsed, CRC, finite, this
 * image's size and classes). */
static int complete(struct run *r, int *done, pk_err *e)
{
    int lo, hi;
    shard_range(r, &lo, &hi);
    *done = 0;
    if (pk_pack_count(r->resume) != hi - lo)
        return PK_OK;
    for (int i = lo; i < hi; i++) {
        pk_record_view rec;
        size_t len;
        if (data_record(r, i, &rec, e))
            return e->code;
        if (!reusable(r, pk_pack_key(r->pack, i), &rec, &len))
            return PK_OK;
    }
    *done = 1;
    return PK_OK;
}

/* Decides whether an existing output is resumed. Returns PK_OK with
 * *done = 1 when it is already complete: every record of the pack present
 * and valid, made from this teacher and this pack. */
static int open_existing(struct run *r, int *done, pk_err *e)
{
    struct stat st;
    *done = 0;
    if (r->o.force || stat(r->o.out, &st) != 0)
        return PK_OK;
    pk_err oe = {0, ""};
    pk_logits_cache *old;
    if (pk_logits_cache_open(&old, r->o.out, &oe))
        return pk_fail(e, PK_EINVAL, "%s exists and is not a readable logits cache (%s); use "
                       "--force to replace it", r->o.out, oe.msg);
    const pk_logits_meta m = *pk_logits_cache_meta(old);
    pk_logits_cache_close(old);
    if (m.teacher_hash != r->teacher_hash || m.pack_id != r->meta.pack_id ||
        m.classes != r->meta.classes)
        return pk_fail(e, PK_EINVAL,
                       "%s holds logits of another teacher or data pack; use --force to "
                       "replace it", r->o.out);
    /* Resume from it (a plain pack for raw copies), unless it is complete. */
    int rc = pk_pack_open_raw(&r->resume, r->o.out, e);
    if (!rc)
        rc = complete(r, done, e);
    return rc;
}

static int compute(struct run *r, const char *key, const pk_record_view *rec, uint8_t **out,
                   size_t *len, pk_err *e)
{
    int w = rec->hdr.width, h = rec->hdr.height, k = r->meta.classes;
    pk_logits_geom g;
    pk_logits_geom_init(&g, w, h);
    size_t n = (size_t)g.grid_w * g.grid_h * k;
    if (n > r->logits_cap) {
        free(r->main_l);
        free(r->aux_l);
        r->main_l = malloc(n * sizeof(float));
        r->aux_l = malloc(n * sizeof(float));
        r->logits_cap = r->main_l && r->aux_l ? n : 0;
        if (!r->logits_cap)
            return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    pk_image im = {0};
    pk_seg_opts so;
    pk_seg_opts_default(&so);
    int rc = pk_record_image(&im, rec, e);
    if (!rc)
        rc = pk_seg_whole_image(r->model, im.px, w, h, 0, so.mean, so.std, r->main_l, r->aux_l,
                                r->ws, e);
    pk_image_free(&im);
    if (!rc)
        rc = pk_logits_encode(out, len, key, &g, k, r->main_l, r->aux_l, e);
    return rc;
}

static int write_meta(struct run *r, pk_pack_writer *w, pk_err *e)
{
    pk_logits_meta m = {0};
    m.version = PK_LOGITS_META_VERSION;
    m.record_version = PK_LOGITS_VERSION;
    m.teacher_hash = r->teacher_hash;
    m.pack_id = r->meta.pack_id;
    m.count = (int)(r->computed + r->kept);
    m.classes = r->meta.classes;
    m.stride = PK_LOGITS_STRIDE;
    m.teacher_step = r->cmeta.step;
    const pk_model_cfg *cfg = pk_model_config(r->model);
    snprintf(m.arch, sizeof m.arch, "%s", pk_arch_name(cfg->arch));
    snprintf(m.stem, sizeof m.stem, "%s", pk_stem_name(cfg->stem));
    uint8_t *buf;
    size_t len;
    int rc = pk_logits_meta_encode(&buf, &len, &m, e);
    if (!rc) {
        rc = pk_pack_writer_put(w, PK_META_KEY, buf, len, e);
        free(buf);
    }
    return rc;
}

static int dump(struct run *r, pk_err *e)
{
    pk_pack_writer *w;
    /* Replacing an existing output was decided by open_existing. */
    if (pk_pack_writer_open(&w, r->o.out, 16, 1, e))
        return e->code;
    if (!(r->ws = pk_seg_ws_new())) {
        pk_pack_writer_abort(w);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    int rc = PK_OK, lo, hi;
    shard_range(r, &lo, &hi);
    pk_progress p;
    pk_progress_init(&p, hi - lo, TOOL, stderr);
    for (int i = lo; i < hi && !rc; i++) {
        const char *key = pk_pack_key(r->pack, i);
        const void *ov;
        size_t olen;
        pk_record_view rec;
        if ((rc = data_record(r, i, &rec, e)))
            break;
        if ((ov = reusable(r, key, &rec, &olen))) {
            rc = pk_pack_writer_put(w, key, ov, olen, e);
            r->kept++;
            r->record_bytes += olen;
        } else if (pk_stop_signals_poll(r->sig) ||
                   (r->o.limit >= 0 && r->computed >= r->o.limit)) {
            /* Stopped: existing records are still copied, nothing computed. */
            r->missing++;
        } else {
            uint8_t *buf = NULL;
            size_t len = 0;
            double t0 = pk_now();
            rc = compute(r, key, &rec, &buf, &len, e);
            r->compute_s += pk_now() - t0;
            if (rc) {
                pk_wrap(e, "%s", key);
                break;
            }
            rc = pk_pack_writer_put(w, key, buf, len, e);
            free(buf);
            r->computed++;
            r->record_bytes += len;
        }
        if (!r->o.quiet && !r->missing) /* once stopped, nothing more is done */
            pk_progress_update(&p, i + 1 - lo, NULL);
    }
    if (!rc)
        rc = write_meta(r, w, e);
    if (rc) {
        pk_progress_break(&p);
        pk_pack_writer_abort(w);
        return rc;
    }
    /* "done N steps" only when every image is in; else the summary (and the
     * interrupt message) say what was done. */
    if (r->o.quiet || r->missing)
        pk_progress_break(&p);
    else
        pk_progress_finish(&p, r->computed + r->kept, NULL);
    return pk_pack_writer_finish(w, e);
}

static void report(const struct run *r, int up_to_date)
{
    struct stat st;
    long long fbytes = stat(r->o.out, &st) == 0 ? (long long)st.st_size : -1;
    long n = r->computed + r->kept;
    double ips = r->compute_s > 0 ? r->computed / r->compute_s : 0.0;
    double bpi = n ? (double)fbytes / n : 0.0, rpi = n ? (double)r->record_bytes / n : 0.0;
    if (up_to_date)
        n = r->meta.count;
    if (r->o.json) {
        printf("{\"images\": %ld, \"computed\": %ld, \"kept\": %ld, \"missing\": %ld, "
               "\"up_to_date\": %s, \"compute_seconds\": %.3f, \"images_per_s\": %.3f, "
               "\"cache_bytes\": %lld, \"bytes_per_image\": %.1f, "
               "\"record_bytes_per_image\": %.1f}\n",
               n, r->computed, r->kept, r->missing, up_to_date ? "true" : "false",
               r->compute_s, ips, fbytes, bpi, rpi);
        return;
    }
    if (up_to_date) {
        printf("%s is up to date: %d images from this teacher and pack\n", r->o.out,
               r->meta.count);
        return;
    }
    printf("images        %ld (computed %ld, kept %ld, missing %ld)\n", n, r->computed,
           r->kept, r->missing);
    printf("compute time  %.2f s\n", r->compute_s);
    printf("images/s      %.2f\n", ips);
    printf("cache bytes   %lld\n", fbytes);
    printf("bytes/image   %.0f (records %.0f)\n", bpi, rpi);
}

static void cleanup(struct run *r)
{
    pk_pack_close(r->resume);
    pk_pack_close(r->pack);
    pk_seg_ws_free(r->ws);
    free(r->main_l);
    free(r->aux_l);
    pk_model_destroy(r->model);
    pk_ctx_destroy(r->ctx);
}

int main(int argc, char **argv)
{
    struct run r = {0};
    int st = parse(&r.o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    signal(SIGXFSZ, SIG_IGN);
    pk_err e = {0, ""};
    if (pk_stop_signals_start(&r.sig, PK_STOP_REPEAT, &e))
        return fail(&e);
    if (r.o.merge) {
        long n = 0;
        if (pk_logits_merge(r.o.merge, r.o.data, (const char *const *)argv + optind,
                            argc - optind, r.o.force, &n, &e))
            return fail(&e);
        if (!r.o.quiet)
            fprintf(stderr, TOOL ": merged %ld images from %d slices into %s\n", n,
                    argc - optind, r.o.merge);
        return 0;
    }
    int done = 0;
    const char *in[] = {r.o.model, r.o.data};
    if (pk_check_output(r.o.out, in, 2, &e))
        return fail(&e);
    if (open_pack(&r, &e) || load_teacher(&r, &e) || open_existing(&r, &done, &e)) {
        cleanup(&r);
        return fail(&e);
    }
    if (!done && dump(&r, &e)) {
        cleanup(&r);
        return fail(&e);
    }
    report(&r, done);
    cleanup(&r);
    int stop = pk_stop_signals_poll(r.sig);
    if (stop) {
        fprintf(stderr, TOOL ": interrupted: %s holds %ld of %d images; run again to resume\n",
                r.o.out, r.computed + r.kept, r.meta.count);
        return 128 + stop;
    }
    return 0;
}
