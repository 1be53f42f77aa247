/* voc-pack: a VOC tree + list -> one LMDB pack file (see voc-pack(1)).
 *
 * Worker threads read, decode, check and encode samples; the main thread
 * writes the records in list order. Workers may run at most WINDOW records
 * ahead of the writer, so memory stays bounded whatever the list length. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/tool_opts.h"
#include "store/pack.h"
#include "core/le_bytes.h"
#include "data/palette.h"
#include "cli/progress.h"
#include "store/record.h"
#include "data/voc_images.h"
#include "data/voc_list.h"
#include "data/voc_sample.h"

#define TOOL "voc-pack"

/* The one piece of global state: set by SIGINT/SIGTERM, polled by the
 * writer loop so an interrupted run removes its temporary file. Unlike the
 * tools that run a model (cli/stop_signals.h), voc-pack takes the signals
 * with a handler on its main thread: a signal must interrupt a blocking
 * read of the list (a FIFO, a terminal), and no oneDNN code runs here. */
static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

struct slot {
    int ready, rc;
    uint8_t *rec;
    size_t len;
    char msg[sizeof(((pk_err *)0)->msg)];
};

struct job {
    const pk_voc_list *list;
    const pk_colour_map *cmap;
    int classes, image_enc, window, unlabeled;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int next_take, next_write, abort;
    struct slot *slots;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (!j->abort && j->next_take < j->list->n &&
               j->next_take >= j->next_write + j->window)
            pthread_cond_wait(&j->cv, &j->mu);
        if (j->abort || j->next_take >= j->list->n) {
            pthread_mutex_unlock(&j->mu);
            return NULL;
        }
        int i = j->next_take++;
        pthread_mutex_unlock(&j->mu);

        struct slot *s = &j->slots[i % j->window];
        pk_err e = {0, ""};
        s->rec = NULL;
        s->rc = j->unlabeled
                    ? pk_voc_image_encode(&s->rec, &s->len, &j->list->v[i], j->image_enc, &e)
                    : pk_voc_sample_encode(&s->rec, &s->len, &j->list->v[i], j->image_enc,
                                           j->cmap, j->classes, &e);
        snprintf(s->msg, sizeof s->msg, "%s", s->rc ? e.msg : "");

        pthread_mutex_lock(&j->mu);
        s->ready = 1;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
}

/* Ends a progress line redrawn on a TTY before a message is printed. */
static void end_line(pk_progress *p)
{
    if (p->drawn) {
        fputc('\n', stderr);
        p->drawn = 0;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " [options] VOC_ROOT (--split NAME | --list FILE) -o OUT\n"
            "       " TOOL " [options] --unlabeled [--split NAME | --list FILE] ROOT -o OUT\n"
            "Packs a PASCAL VOC style tree into one LMDB file, one record per list entry.\n"
            "\n"
            "  -s, --split NAME      ids from VOC_ROOT/ImageSets/Segmentation/NAME.txt\n"
            "  -l, --list FILE       ids, or 'image label' path pairs relative to VOC_ROOT\n"
            "      --unlabeled       images without labels (for student-distill --unlabeled):\n"
            "                        the list's ids or image paths, or without --split and\n"
            "                        --list every *.jpg in ROOT; no label is read\n"
            "  -L, --label-dir DIR   labels of id lists from VOC_ROOT/DIR (default\n"
            "                        SegmentationClass, else SegmentationClassAug)\n"
            "  -o, --output OUT      the pack file to write\n"
            "      --store rgb|jpeg  store decoded RGB8 (default) or the original JPEG\n"
            "  -j, --jobs N          decoding threads (default 2)\n"
            "  -c, --classes K       class count; labels must be < K or 255 (default 21)\n"
            "      --batch N         records per LMDB transaction (default 64)\n"
            "  -f, --force           replace OUT if it exists\n"
            "      --skip-bad        skip bad samples (reported) instead of failing\n"
            "  -q, --quiet           no progress or summary\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n");
}

struct opts {
    const char *root, *split, *list, *label_dir, *out;
    int image_enc, jobs, classes, batch, force, skip_bad, quiet, unlabeled;
};

