/* voc-synth: writes the seeded synthetic data set in the VOC layout (see
 * voc-synth(1); the drawing is lib/data/synth.c). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/stop_signals.h"
#include "cli/tool_opts.h"
#include "core/mkdir_p.h"
#include "data/image.h"
#include "data/palette.h"
#include "data/synth.h"

#define TOOL "voc-synth"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " [options] -o DIR\n"
            "Writes a deterministic synthetic segmentation data set in the PASCAL VOC layout:\n"
            "DIR/JPEGImages/ID.jpg, DIR/SegmentationClass/ID.png (palette labels, 255 band on\n"
            "object borders) and DIR/ImageSets/Segmentation/{train,val,trainval}.txt.\n"
            "\n"
            "  -o, --output DIR       the data set root (created)\n"
            "  -n, --train N          training images (default 200)\n"
            "      --val N            validation images (default 50)\n"
            "      --size MIN[:MAX]   width and height each drawn from MIN..MAX (default 97:129)\n"
            "  -s, --seed S           random seed (default 1)\n"
            "  -c, --classes LIST     comma-separated VOC class ids, 1 to 8 of them\n"
            "                         (default 1,3,7,8,12,15)\n"
            "      --objects MIN[:MAX] objects per image (default 1:4)\n"
            "      --border R         255 band: pixels within R of another class (default 1)\n"
            "      --quality Q        JPEG quality (default 90)\n"
            "      --describe         print each class's shape and colours and exit\n"
            "  -f, --force            write into a DIR that is not empty\n"
            "  -q, --quiet            no summary line\n"
            "  -h, --help             this help\n"
            "  -V, --version          print the version\n");
}

/* "MIN" or "MIN:MAX". */
static int parse_range(const char *s, long lo, long hi, int *a, int *b)
{
    long x, y;
    char *end;
    if (pk_parse_long(s, lo, hi, &x, &end))
        return -1;
    if (*end == '\0') {
        *a = *b = (int)x;
        return 0;
    }
    if (*end != ':' || pk_parse_long(end + 1, lo, hi, &y, NULL) || y < x)
        return -1;
    *a = (int)x;
    *b = (int)y;
    return 0;
}

static int parse_classes(const char *s, pk_synth_opts *o)
{
    int n = 0;
    while (*s) {
        long v;
        char *end;
        if (n == PK_SYNTH_MAX_CLASSES || pk_parse_long(s, 1, 254, &v, &end))
            return -1;
        o->class_ids[n++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    o->nclasses = n;
    return n ? 0 : -1;
}

/* 1 when dir exists and has entries, 0 when absent or empty, -1 on error. */
static int nonempty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n > 0;
}

struct strbuf {
    char *p;
    size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->len + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (b->len + k + 1 > cap)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, k + 1);
    b->len += k;
    return 0;
}

struct opts {
    pk_synth_opts so;
    const char *dir;
    int ntrain, nval, quality, force, quiet, describe;
};

enum { OPT_VAL = 256, OPT_SIZE, OPT_OBJECTS, OPT_BORDER, OPT_QUALITY, OPT_DESCRIBE };

