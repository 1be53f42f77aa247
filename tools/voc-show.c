/* voc-show: look inside a pack written by voc-pack (see voc-show(1)). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/tool_opts.h"
#include "store/pack.h"
#include "store/pack_overlap.h"
#include "store/record.h"

#define TOOL "voc-show"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " [options] COMMAND PACK [RECORD...]\n"
            "Shows what a pack written by voc-pack holds.\n"
            "\n"
            "commands:\n"
            "  list PACK                one line per record: index id WxH encoding bytes\n"
            "  header PACK RECORD...    the header of each record\n"
            "  meta PACK                the metadata: counts, classes, palette, pack id\n"
            "  extract PACK RECORD...   write DIR/ID.png (RGB) and DIR/ID_label.png (palette;\n"
            "                           no label for an unlabelled pack)\n"
            "  check PACK               validate every record, the count and the pack id\n"
            "  stats PACK               label values: value name pixels images\n"
            "  overlap PACK OTHER...    ids of OTHER packs also in PACK, one per line;\n"
            "                           exits 1 when there is any\n"
            "RECORD is a list index (0, 1, ...), a full key (00000000_ID) or an id.\n"
            "\n"
            "  -d, --dir DIR   where extract writes (default .)\n"
            "  -a, --all       extract every record\n"
            "  -h, --help      this help\n"
            "  -V, --version   print the version\n");
}

static const char *enc_name(int enc) { return enc == PK_IMG_JPEG ? "jpeg" : "rgb"; }

/* ---- finding records ---- */

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* The record number of rec: an exact key, then an index (digits: the key
 * "%08d_..."), then an id (keys are 8 digits, '_', id); -1 when none. */
static int find_index(const pk_pack *p, const char *rec)
{
    int i = pk_pack_find(p, rec), n = pk_pack_count(p);
    if (i >= 0)
        return i;
    if (all_digits(rec) && strlen(rec) <= 8) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "%08d_", atoi(rec));
        for (i = 0; i < n; i++) {
            const char *k = pk_pack_key(p, i);
            if (!strncmp(k, prefix, 9) && k[9])
                return i;
        }
    }
    size_t len = strlen(rec);
    for (i = 0; i < n; i++) {
        const char *k = pk_pack_key(p, i);
        if (strlen(k) == 9 + len && !memcmp(k + 9, rec, len))
            return i;
    }
    return -1;
}

static int find_record(const pk_pack *p, const char *rec, const void **val, size_t *len,
                       pk_err *e)
{
    int i = find_index(p, rec);
    if (i < 0)
        return pk_fail(e, PK_ENOTFOUND, "no record %s", rec);
    return pk_pack_get(p, i, val, len, e);
}

/* ---- commands ---- */

static int list_visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    (void)user;
    pk_record_view rv;
    int rc = pk_record_parse(&rv, r->data, r->len, e);
    if (rc) {
        pk_wrap(e, "record %s", r->key);
        return rc;
    }
    printf("%d %s %dx%d %s %zu\n", r->index, rv.hdr.id, rv.hdr.width, rv.hdr.height,
           enc_name(rv.hdr.image_enc), r->len);
    return 0;
}

static int cmd_list(const pk_pack *p, pk_err *e)
{
    return pk_pack_foreach(p, list_visit, NULL, e);
}

static int cmd_header(const pk_pack *p, char **recs, int n, pk_err *e)
{
    for (int i = 0; i < n; i++) {
        const void *v;
        size_t len;
        pk_record_view rv;
        int rc = find_record(p, recs[i], &v, &len, e);
        if (!rc)
            rc = pk_record_parse(&rv, v, len, e);
        if (rc)
            return rc;
        const pk_record_header *h = &rv.hdr;
        printf("%sid: %s\nversion: %d\nwidth: %d\nheight: %d\nimage: %s, %u bytes\n"
               "label: u8 indices, %u bytes\nrecord bytes: %zu\ncrc32: %08x\n",
               i ? "\n" : "", h->id, h->version, h->width, h->height, enc_name(h->image_enc),
               h->image_bytes, h->label_bytes, len, h->crc);
    }
    return PK_OK;
}

static int cmd_meta(const pk_pack *p)
{
    const pk_meta *m = pk_pack_meta(p);
    printf("format version: %d\nrecord version: %d\nrecords: %d\nclasses: %d\nimages: %s\n"
           "labels: %s\npack id: %016llx\n",
           m->version, m->record_version, m->count, m->classes, enc_name(m->image_enc),
           m->unlabeled ? "none (unlabelled pack)" : "yes", (unsigned long long)m->pack_id);
    for (int i = 0; i < m->classes; i++)
        printf("class %d: %s %u,%u,%u\n", i, m->names[i], m->palette[i][0], m->palette[i][1],
               m->palette[i][2]);
    printf("ignore 255: %u,%u,%u\n", m->palette[255][0], m->palette[255][1],
           m->palette[255][2]);
    return PK_OK;
}