enum { OPT_STORE = 256, OPT_SKIP, OPT_BATCH, OPT_UNLAB };

static const struct option longopts[] = {
    {"split", required_argument, 0, 's'},  {"list", required_argument, 0, 'l'},
    {"label-dir", required_argument, 0, 'L'}, {"output", required_argument, 0, 'o'},
    {"store", required_argument, 0, OPT_STORE}, {"jobs", required_argument, 0, 'j'},
    {"classes", required_argument, 0, 'c'}, {"batch", required_argument, 0, OPT_BATCH},
    {"force", no_argument, 0, 'f'},        {"skip-bad", no_argument, 0, OPT_SKIP},
    {"quiet", no_argument, 0, 'q'},        {"unlabeled", no_argument, 0, OPT_UNLAB},
    {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "s:l:L:o:j:c:fq", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    const pk_num_opt nums[] = {
        {'j', 1, 256, "--jobs takes 1..256", .i = &o->jobs},
        {'c', 1, PK_CLASSES_MAX, "--classes takes 1..255", .i = &o->classes},
        {OPT_BATCH, 1, 1 << 20, "--batch takes a positive count", .i = &o->batch},
    };
    switch (c) {
    case 's': o->split = arg; break;
    case 'l': o->list = arg; break;
    case 'L': o->label_dir = arg; break;
    case 'o': o->out = arg; break;
    case 'f': o->force = 1; break;
    case 'q': o->quiet = 1; break;
    case OPT_SKIP: o->skip_bad = 1; break;
    case OPT_UNLAB: o->unlabeled = 1; break;
    case OPT_STORE:
        if (!strcmp(arg, "rgb"))
            o->image_enc = PK_IMG_RGB8;
        else if (!strcmp(arg, "jpeg"))
            o->image_enc = PK_IMG_JPEG;
        else
            return pk_usage_error(TOOL, "--store takes rgb or jpeg");
        break;
    default: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    }
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.image_enc = PK_IMG_RGB8, .jobs = 2, .classes = 21, .batch = 64};
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st != PK_GO_ON)
        return st;
    if (optind != argc - 1)
        return pk_usage_error(TOOL, optind >= argc ? "missing VOC_ROOT" : "too many arguments");
    o->root = argv[optind];
    if (!o->out)
        return pk_usage_error(TOOL, "missing -o OUT");
    if (o->unlabeled && o->label_dir)
        return pk_usage_error(TOOL, "--label-dir does not go with --unlabeled");
    if (o->split && o->list)
        return pk_usage_error(TOOL, "give exactly one of --split and --list");
    if (!o->split && !o->list && !o->unlabeled)
        return pk_usage_error(TOOL, "give exactly one of --split and --list (or --unlabeled "
                                    "for a folder of images)");
    return PK_GO_ON;
}

struct skipped {
    int n;
    char *ids; /* space-separated */
    size_t len;
};

static void note_skip(struct skipped *s, const char *id)
{
    size_t k = strlen(id);
    char *p = realloc(s->ids, s->len + k + 2);
    s->n++;
    if (!p)
        return; /* the count stays right; only the id list is short */
    s->ids = p;
    if (s->len)
        p[s->len++] = ' ';
    memcpy(p + s->len, id, k + 1);
    s->len += k;
}

/* One run: the job the workers share and what the writer keeps. */
struct run {
    struct opts o;
    pk_voc_list list;
    pk_meta meta;
    pk_colour_map cmap;
    pk_pack_writer *w;
    struct job j;
    pthread_t *th;
    int started, failed, written;
    struct skipped skip;
    uint64_t pack_id;
    pk_progress prog;
};

