/* Writes the seed corpora of the fuzz harnesses into fuzz/corpus/<name>/
 * with the library itself (so every seed is a valid input the parser
 * accepts): `make fuzz-corpus`. Deterministic; run from the repository
 * root. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "store/logits_cache.h"
#include "store/record.h"
#include "store/safetensors.h"

#define DIE(...) (fprintf(stderr, "gen_corpus: " __VA_ARGS__), fputc('\n', stderr), exit(1))

static void put(const char *name, const char *file, const void *buf, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "fuzz/corpus/%s", name);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "fuzz/corpus/%s/%s", name, file);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f))
        DIE("cannot write %s", path);
}

static void put_str(const char *name, const char *file, const char *s)
{
    put(name, file, s, strlen(s));
}

static void put_file(const char *name, const char *file, const char *src)
{
    uint8_t *buf;
    size_t len;
    pk_err e;
    if (pk_file_read(&buf, &len, src, &e))
        DIE("%s", e.msg);
    put(name, file, buf, len);
    free(buf);
}

static void check(int rc, const pk_err *e)
{
    if (rc)
        DIE("%s", e->msg);
}

static pk_image test_image(int w, int h, int c)
{
    pk_image im;
    pk_err e;
    check(pk_image_alloc(&im, w, h, c, &e), &e);
    for (int i = 0; i < w * h * c; i++)
        im.px[i] = (uint8_t)(i * 37 % 251 % (c == 1 ? 21 : 256));
    return im;
}

static void images(uint8_t **jpeg, size_t *jpeg_len)
{
    pk_err e;
    const char *tmp = "fuzz/corpus/.tmp.png";
    pk_image rgb = test_image(9, 7, 3), idx = test_image(9, 7, 1);
    uint8_t pal[21][3];
    for (int i = 0; i < 21; i++)
        pal[i][0] = (uint8_t)(i * 12), pal[i][1] = (uint8_t)(i * 5), pal[i][2] = (uint8_t)i;
    check(pk_png_write_palette(tmp, &idx, (const uint8_t(*)[3])pal, 21, &e), &e);
    put_file("png", "palette.png", tmp);
    check(pk_png_write(tmp, &idx, &e), &e);
    put_file("png", "grey.png", tmp);
    check(pk_png_write(tmp, &rgb, &e), &e);
    put_file("png", "rgb.png", tmp);
    unlink(tmp);
    check(pk_jpeg_encode(jpeg, jpeg_len, &rgb, 90, &e), &e);
    put("jpeg", "rgb.jpg", *jpeg, *jpeg_len);
    uint8_t *g;
    size_t gl;
    check(pk_jpeg_encode(&g, &gl, &idx, 75, &e), &e);
    put("jpeg", "grey.jpg", g, gl);
    free(g);
    pk_image_free(&rgb);
    pk_image_free(&idx);
}

static void records(const uint8_t *jpeg, size_t jpeg_len)
{
    pk_err e;
    pk_image rgb = test_image(9, 7, 3), lbl = test_image(9, 7, 1);
    lbl.px[3] = PK_IGNORE_LABEL;
    uint8_t *out;
    size_t len;
    check(pk_record_encode(&out, &len, "2007_000032", 9, 7, PK_IMG_RGB8, rgb.px, 9 * 7 * 3,
                           lbl.px, &e), &e);
    put("record", "rgb8.rec", out, len);
    free(out);
    check(pk_record_encode(&out, &len, "a", 9, 7, PK_IMG_JPEG, jpeg, jpeg_len, lbl.px, &e),
          &e);
    put("record", "jpeg.rec", out, len);
    free(out);
    pk_meta m;
    memset(&m, 0, sizeof m);
    m.version = PK_META_VERSION;
    m.record_version = PK_RECORD_VERSION;
    m.count = 2;
    m.classes = 3;
    m.image_enc = PK_IMG_JPEG;
    m.pack_id = 0x1234;
    strcpy(m.names[0], "background");
    strcpy(m.names[1], "aeroplane");
    strcpy(m.names[2], "x");
    check(pk_meta_encode(&out, &len, &m, &e), &e);
    put("pack_meta", "labeled.meta", out, len);
    free(out);
    m.unlabeled = 1;
    check(pk_meta_encode(&out, &len, &m, &e), &e);
    put("pack_meta", "unlabeled.meta", out, len);
    free(out);
    pk_image_free(&rgb);
    pk_image_free(&lbl);
}

static void logits(void)
{
    pk_err e;
    pk_logits_geom g;
    pk_logits_geom_init(&g, 10, 9);
    int k = 3;
    size_t n = (size_t)g.grid_w * g.grid_h * k;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b)
        DIE("out of memory");
    for (size_t i = 0; i < n; i++)
        a[i] = (float)i * 0.25f - 1.0f, b[i] = -(float)i;
    uint8_t *out;
    size_t len;
    check(pk_logits_encode(&out, &len, "00000000_a", &g, k, a, b, &e), &e);
    put("logits", "odd_key.rec", out, len);
    free(out);
    check(pk_logits_encode(&out, &len, "00000001_ab", &g, k, a, b, &e), &e);
    put("logits", "even_key.rec", out, len);
    free(out);
    free(a);
    free(b);
    pk_logits_meta m = {.version = PK_LOGITS_META_VERSION, .record_version = PK_LOGITS_VERSION,
                        .teacher_hash = 99, .pack_id = 0x1234, .count = 2, .classes = 3,
                        .stride = PK_LOGITS_STRIDE, .teacher_step = 1000};
    strcpy(m.arch, "resnet50");
    strcpy(m.stem, "deep");
    check(pk_logits_meta_encode(&out, &len, &m, &e), &e);
    put("logits_meta", "meta.rec", out, len);
    free(out);
}

static void safetensors(void)
{
    pk_err e;
    pk_st_writer *w = pk_st_writer_new();
    if (!w)
        DIE("out of memory");
    float f[6] = {1, -2, 0.5f, 3, 4, 5};
    uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0};
    int64_t l[2] = {7, -1};
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s2[1] = {2};
    check(pk_st_add(w, "cls.4.weight", PK_F32, 2, s23, f, &e), &e);
    check(pk_st_add(w, "cls.4.bias", PK_F16, 1, s4, h, &e), &e);
    check(pk_st_add(w, "bn.num_batches_tracked", PK_I64, 1, s2, l, &e), &e);
    check(pk_st_add(w, "scalar", PK_F32, 0, NULL, f, &e), &e);
    check(pk_st_set_meta(w, "arch", "resnet18", &e), &e);
    check(pk_st_set_meta(w, "step", "12", &e), &e);
    void *buf;
    size_t len;
    check(pk_st_serialize(w, &buf, &len, &e), &e);
    put("safetensors", "small.safetensors", buf, len);
    free(buf);
    pk_st_writer_free(w);
}

/* A one-record LMDB file as pspkd writes packs (one file, no lock). */
static void lmdb(void)
{
    const char *tmp = "fuzz/corpus/.tmp.lmdb";
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    MDB_val k = {4, "key1"}, v = {5, "value"};
    if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 1 << 20) ||
        mdb_env_open(env, tmp, MDB_NOSUBDIR | MDB_NOLOCK, 0644) ||
        mdb_txn_begin(env, NULL, 0, &t) || mdb_dbi_open(t, NULL, 0, &dbi) ||
        mdb_put(t, dbi, &k, &v, 0) || mdb_txn_commit(t))
        DIE("lmdb failed");
    mdb_env_close(env);
    put_file("lmdb_check", "one_record.lmdb", tmp);
    unlink(tmp);
}