static const struct option longopts[] = {
    {"output", required_argument, 0, 'o'},   {"train", required_argument, 0, 'n'},
    {"val", required_argument, 0, OPT_VAL},  {"size", required_argument, 0, OPT_SIZE},
    {"seed", required_argument, 0, 's'},     {"classes", required_argument, 0, 'c'},
    {"objects", required_argument, 0, OPT_OBJECTS},
    {"border", required_argument, 0, OPT_BORDER},
    {"quality", required_argument, 0, OPT_QUALITY},
    {"describe", no_argument, 0, OPT_DESCRIBE},
    {"force", no_argument, 0, 'f'},          {"quiet", no_argument, 0, 'q'},
    {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "o:n:s:c:fq", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    const pk_num_opt nums[] = {
        {'n', 0, 1000000, "--train takes 0..1000000", .i = &o->ntrain},
        {OPT_VAL, 0, 1000000, "--val takes 0..1000000", .i = &o->nval},
        {OPT_BORDER, 0, 8, "--border takes 0..8", .i = &o->so.border},
        {OPT_QUALITY, 1, 100, "--quality takes 1..100", .i = &o->quality},
    };
    switch (c) {
    case 'o': o->dir = arg; break;
    case OPT_DESCRIBE: o->describe = 1; break;
    case 'f': o->force = 1; break;
    case 'q': o->quiet = 1; break;
    case OPT_SIZE:
        if (parse_range(arg, 16, 4096, &o->so.min_size, &o->so.max_size))
            return pk_usage_error(TOOL, "--size takes MIN[:MAX] within 16..4096");
        break;
    case OPT_OBJECTS:
        if (parse_range(arg, 1, 16, &o->so.min_objects, &o->so.max_objects))
            return pk_usage_error(TOOL, "--objects takes MIN[:MAX] within 1..16");
        break;
    case 's':
        if (pk_parse_seed(arg, &o->so.seed))
            return pk_usage_error(TOOL, "--seed takes a non-negative integer");
        break;
    case 'c':
        if (parse_classes(arg, &o->so))
            return pk_usage_error(TOOL, "--classes takes 1..8 comma-separated ids in 1..254");
        break;
    default: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    }
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.ntrain = 200, .nval = 50, .quality = 90};
    pk_synth_defaults(&o->so);
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st != PK_GO_ON)
        return st;
    if (optind != argc)
        return pk_usage_error(TOOL, "too many arguments");
    pk_err e = {0, ""};
    if (pk_synth_check(&o->so, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 2;
    }
    if (o->describe)
        return PK_GO_ON;
    if (!o->dir)
        return pk_usage_error(TOOL, "missing -o DIR");
    if (o->ntrain + o->nval == 0)
        return pk_usage_error(TOOL, "nothing to write: --train and --val are both 0");
    return PK_GO_ON;
}

static void describe(const pk_synth_opts *so)
{
    for (int k = 0; k < so->nclasses; k++) {
        const char *name = pk_voc_class_name(so->class_ids[k]);
        printf("%d %s: %s\n", so->class_ids[k], name ? name : "-", pk_synth_class_desc(k));
    }
}

/* The output directory: absent or empty unless --force. 0, or the exit
 * status after the message. */
static int check_dir(const struct opts *o)
{
    int ne = nonempty_dir(o->dir);
    if (ne < 0) {
        fprintf(stderr, TOOL ": %s: %s\n", o->dir, strerror(errno));
        return 1;
    }
    if (ne && !o->force) {
        fprintf(stderr, TOOL ": %s: exists and is not empty (use --force)\n", o->dir);
        return 1;
    }
    return 0;
}

/* What one run writes with. */
struct writer {
    const struct opts *o;
    pk_stop_signals *sig;     /* SIGINT/SIGTERM, polled between samples */
    char *sub[3];             /* DIR's images, labels and lists folders */
    struct strbuf lists[3];   /* train, val, trainval */
    uint8_t palette[256][3];
    long pixels;              /* the images' total size */
    long started;             /* samples begun (their files may exist) */
};

/* One sample: its JPEG, its label PNG, its line in the lists. */
static int write_sample(struct writer *w, long i, pk_err *e)
{
    char id[32], line[40];
    snprintf(id, sizeof id, "synth_%06ld", i);
    pk_image img = {0}, lab = {0};
    int rc = pk_synth_sample(&img, &lab, &w->o->so, (int)i, e);
    char *jp = NULL, *pp = NULL;
    if (rc == PK_OK && (asprintf(&jp, "%s/%s.jpg", w->sub[0], id) < 0 ||
                        asprintf(&pp, "%s/%s.png", w->sub[1], id) < 0))
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
    if (rc == PK_OK)
        rc = pk_jpeg_write(jp, &img, w->o->quality, e);
    if (rc == PK_OK)
        rc = pk_png_write_palette(pp, &lab, (const uint8_t(*)[3])w->palette, 256, e);
    snprintf(line, sizeof line, "%s\n", id);
    if (rc == PK_OK && (sb_add(&w->lists[i < w->o->ntrain ? 0 : 1], line) ||
                        sb_add(&w->lists[2], line)))
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
    if (rc == PK_OK)
        w->pixels += (long)img.w * img.h;
    free(jp);
    free(pp);
    pk_image_free(&img);
    pk_image_free(&lab);
    return rc;
}