static int extract_one(const void *v, size_t len, const char *dir, const pk_meta *m,
                       pk_err *e)
{
    pk_record_view rv;
    int rc = pk_record_parse(&rv, v, len, e);
    if (rc)
        return rc;
    pk_image img = {0};
    rc = pk_record_image(&img, &rv, e);
    if (rc)
        return rc;
    char *path = NULL;
    if (asprintf(&path, "%s/%s.png", dir, rv.hdr.id) < 0) {
        pk_image_free(&img);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    rc = pk_png_write(path, &img, e);
    free(path);
    pk_image_free(&img);
    if (rc || m->unlabeled)
        return rc;
    /* the label straight from the record: no copy needed, px is only read */
    pk_image lab = {rv.hdr.width, rv.hdr.height, 1, (uint8_t *)rv.label};
    if (asprintf(&path, "%s/%s_label.png", dir, rv.hdr.id) < 0)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    rc = pk_png_write_palette(path, &lab, (const uint8_t(*)[3])m->palette, 256, e);
    free(path);
    return rc;
}

struct extract_all {
    const char *dir;
    const pk_meta *m;
};

static int extract_visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    struct extract_all *x = user;
    return extract_one(r->data, r->len, x->dir, x->m, e);
}

static int cmd_extract(const pk_pack *p, char **recs, int n, int all, const char *dir,
                       pk_err *e)
{
    const pk_meta *m = pk_pack_meta(p);
    int rc;
    struct stat st;
    if (stat(dir, &st) != 0)
        return pk_fail(e, PK_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pk_fail(e, PK_EIO, "%s: not a directory", dir);
    if (all) {
        struct extract_all x = {dir, m};
        return pk_pack_foreach(p, extract_visit, &x, e);
    }
    for (int i = 0; i < n; i++) {
        const void *v;
        size_t len;
        rc = find_record(p, recs[i], &v, &len, e);
        if (!rc)
            rc = extract_one(v, len, dir, m, e);
        if (rc)
            return rc;
    }
    return PK_OK;
}

struct check_state {
    const pk_meta *m;
    int count;
    uint64_t pack_id;
    uint8_t *rgb;
    size_t rgb_cap;
};

static int check_visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    struct check_state *s = user;
    const char *key = r->key;
    pk_record_view rv;
    int rc = pk_record_parse(&rv, r->data, r->len, e);
    if (rc)
        return pk_wrap(e, "record %s", key);
    char want[PK_RECORD_ID_MAX + 16];
    snprintf(want, sizeof want, "%08d_%s", s->count, rv.hdr.id);
    if (strcmp(key, want))
        return pk_fail(e, PK_EFORMAT, "record %s: expected key %s", key, want);
    size_t npix = (size_t)rv.hdr.width * rv.hdr.height;
    if (npix * 3 > s->rgb_cap) {
        uint8_t *p = realloc(s->rgb, npix * 3);
        if (!p)
            return pk_fail(e, PK_ENOMEM, "out of memory");
        s->rgb = p;
        s->rgb_cap = npix * 3;
    }
    rc = pk_record_image_into(s->rgb, &rv, e);
    if (rc)
        return pk_wrap(e, "record %s", key);
    if ((rc = pk_record_check_labels(&rv, s->m->classes, e)))
        return pk_wrap(e, "record %s", key);
    if (s->m->unlabeled)
        for (size_t i = 0; i < npix; i++)
            if (rv.label[i] != PK_IGNORE_LABEL)
                return pk_fail(e, PK_EFORMAT, "record %s: label value %u in an unlabelled pack",
                               key, rv.label[i]);
    pk_pack_id_add(&s->pack_id, key, rv.hdr.crc);
    s->count++;
    return 0;
}

struct stats_state {
    unsigned long long pixels[256];
    int images[256];
};

static int stats_visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    struct stats_state *s = user;
    pk_record_view rv;
    int rc = pk_record_parse(&rv, r->data, r->len, e);
    if (rc)
        return pk_wrap(e, "record %s", r->key);
    unsigned long long here[256] = {0};
    for (uint32_t i = 0; i < rv.hdr.label_bytes; i++)
        here[rv.label[i]]++;
    for (int c = 0; c < 256; c++) {
        s->pixels[c] += here[c];
        s->images[c] += here[c] > 0;
    }
    return 0;
}

/* Label values present: value, class name, pixels, images containing it. */
static int cmd_stats(const pk_pack *p, pk_err *e)
{
    const pk_meta *m = pk_pack_meta(p);
    struct stats_state s;
    memset(&s, 0, sizeof s);
    int rc = pk_pack_foreach(p, stats_visit, &s, e);
    if (rc)
        return rc;
    for (int c = 0; c < 256; c++)
        if (s.pixels[c])
            printf("%d %s %llu %d\n", c,
                   c == PK_IGNORE_LABEL ? "ignore" : c < m->classes ? m->names[c] : "-",
                   s.pixels[c], s.images[c]);
    return PK_OK;
}

