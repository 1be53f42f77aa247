/* voc-synth: writes the seeded synthetic data set in the VOC layout (see
 * voc-synth(1); the drawing is lib/data/synth.c). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/tool_opts.h"
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

static int mkdir_p(const char *path, pk_err *e)
{
    char *p = strdup(path);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    for (char *q = p + 1;; q++) {
        int end = *q == '\0';
        if (*q == '/' || end) {
            *q = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int err = errno;
                pk_fail(e, PK_EIO, "%s: %s", p, strerror(err));
                free(p);
                return PK_EIO;
            }
            if (end)
                break;
            *q = '/';
        }
    }
    free(p);
    return PK_OK;
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

int main(int argc, char **argv)
{
    enum { OPT_VAL = 256, OPT_SIZE, OPT_OBJECTS, OPT_BORDER, OPT_QUALITY, OPT_DESCRIBE };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'},   {"train", required_argument, 0, 'n'},
        {"val", required_argument, 0, OPT_VAL},  {"size", required_argument, 0, OPT_SIZE},
        {"seed", required_argument, 0, 's'},     {"classes", required_argument, 0, 'c'},
        {"objects", required_argument, 0, OPT_OBJECTS},
        {"border", required_argument, 0, OPT_BORDER},
        {"quality", required_argument, 0, OPT_QUALITY},
        {"describe", no_argument, 0, OPT_DESCRIBE},
        {"force", no_argument, 0, 'f'},          {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    pk_synth_opts so;
    pk_synth_defaults(&so);
    const char *dir = NULL;
    long ntrain = 200, nval = 50, quality = 90, v;
    int force = 0, quiet = 0, describe = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:n:s:c:fqhV", lo, NULL)) != -1) {
        char m[96];
        switch (c) {
        case 'o': dir = optarg; break;
        case 'n':
            if (pk_parse_long(optarg, 0, 1000000, &ntrain, NULL))
                return pk_usage_error(TOOL, "--train takes 0..1000000");
            break;
        case OPT_VAL:
            if (pk_parse_long(optarg, 0, 1000000, &nval, NULL))
                return pk_usage_error(TOOL, "--val takes 0..1000000");
            break;
        case OPT_SIZE:
            if (parse_range(optarg, 16, 4096, &so.min_size, &so.max_size))
                return pk_usage_error(TOOL, "--size takes MIN[:MAX] within 16..4096");
            break;
        case 's': {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return pk_usage_error(TOOL, "--seed takes a non-negative integer");
            so.seed = s;
            break;
        }
        case 'c':
            if (parse_classes(optarg, &so))
                return pk_usage_error(TOOL, "--classes takes 1..8 comma-separated ids in 1..254");
            break;
        case OPT_OBJECTS:
            if (parse_range(optarg, 1, 16, &so.min_objects, &so.max_objects))
                return pk_usage_error(TOOL, "--objects takes MIN[:MAX] within 1..16");
            break;
        case OPT_BORDER:
            if (pk_parse_long(optarg, 0, 8, &v, NULL))
                return pk_usage_error(TOOL, "--border takes 0..8");
            so.border = (int)v;
            break;
        case OPT_QUALITY:
            if (pk_parse_long(optarg, 1, 100, &quality, NULL))
                return pk_usage_error(TOOL, "--quality takes 1..100");
            break;
        case OPT_DESCRIBE: describe = 1; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " " PSPKD_VERSION "\n"); return 0;
        case ':':
            pk_opt_name(m, sizeof m, "option '%s' needs an argument", optopt, argv[optind - 1]);
            return pk_usage_error(TOOL, m);
        default:
            pk_opt_name(m, sizeof m, "unknown option '%s'", optopt, argv[optind - 1]);
            return pk_usage_error(TOOL, m);
        }
    }
    if (optind != argc)
        return pk_usage_error(TOOL, "too many arguments");
    pk_err e = {0, ""};
    if (pk_synth_check(&so, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 2;
    }
    if (describe) {
        for (int k = 0; k < so.nclasses; k++) {
            const char *name = pk_voc_class_name(so.class_ids[k]);
            printf("%d %s: %s\n", so.class_ids[k], name ? name : "-", pk_synth_class_desc(k));
        }
        return 0;
    }
    if (!dir)
        return pk_usage_error(TOOL, "missing -o DIR");
    if (ntrain + nval == 0)
        return pk_usage_error(TOOL, "nothing to write: --train and --val are both 0");

    int ne = nonempty_dir(dir);
    if (ne < 0) {
        fprintf(stderr, TOOL ": %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (ne && !force) {
        fprintf(stderr, TOOL ": %s: exists and is not empty (use --force)\n", dir);
        return 1;
    }
    char *sub[3] = {NULL, NULL, NULL};
    const char *names[3] = {"JPEGImages", "SegmentationClass", "ImageSets/Segmentation"};
    for (int i = 0; i < 3; i++) {
        if (asprintf(&sub[i], "%s/%s", dir, names[i]) < 0 || mkdir_p(sub[i], &e)) {
            fprintf(stderr, TOOL ": %s\n", sub[i] ? e.msg : "out of memory");
            for (int j = 0; j <= i; j++)
                free(sub[j]);
            return 1;
        }
    }
    uint8_t palette[256][3];
    pk_voc_palette(palette);
    struct strbuf lists[3] = {{0}}; /* train, val, trainval */
    int rc = PK_OK;
    long total = ntrain + nval, pixels = 0;
    for (long i = 0; i < total && rc == PK_OK; i++) {
        char id[32], line[40];
        snprintf(id, sizeof id, "synth_%06ld", i);
        pk_image img = {0}, lab = {0};
        rc = pk_synth_sample(&img, &lab, &so, (int)i, &e);
        char *jp = NULL, *pp = NULL;
        if (rc == PK_OK && (asprintf(&jp, "%s/%s.jpg", sub[0], id) < 0 ||
                            asprintf(&pp, "%s/%s.png", sub[1], id) < 0))
            rc = pk_fail(&e, PK_ENOMEM, "out of memory");
        if (rc == PK_OK)
            rc = pk_jpeg_write(jp, &img, (int)quality, &e);
        if (rc == PK_OK)
            rc = pk_png_write_palette(pp, &lab, (const uint8_t(*)[3])palette, 256, &e);
        snprintf(line, sizeof line, "%s\n", id);
        if (rc == PK_OK && (sb_add(&lists[i < ntrain ? 0 : 1], line) || sb_add(&lists[2], line)))
            rc = pk_fail(&e, PK_ENOMEM, "out of memory");
        if (rc == PK_OK)
            pixels += (long)img.w * img.h;
        free(jp);
        free(pp);
        pk_image_free(&img);
        pk_image_free(&lab);
    }
    const char *lnames[3] = {"train", "val", "trainval"};
    for (int k = 0; k < 3 && rc == PK_OK; k++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s.txt", sub[2], lnames[k]) < 0)
            rc = pk_fail(&e, PK_ENOMEM, "out of memory");
        else
            rc = pk_file_write(path, lists[k].p ? lists[k].p : "", lists[k].len, &e);
        free(path);
    }
    for (int k = 0; k < 3; k++) {
        free(lists[k].p);
        free(sub[k]);
    }
    if (rc != PK_OK) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 1;
    }
    if (!quiet)
        printf("wrote %ld train + %ld val images (%d classes, mean %.0f px, seed %llu) to %s\n",
               ntrain, nval, so.nclasses, (double)pixels / total,
               (unsigned long long)so.seed, dir);
    return 0;
}
