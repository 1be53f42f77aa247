/* The teacher-logits cache written by teacher-dump and read by
 * student-distill (see pspkd-logits(5)): an LMDB file (same one-file,
 * no-lock layout as a data pack, lib/store/pack.h) holding, for every record
 * key of a data pack, the frozen teacher's main and aux logits at output
 * stride 8 in fp16, plus one metadata record under PK_META_KEY.
 *
 * Geometry (teacher-dump's whole-image pass). For an image of W x H:
 *   padded:  Wp = W + ((8 - (W-1) % 8) % 8),  Hp likewise: the smallest
 *            size >= W with (Wp-1) % 8 == 0; the image sits at the top-left,
 *            the extra right columns / bottom rows hold the normalisation
 *            mean (0 after normalising);
 *   grid:    gw = (Wp-1)/8 + 1,  gh = (Hp-1)/8 + 1 (PSPNet's stride-8 output
 *            for a Wp x Hp input);
 *   mapping: image pixel centre (x, y) (0-based, integer at pixel centres)
 *            lies at grid coordinates (x/8, y/8) exactly: the network's x8
 *            align_corners=True upsampling to Wp x Hp puts padded pixel x at
 *            x*(gw-1)/(Wp-1) = x/8, and image pixels keep their coordinates
 *            in the padded frame. So bilinear sampling of the grid at
 *            (x/8, y/8) reproduces the teacher's full-resolution logits.
 *            As a pk_plane_set matrix: m = {1/8, 0, 0, 0, 1/8, 0}.
 *
 * Logits record, all integers little-endian:
 *   0  magic "PKDL"                  4
 *   4  version (1)                   u16
 *   6  header bytes H                u16 (48 + keylen rounded up to even)
 *   8  image width, height           u32 u32
 *  16  padded width, height          u32 u32
 *  24  grid width, height            u32 u32
 *  32  classes K                     u32
 *  36  stride (8)                    u16
 *  38  dtype (1 = fp16)              u8
 *  39  planes (2: main, aux)         u8
 *  40  key length                    u16 (1..PK_LOGITS_KEY_MAX)
 *  42  reserved (0)                  u16 u32
 *  48  key (no NUL), one zero byte when keylen is odd
 *   H  main logits fp16 [gh, gw, K] (HWC), then aux logits fp16 [gh, gw, K]
 *  end CRC32 (zlib) of everything before it   u32
 *
 * Metadata record (key PK_META_KEY), little-endian:
 *   0 "PKLM", 4 u16 version (1), 6 u16 record version, 8 u64 teacher hash,
 *  16 u64 pack id, 24 u32 count, 28 u32 classes, 32 u32 stride,
 *  36 u32 reserved (0), 40 u64 teacher step, 48 u8 arch length + arch name,
 *   u8 stem length + stem name, CRC32 of everything before it. */
#ifndef PSPKD_LOGITS_CACHE_H
#define PSPKD_LOGITS_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

#define PK_LOGITS_VERSION 1
#define PK_LOGITS_META_VERSION 1
#define PK_LOGITS_STRIDE 8
#define PK_LOGITS_KEY_MAX 255
#define PK_LOGITS_NAME_MAX 31

/* Geometry of one image's cached logits (see above). */
typedef struct pk_logits_geom {
    int img_w, img_h; /* W, H */
    int pad_w, pad_h; /* Wp, Hp: (Wp-1) % 8 == 0 */
    int grid_w, grid_h;
    float m[6];       /* image pixel (x, y) -> grid: {1/8, 0, 0, 0, 1/8, 0} */
} pk_logits_geom;

/* The smallest n' >= n with (n' - 1) % 8 == 0: PSPNet's input sizes, Wp
 * and Hp above (n >= 1). */
int pk_pad8(int n);

/* Fills g for a W x H image (W, H >= 1). */
void pk_logits_geom_init(pk_logits_geom *g, int img_w, int img_h);

/* A parsed record: header fields plus pointers INTO the value it was
 * parsed from (valid while that buffer / LMDB read transaction lives). The
 * fp16 data may be unaligned for uint16_t: read it with
 * pk_logits_view_to_f32. */