/* The record count against the metadata is checked by pk_pack_open. */
static int cmd_check(const pk_pack *p, pk_err *e)
{
    const pk_meta *m = pk_pack_meta(p);
    struct check_state s = {m, 0, PK_PACK_ID_INIT, NULL, 0};
    int rc = pk_pack_foreach(p, check_visit, &s, e);
    free(s.rgb);
    if (rc)
        return rc;
    if (s.pack_id != m->pack_id)
        return pk_fail(e, PK_EFORMAT, "pack id %016llx in metadata, records give %016llx",
                       (unsigned long long)m->pack_id, (unsigned long long)s.pack_id);
    printf("ok: %d records%s, %d classes, pack id %016llx\n", s.count,
           m->unlabeled ? " (unlabelled)" : "", m->classes, (unsigned long long)s.pack_id);
    return PK_OK;
}

struct overlap_state {
    const char *other;
    long shown;
};

static int print_shared(const char *id, void *user)
{
    struct overlap_state *s = user;
    printf("%s %s\n", id, s->other);
    s->shown++;
    return 0;
}

/* Every id of the OTHER packs that is also in p, as "ID OTHER"; a one-line
 * error naming the first pair of packs that share ids. */
static int cmd_overlap(const pk_pack *p, char **others, int n, pk_err *e)
{
    long total = 0;
    const char *first = NULL;
    for (int i = 0; i < n; i++) {
        pk_pack *q;
        int rc = pk_pack_open(&q, others[i], e);
        if (rc)
            return rc;
        struct overlap_state s = {others[i], 0};
        long shared;
        rc = pk_pack_overlap(p, q, print_shared, &s, &shared, e);
        pk_pack_close(q);
        if (rc)
            return rc;
        if (shared && !first)
            first = others[i];
        total += shared;
    }
    if (total)
        return pk_fail(e, PK_EINVAL, "%ld image ids also in another pack (first: %s)", total,
                       first);
    return PK_OK;
}

struct opts {
    const char *dir, *cmd, *pack;
    char **recs;
    int nrec, all;
};

static const struct option longopts[] = {{"dir", required_argument, 0, 'd'},
                                         {"all", no_argument, 0, 'a'},
                                         {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "d:a", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    if (c == 'd')
        o->dir = arg;
    else
        o->all = 1;
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){.dir = "."};
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st != PK_GO_ON)
        return st;
    int nargs = argc - optind;
    if (nargs < 2)
        return pk_usage_error(TOOL, nargs ? "missing PACK" : "missing COMMAND");
    const char *cmd = o->cmd = argv[optind];
    o->pack = argv[optind + 1];
    o->recs = argv + optind + 2;
    o->nrec = nargs - 2;
    int takes_recs = !strcmp(cmd, "header") || !strcmp(cmd, "extract") ||
                     !strcmp(cmd, "overlap");
    if (!takes_recs && strcmp(cmd, "list") && strcmp(cmd, "meta") && strcmp(cmd, "check") &&
        strcmp(cmd, "stats"))
        return pk_usage_errorf(TOOL, "unknown command '%.40s'", cmd);
    if (!takes_recs && o->nrec)
        return pk_usage_error(TOOL, "too many arguments");
    if (!strcmp(cmd, "overlap") && !o->nrec)
        return pk_usage_error(TOOL, "missing OTHER pack");
    if (takes_recs && !o->nrec && !(o->all && !strcmp(cmd, "extract")))
        return pk_usage_error(TOOL, "missing RECORD");
    if (o->all && (strcmp(cmd, "extract") || o->nrec))
        return pk_usage_error(TOOL, "--all goes with extract and no RECORD");
    return PK_GO_ON;
}

int main(int argc, char **argv)
{
    struct opts o;
    int st = parse(&o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    const char *cmd = o.cmd, *pack = o.pack, *dir = o.dir;
    char **recs = o.recs;
    int nrec = o.nrec, all = o.all;

    pk_err e = {0, ""};
    pk_pack *p;
    int rc = pk_pack_open(&p, pack, &e);
    if (rc) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 1;
    }
    if (!strcmp(cmd, "list"))
        rc = cmd_list(p, &e);
    else if (!strcmp(cmd, "header"))
        rc = cmd_header(p, recs, nrec, &e);
    else if (!strcmp(cmd, "meta"))
        rc = cmd_meta(p);
    else if (!strcmp(cmd, "extract"))
        rc = cmd_extract(p, recs, nrec, all, dir, &e);
    else if (!strcmp(cmd, "stats"))
        rc = cmd_stats(p, &e);
    else if (!strcmp(cmd, "overlap"))
        rc = cmd_overlap(p, recs, nrec, &e);
    else
        rc = cmd_check(p, &e);
    pk_pack_close(p);
    if (rc) {
        fprintf(stderr, TOOL ": %s: %s\n", pack, e.msg);
        return 1;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, TOOL ": stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