/* The folders, every sample, then the three lists. */
static int write_all(struct writer *w, pk_err *e)
{
    static const char *const folders[3] = {"JPEGImages", "SegmentationClass",
                                           "ImageSets/Segmentation"};
    static const char *const lnames[3] = {"train", "val", "trainval"};
    const struct opts *o = w->o;
    for (int k = 0; k < 3; k++) {
        if (asprintf(&w->sub[k], "%s/%s", o->dir, folders[k]) < 0) {
            w->sub[k] = NULL;
            return pk_fail(e, PK_ENOMEM, "out of memory");
        }
        if (pk_mkdir_p(w->sub[k], e))
            return e->code;
    }
    int rc = PK_OK;
    for (long i = 0; i < (long)o->ntrain + o->nval && rc == PK_OK; i++) {
        if (pk_stop_signals_poll(w->sig))
            return pk_fail(e, PK_EIO, "interrupted after %ld images; nothing kept", i);
        w->started = i + 1;
        rc = write_sample(w, i, e);
    }
    for (int k = 0; k < 3 && rc == PK_OK; k++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s.txt", w->sub[2], lnames[k]) < 0)
            rc = pk_fail(e, PK_ENOMEM, "out of memory");
        else
            rc = pk_file_write(path, w->lists[k].p ? w->lists[k].p : "", w->lists[k].len, e);
        free(path);
    }
    return rc;
}

/* unlink or rmdir "DIR/NAME" (NAME a printf format); the result is
 * irrelevant: a folder that holds files from before this run stays. */
static void remove_in(int dir_too, const char *dir, const char *fmt, const char *a,
                      const char *b)
{
    char *path = NULL;
    char name[256];
    snprintf(name, sizeof name, fmt, a, b);
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return;
    if (dir_too)
        rmdir(path);
    else
        unlink(path);
    free(path);
}

/* After a failure (a full disk, an interrupt): removes every file this run
 * may have written, then the folders it leaves empty, so no partial tree
 * stays behind. */
static void clean_up(const struct writer *w)
{
    const char *dir = w->o->dir;
    for (long i = 0; i < w->started; i++) {
        char id[32];
        snprintf(id, sizeof id, "synth_%06ld", i);
        remove_in(0, dir, "JPEGImages/%s%s", id, ".jpg");
        remove_in(0, dir, "SegmentationClass/%s%s", id, ".png");
    }
    static const char *const lnames[3] = {"train", "val", "trainval"};
    for (int k = 0; k < 3; k++)
        remove_in(0, dir, "ImageSets/Segmentation/%s%s", lnames[k], ".txt");
    static const char *const folders[4] = {"JPEGImages", "SegmentationClass",
                                           "ImageSets/Segmentation", "ImageSets"};
    for (int k = 0; k < 4; k++)
        remove_in(1, dir, "%s%s", folders[k], "");
    rmdir(dir);
}

/* Writes the data set; 0, or the exit status after the message. */
static int run(const struct opts *o, pk_stop_signals *sig, long *pixels)
{
    struct writer w = {.o = o, .sig = sig};
    pk_voc_palette(w.palette);
    pk_err e = {0, ""};
    int rc = write_all(&w, &e);
    for (int k = 0; k < 3; k++) {
        free(w.lists[k].p);
        free(w.sub[k]);
    }
    if (rc) {
        clean_up(&w);
        fprintf(stderr, TOOL ": %s\n", e.msg);
        int stop = pk_stop_signals_poll(sig);
        return stop ? 128 + stop : 1;
    }
    *pixels = w.pixels;
    return 0;
}

static void report(const struct opts *o, long pixels)
{
    printf("wrote %d train + %d val images (%d classes, mean %.0f px, seed %llu) to %s\n",
           o->ntrain, o->nval, o->so.nclasses, (double)pixels / (o->ntrain + o->nval),
           (unsigned long long)o->so.seed, o->dir);
}

int main(int argc, char **argv)
{
    struct opts o;
    int st = parse(&o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    if (o.describe) {
        describe(&o.so);
        return 0;
    }
    long pixels = 0;
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a write error, not a kill */
    pk_stop_signals *sig;
    pk_err e;
    if (pk_stop_signals_start(&sig, PK_STOP_REPEAT, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 1;
    }
    if ((st = check_dir(&o)) || (st = run(&o, sig, &pixels)))
        return st;
    if (!o.quiet)
        report(&o, pixels);
    return 0;
}
