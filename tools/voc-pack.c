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
#include "data/voc_list.h"
#include "data/voc_sample.h"

#define TOOL "voc-pack"

/* The one piece of global state: set by SIGINT/SIGTERM, polled by the
 * writer loop so an interrupted run removes its temporary file. */
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
    int classes, image_enc, window;
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
        s->rc = pk_voc_sample_encode(&s->rec, &s->len, &j->list->v[i], j->image_enc, j->cmap,
                                     j->classes, &e);
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
            "Packs a PASCAL VOC style tree into one LMDB file, one record per list entry.\n"
            "\n"
            "  -s, --split NAME      ids from VOC_ROOT/ImageSets/Segmentation/NAME.txt\n"
            "  -l, --list FILE       ids, or 'image label' path pairs relative to VOC_ROOT\n"
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

static int parse_int(const char *s, int lo, int hi, int *out)
{
    long v;
    if (pk_parse_long(s, lo, hi, &v, NULL))
        return -1;
    *out = (int)v;
    return 0;
}

struct opts {
    const char *root, *split, *list, *label_dir, *out;
    int image_enc, jobs, classes, batch, force, skip_bad, quiet;
};

/* Returns -1 to go on, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_SKIP, OPT_BATCH };
    static const struct option lo[] = {
        {"split", required_argument, 0, 's'},  {"list", required_argument, 0, 'l'},
        {"label-dir", required_argument, 0, 'L'}, {"output", required_argument, 0, 'o'},
        {"store", required_argument, 0, OPT_STORE}, {"jobs", required_argument, 0, 'j'},
        {"classes", required_argument, 0, 'c'}, {"batch", required_argument, 0, OPT_BATCH},
        {"force", no_argument, 0, 'f'},        {"skip-bad", no_argument, 0, OPT_SKIP},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    *o = (struct opts){.image_enc = PK_IMG_RGB8, .jobs = 2, .classes = 21, .batch = 64};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":s:l:L:o:j:c:fqhV", lo, NULL)) != -1) {
        switch (c) {
        case 's': o->split = optarg; break;
        case 'l': o->list = optarg; break;
        case 'L': o->label_dir = optarg; break;
        case 'o': o->out = optarg; break;
        case 'f': o->force = 1; break;
        case 'q': o->quiet = 1; break;
        case OPT_SKIP: o->skip_bad = 1; break;
        case OPT_STORE:
            if (!strcmp(optarg, "rgb"))
                o->image_enc = PK_IMG_RGB8;
            else if (!strcmp(optarg, "jpeg"))
                o->image_enc = PK_IMG_JPEG;
            else
                return pk_usage_error(TOOL, "--store takes rgb or jpeg");
            break;
        case 'j':
            if (parse_int(optarg, 1, 256, &o->jobs))
                return pk_usage_error(TOOL, "--jobs takes 1..256");
            break;
        case 'c':
            if (parse_int(optarg, 1, PK_CLASSES_MAX, &o->classes))
                return pk_usage_error(TOOL, "--classes takes 1..255");
            break;
        case OPT_BATCH:
            if (parse_int(optarg, 1, 1 << 20, &o->batch))
                return pk_usage_error(TOOL, "--batch takes a positive count");
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " " PSPKD_VERSION "\n"); return 0;
        case ':': {
            char m[80];
            pk_opt_name(m, sizeof m, "option '%s' needs an argument", optopt, argv[optind - 1]);
            return pk_usage_error(TOOL, m);
        }
        default: {
            char m[80];
            pk_opt_name(m, sizeof m, "unknown option '%s'", optopt, argv[optind - 1]);
            return pk_usage_error(TOOL, m);
        }
        }
    }
    if (optind != argc - 1)
        return pk_usage_error(TOOL, optind >= argc ? "missing VOC_ROOT" : "too many arguments");
    o->root = argv[optind];
    if (!o->out)
        return pk_usage_error(TOOL, "missing -o OUT");
    if (!!o->split == !!o->list)
        return pk_usage_error(TOOL, "give exactly one of --split and --list");
    return -1;
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

int main(int argc, char **argv)
{
    struct opts o;
    int st = parse(&o, argc, argv);
    if (st >= 0)
        return st;

    /* With `ulimit -f` a write past the limit must fail with EFBIG (and be
     * reported) rather than kill us with the temp file left behind. */
    signal(SIGXFSZ, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    pk_err e = {0, ""};
    char *list_path = NULL;
    if (o.split && asprintf(&list_path, "%s/ImageSets/Segmentation/%s.txt", o.root,
                            o.split) < 0) {
        fprintf(stderr, TOOL ": out of memory\n");
        return 1;
    }
    pk_voc_list list;
    if (pk_voc_list_read(&list, o.root, o.split ? list_path : o.list, o.label_dir, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        free(list_path);
        return 1;
    }
    free(list_path);

    pk_meta meta;
    memset(&meta, 0, sizeof meta);
    pk_voc_palette(meta.palette);
    for (int i = 0; i < o.classes; i++) {
        const char *name = i < 21 ? pk_voc_class_name(i) : NULL;
        if (name)
            snprintf(meta.names[i], sizeof meta.names[i], "%s", name);
        else
            snprintf(meta.names[i], sizeof meta.names[i], "class%d", i);
    }
    pk_colour_map cmap;
    if (pk_colour_map_init(&cmap, (const uint8_t(*)[3])meta.palette, o.classes, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        pk_voc_list_free(&list);
        return 1;
    }

    pk_pack_writer *w;
    if (pk_pack_writer_open(&w, o.out, o.batch, o.force, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        pk_voc_list_free(&list);
        return 1;
    }

    struct job j = {.list = &list, .cmap = &cmap, .classes = o.classes,
                    .image_enc = o.image_enc, .window = 4 * o.jobs};
    j.slots = calloc((size_t)j.window, sizeof *j.slots);
    pthread_t *th = calloc((size_t)o.jobs, sizeof *th);
    if (!j.slots || !th) {
        fprintf(stderr, TOOL ": out of memory\n");
        pk_pack_writer_abort(w);
        pk_voc_list_free(&list);
        return 1;
    }
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    /* workers never take the signals: the writer loop handles them */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int started = 0, failed = 0;
    for (; started < o.jobs; started++) {
        int prc = pthread_create(&th[started], NULL, worker, &j);
        if (prc) {
            fprintf(stderr, TOOL ": cannot start a thread: %s\n", strerror(prc));
            failed = 1;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct skipped skip = {0, NULL, 0};
    uint64_t pack_id = PK_PACK_ID_INIT;
    int written = 0;
    pk_progress prog;
    pk_progress_init(&prog, list.n, TOOL, stderr);
    prog.interval = 5;
    for (int i = 0; !failed && i < list.n; i++) {
        struct slot *s = &j.slots[i % j.window];
        pthread_mutex_lock(&j.mu);
        while (!s->ready && !g_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&j.cv, &j.mu, &ts);
        }
        pthread_mutex_unlock(&j.mu);
        if (g_stop) {
            end_line(&prog);
            fprintf(stderr, TOOL ": interrupted; nothing written\n");
            failed = 1;
            break;
        }
        const char *id = list.v[i].id;
        if (s->rc != PK_OK)
            end_line(&prog);
        if (s->rc != PK_OK) {
            if (o.skip_bad) {
                fprintf(stderr, TOOL ": %s: %s (skipped)\n", id, s->msg);
                note_skip(&skip, id);
            } else {
                fprintf(stderr, TOOL ": %s: %s\n", id, s->msg);
                failed = 1;
            }
        } else {
            char key[PK_RECORD_ID_MAX + 16];
            int rc = pk_record_key(key, sizeof key, written, id, &e);
            if (rc == PK_OK)
                rc = pk_pack_writer_put(w, key, s->rec, s->len, &e);
            if (rc == PK_OK) {
                pk_pack_id_add(&pack_id, key, pk_get32(s->rec + s->len - 4));
                written++;
            } else {
                end_line(&prog);
                fprintf(stderr, TOOL ": %s\n", e.msg);
                failed = 1;
            }
        }
        free(s->rec);
        s->rec = NULL;
        pthread_mutex_lock(&j.mu);
        s->ready = 0;
        j.next_write++;
        pthread_cond_broadcast(&j.cv);
        pthread_mutex_unlock(&j.mu);
        if (!o.quiet)
            pk_progress_update(&prog, i + 1, NULL);
    }

    pthread_mutex_lock(&j.mu);
    j.abort = 1;
    pthread_cond_broadcast(&j.cv);
    pthread_mutex_unlock(&j.mu);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < j.window; t++)
        free(j.slots[t].rec);

    if (!failed && written == 0) {
        fprintf(stderr, TOOL ": no valid samples: nothing written\n");
        failed = 1;
    }
    if (!failed) {
        meta.version = PK_META_VERSION;
        meta.record_version = PK_RECORD_VERSION;
        meta.count = written;
        meta.classes = o.classes;
        meta.image_enc = o.image_enc;
        meta.pack_id = pack_id;
        uint8_t *mbuf;
        size_t mlen;
        int rc = pk_meta_encode(&mbuf, &mlen, &meta, &e);
        if (rc == PK_OK) {
            rc = pk_pack_writer_put(w, PK_META_KEY, mbuf, mlen, &e);
            free(mbuf);
        }
        if (rc == PK_OK) {
            rc = pk_pack_writer_finish(w, &e);
            w = NULL;
        }
        if (rc != PK_OK) {
            end_line(&prog);
            fprintf(stderr, TOOL ": %s\n", e.msg);
            failed = 1;
        }
    }
    if (failed)
        pk_pack_writer_abort(w);
    double dt = pk_now() - prog.t0;
    end_line(&prog);
    if (!failed && !o.quiet) {
        printf("packed %d records (%s) into %s in %.2f s, %.1f images/s, pack id %016llx\n",
               written, o.image_enc == PK_IMG_JPEG ? "jpeg" : "rgb", o.out, dt,
               dt > 0 ? written / dt : 0.0, (unsigned long long)pack_id);
    }
    if (!failed && skip.n)
        fprintf(stderr, TOOL ": skipped %d of %d: %s\n", skip.n, list.n,
                skip.ids ? skip.ids : "");
    free(skip.ids);
    free(th);
    free(j.slots);
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    pk_voc_list_free(&list);
    if (!failed && fflush(stdout) != 0) {
        fprintf(stderr, TOOL ": stdout: %s\n", strerror(errno));
        return 1;
    }
    return failed ? 1 : 0;
}