typedef struct pk_logits_view {
    int version;
    pk_logits_geom geom;
    int classes;
    char key[PK_LOGITS_KEY_MAX + 1];
    const uint8_t *main_f16; /* grid_h*grid_w*classes fp16, HWC */
    const uint8_t *aux_f16;
    uint32_t crc;
} pk_logits_view;

/* Encodes a record into a malloc'd buffer (*out owned by the caller).
 * main and aux are float [grid_h, grid_w, classes] (HWC) for g's grid,
 * rounded to fp16 (round to nearest even). A NaN, an infinity or a value
 * outside fp16's range is PK_EINVAL naming the key and the element. */
int pk_logits_encode(uint8_t **out, size_t *out_len, const char *key,
                     const pk_logits_geom *g, int classes, const float *main_logits,
                     const float *aux_logits, pk_err *e);
/* Validates a value (length, magic, version, geometry consistent with the
 * image size, stride, dtype, plane count, key, reserved bytes, CRC, every
 * logit finite) and
 * fills v. Any defect is PK_EFORMAT with a message. */
int pk_logits_parse(pk_logits_view *v, const void *data, size_t len, pk_err *e);
/* Converts the view's planes to float [grid_h, grid_w, classes]; either
 * output may be NULL. */
void pk_logits_view_to_f32(const pk_logits_view *v, float *main_logits, float *aux_logits);

/* Cache metadata. */
typedef struct pk_logits_meta {
    int version;        /* PK_LOGITS_META_VERSION */
    int record_version; /* PK_LOGITS_VERSION of the records */
    uint64_t teacher_hash; /* pk_fnv1a64_file of the teacher checkpoint */
    uint64_t pack_id;   /* the data pack's pk_meta.pack_id */
    int count;          /* logits records (== the pack's count when complete) */
    int classes;
    int stride;         /* 8 */
    long teacher_step;  /* the teacher checkpoint's training step */
    char arch[PK_LOGITS_NAME_MAX + 1]; /* "resnet50" ... */
    char stem[PK_LOGITS_NAME_MAX + 1]; /* "deep" / "7x7" */
} pk_logits_meta;

int pk_logits_meta_encode(uint8_t **out, size_t *out_len, const pk_logits_meta *m,
                          pk_err *e);
int pk_logits_meta_decode(pk_logits_meta *m, const void *data, size_t len, pk_err *e);

/* 64-bit FNV-1a over a file's bytes (the teacher hash); PK_EIO on a read
 * failure. pk_fnv1a64 is the same over a buffer, continuing from *h (start
 * with PK_FNV1A64_INIT). */
#define PK_FNV1A64_INIT 0xcbf29ce484222325ULL
void pk_fnv1a64(uint64_t *h, const void *data, size_t len);
int pk_fnv1a64_file(uint64_t *h, const char *path, pk_err *e);

/* ---- reading a cache ---- */
typedef struct pk_logits_cache pk_logits_cache;

/* Opens a cache read-only and decodes its metadata (PK_EFORMAT when the
 * metadata record is missing or bad). */
int pk_logits_cache_open(pk_logits_cache **out, const char *path, pk_err *e);
void pk_logits_cache_close(pk_logits_cache *c);
const pk_logits_meta *pk_logits_cache_meta(const pk_logits_cache *c);
const char *pk_logits_cache_path(const pk_logits_cache *c);

/* Checks that the cache belongs to the data pack at pack_path: same pack
 * id, same class count, and a logits record for every image key of the
 * pack (PK_ENOTFOUND naming the first missing key). Only keys are checked
 * here; each record is fully validated when read. */
int pk_logits_cache_check_pack(pk_logits_cache *c, const char *pack_path, pk_err *e);

/* Reads the logits of `key` for an img_w x img_h image into caller buffers
 * of grid_h*grid_w*classes floats each (HWC; take the grid from
 * pk_logits_geom_init(img_w, img_h)); aux may be NULL. g (may be NULL)
 * receives the geometry. Validates the record and that its image size and
 * classes match. Thread-safe: every call uses its own read transaction.
 * PK_ENOTFOUND when the key is absent. */
int pk_logits_cache_get(pk_logits_cache *c, const char *key, int img_w, int img_h,
                        float *main_logits, float *aux_logits, pk_logits_geom *g,
                        pk_err *e);

#endif