static void catch_signals(void)
{
    /* With `ulimit -f` a write past the limit must fail with EFBIG (and be
     * reported) rather than kill us with the temp file left behind. */
    signal(SIGXFSZ, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The list, the pack's metadata (names, palette) and the colour map of
 * RGB labels. 0, or 1 after the message. */
static int read_inputs(struct run *r)
{
    const struct opts *o = &r->o;
    pk_err e = {0, ""};
    char *list_path = NULL;
    if (o->split && asprintf(&list_path, "%s/ImageSets/Segmentation/%s.txt", o->root,
                             o->split) < 0) {
        fprintf(stderr, TOOL ": out of memory\n");
        return 1;
    }
    const char *list = o->split ? list_path : o->list;
    int rc = !o->unlabeled ? pk_voc_list_read(&r->list, o->root, list, o->label_dir, &e)
             : list        ? pk_voc_images_read(&r->list, o->root, list, &e)
                           : pk_voc_images_dir(&r->list, o->root, &e);
    free(list_path);
    if (rc) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 1;
    }
    pk_meta *meta = &r->meta;
    memset(meta, 0, sizeof *meta);
    pk_voc_palette(meta->palette);
    for (int i = 0; i < o->classes; i++) {
        const char *name = i < 21 ? pk_voc_class_name(i) : NULL;
        if (name)
            snprintf(meta->names[i], sizeof meta->names[i], "%s", name);
        else
            snprintf(meta->names[i], sizeof meta->names[i], "class%d", i);
    }
    if (pk_colour_map_init(&r->cmap, (const uint8_t(*)[3])meta->palette, o->classes, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        pk_voc_list_free(&r->list);
        return 1;
    }
    return 0;
}

/* Starts o.jobs workers; 0, or 1 after the message. */
static int start_workers(struct run *r)
{
    struct job *j = &r->j;
    *j = (struct job){.list = &r->list, .cmap = &r->cmap, .classes = r->o.classes,
                      .image_enc = r->o.image_enc, .window = 4 * r->o.jobs,
                      .unlabeled = r->o.unlabeled};
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->slots = calloc((size_t)j->window, sizeof *j->slots);
    r->th = calloc((size_t)r->o.jobs, sizeof *r->th);
    if (!j->slots || !r->th) {
        fprintf(stderr, TOOL ": out of memory\n");
        return 1;
    }
    /* workers never take the signals: the writer loop handles them */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int failed = 0;
    for (; r->started < r->o.jobs; r->started++) {
        int prc = pthread_create(&r->th[r->started], NULL, worker, j);
        if (prc) {
            fprintf(stderr, TOOL ": cannot start a thread: %s\n", strerror(prc));
            failed = 1;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return failed;
}

/* Waits until slot s is ready or a signal came; 0, or 1 when interrupted. */
static int wait_slot(struct run *r, struct slot *s)
{
    struct job *j = &r->j;
    pthread_mutex_lock(&j->mu);
    while (!s->ready && !g_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    pthread_mutex_unlock(&j->mu);
    return g_stop != 0;
}

/* Writes (or skips) the sample of slot s, list entry i; 0, or 1 after the
 * message. */
static int store_slot(struct run *r, int i, const struct slot *s)
{
    pk_err e = {0, ""};
    const char *id = r->list.v[i].id;
    if (s->rc != PK_OK) {
        end_line(&r->prog);
        if (r->o.skip_bad) {
            fprintf(stderr, TOOL ": %s: %s (skipped)\n", id, s->msg);
            note_skip(&r->skip, id);
            return 0;
        }
        fprintf(stderr, TOOL ": %s: %s\n", id, s->msg);
        return 1;
    }
    char key[PK_RECORD_ID_MAX + 16];
    int rc = pk_record_key(key, sizeof key, r->written, id, &e);
    if (rc == PK_OK)
        rc = pk_pack_writer_put(r->w, key, s->rec, s->len, &e);
    if (rc == PK_OK) {
        pk_pack_id_add(&r->pack_id, key, pk_get32(s->rec + s->len - 4));
        r->written++;
        return 0;
    }
    end_line(&r->prog);
    fprintf(stderr, TOOL ": %s\n", e.msg);
    return 1;
}

/* The writer loop: the records in list order, as the workers finish them. */
static void write_records(struct run *r)
{
    struct job *j = &r->j;
    for (int i = 0; !r->failed && i < r->list.n; i++) {
        struct slot *s = &j->slots[i % j->window];
        if (wait_slot(r, s)) {
            end_line(&r->prog);
            fprintf(stderr, TOOL ": interrupted; nothing written\n");
            r->failed = 1;
            break;
        }
        r->failed = store_slot(r, i, s);
        free(s->rec);
        s->rec = NULL;
        pthread_mutex_lock(&j->mu);
        s->ready = 0;
        j->next_write++;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        if (!r->o.quiet)
            pk_progress_update(&r->prog, i + 1, NULL);
    }
}

static void stop_workers(struct run *r)
{
    struct job *j = &r->j;
    pthread_mutex_lock(&j->mu);
    j->abort = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    for (int t = 0; t < r->started; t++)
        pthread_join(r->th[t], NULL);
    for (int t = 0; j->slots && t < j->window; t++)
        free(j->slots[t].rec);
}

/* The metadata record, then the pack moved into place; on any failure
 * the pack is dropped. */
static void finish_pack(struct run *r)
{
    pk_err e = {0, ""};
    if (!r->failed && r->written == 0) {
        fprintf(stderr, TOOL ": no valid samples: nothing written\n");
        r->failed = 1;
    }
    if (!r->failed) {
        pk_meta *meta = &r->meta;
        meta->version = PK_META_VERSION;
        meta->record_version = PK_RECORD_VERSION;
        meta->count = r->written;
        meta->classes = r->o.classes;
        meta->image_enc = r->o.image_enc;
        meta->pack_id = r->pack_id;
        meta->unlabeled = r->o.unlabeled;
        uint8_t *mbuf;
        size_t mlen;
        int rc = pk_meta_encode(&mbuf, &mlen, meta, &e);
        if (rc == PK_OK) {
            rc = pk_pack_writer_put(r->w, PK_META_KEY, mbuf, mlen, &e);
            free(mbuf);
        }
        if (rc == PK_OK) {
            rc = pk_pack_writer_finish(r->w, &e);
            r->w = NULL;
        }
        if (rc != PK_OK) {
            end_line(&r->prog);
            fprintf(stderr, TOOL ": %s\n", e.msg);
            r->failed = 1;
        }
    }
    if (r->failed)
        pk_pack_writer_abort(r->w);
}

/* The summary line (stdout) and the skipped ids (stderr). */
static void report(const struct run *r, double dt)
{
    if (!r->o.quiet)
        printf("packed %d records (%s%s) into %s in %.2f s, %.1f images/s, pack id %016llx\n",
               r->written, r->o.image_enc == PK_IMG_JPEG ? "jpeg" : "rgb",
               r->o.unlabeled ? ", unlabelled" : "", r->o.out, dt,
               dt > 0 ? r->written / dt : 0.0, (unsigned long long)r->pack_id);
    if (r->skip.n)
        fprintf(stderr, TOOL ": skipped %d of %d: %s\n", r->skip.n, r->list.n,
                r->skip.ids ? r->skip.ids : "");
}

int main(int argc, char **argv)
{
    struct run r = {.pack_id = PK_PACK_ID_INIT};
    int st = parse(&r.o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    catch_signals();
    if (read_inputs(&r))
        return g_stop ? 128 + g_stop : 1;
    pk_err e = {0, ""};
    if (pk_pack_writer_open(&r.w, r.o.out, r.o.batch, r.o.force, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        pk_voc_list_free(&r.list);
        return 1;
    }
    pk_progress_init(&r.prog, r.list.n, TOOL, stderr);
    r.prog.interval = 5;
    r.failed = start_workers(&r);
    write_records(&r);
    stop_workers(&r);
    finish_pack(&r);
    double dt = pk_now() - r.prog.t0;
    end_line(&r.prog);
    if (!r.failed)
        report(&r, dt);
    free(r.skip.ids);
    free(r.th);
    free(r.j.slots);
    pthread_mutex_destroy(&r.j.mu);
    pthread_cond_destroy(&r.j.cv);
    pk_voc_list_free(&r.list);
    if (!r.failed && fflush(stdout) != 0) {
        fprintf(stderr, TOOL ": stdout: %s\n", strerror(errno));
        return 1;
    }
    return g_stop ? 128 + g_stop : r.failed; /* interrupted: 130 or 143 */
}