static void texts(void)
{
    put_str("voc_list", "ids.txt", "2007_000032\n2007_000039\n\n2008_000123\r\n");
    put_str("voc_list", "pairs.txt",
            "JPEGImages/a.jpg SegmentationClassAug/a.png\n/abs/b.jpg /abs/b.png\n");
    put_str("voc_list", "dup.txt", "x\ny\nx\n");
    put_str("voc_images", "mixed.txt",
            "2007_000032\nimgs/b.jpeg\n/abs/c.JPG\nJPEGImages/d.jpg SegClass/d.png\n");
    put_str("voc_images", "bad.txt", "a b c\n../x\n");
    const char *h = "step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc";
    char log[1024];
    snprintf(log, sizeof log,
             "\x02%s,miou_present\n1,1,0.01,2.5,2,0.5,0,0,3.2,1700000000.5,,,,\n"
             "2,1,0.0099,2.4,2,0.4,0,0,3.1,1700000001.5,,,,\n"
             "2,1,,,,,,,,1700000002,0.41,0.5,0.8,0.45\n3,1,0.009,2.3,2,0.3,0,0,3,17000",
             h);
    put_str("train_log", "resume_at_2.csv", log);
    snprintf(log, sizeof log, "\x01%s\n1,1,0.01,2.5,2,0.5,0,0,3.2,1700000000.5,,,\n"
             "2,1,0.0099,2.4,2,0.4,0,0,3.1,1700000001.5,,,\n", h);
    put_str("train_log", "legacy.csv", log);
    static const char *const opts[] = {"473", "33x41", "-5", "0.01", "1e-4", "18446744073709551615",
                                       "010", "0x10", " 7", "nan", "inf", "1,2,3", "8193x1"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        char name[16];
        snprintf(name, sizeof name, "opt%02zu", i);
        put_str("tool_opts", name, opts[i]);
    }
}

int main(void)
{
    mkdir("fuzz/corpus", 0755);
    uint8_t *jpeg;
    size_t jpeg_len;
    images(&jpeg, &jpeg_len);
    records(jpeg, jpeg_len);
    free(jpeg);
    logits();
    safetensors();
    lmdb();
    texts();
    return 0;
}
