/* The data record stored per image in a pack (see pspkd-data(5)), and the
 * pack's metadata record.
 *
 * Image record, all integers little-endian:
 *   0  magic "PKDR"            4
 *   4  version (1)             u16
 *   6  header bytes (36+idlen) u16
 *   8  width, height           u32 u32
 *  16  image encoding          u8  (PK_IMG_RGB8 | PK_IMG_JPEG)
 *  17  label encoding          u8  (PK_LBL_U8)
 *  18  id length               u16 (1..PK_RECORD_ID_MAX)
 *  20  image bytes             u32 (RGB8: w*h*3)
 *  24  label bytes             u32 (w*h)
 *  28  reserved (0)            u32 u32
 *  36  id (no NUL), image bytes, label bytes
 *  end CRC32 (zlib) of everything before it   u32
 *
 * Keys are "%08d_<id>" in list order; the metadata record's key
 * PK_META_KEY starts with '_' so it sorts after every record key. */
#ifndef PSPKD_RECORD_H
#define PSPKD_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "data/image.h"

#define PK_RECORD_VERSION 1
#define PK_RECORD_ID_MAX 200
#define PK_META_KEY "__meta__"
#define PK_META_VERSION 1
#define PK_CLASSES_MAX 255 /* label 255 is "ignore" */
#define PK_CLASS_NAME_MAX 31
#define PK_IGNORE_LABEL 255

enum pk_img_enc { PK_IMG_RGB8 = 1, PK_IMG_JPEG = 2 };
enum pk_lbl_enc { PK_LBL_U8 = 1 };

typedef struct pk_record_header {
    int version;
    int width, height;
    int image_enc, label_enc;
    uint32_t image_bytes, label_bytes;
    uint32_t crc; /* the stored CRC32 (already checked by pk_record_parse) */
    char id[PK_RECORD_ID_MAX + 1];
} pk_record_header;

/* A parsed record: header plus pointers INTO the value it was parsed from
 * (valid while that buffer / LMDB read transaction lives). */
typedef struct pk_record_view {
    pk_record_header hdr;
    const uint8_t *image; /* hdr.image_bytes: RGB8 HWC or a JPEG file */
    const uint8_t *label; /* hdr.label_bytes == w*h indices (< classes or 255) */
} pk_record_view;

/* Why id cannot name a record, or NULL when it can: 1..PK_RECORD_ID_MAX
 * bytes, no control characters, no '/' and no "..", so that an id used as a
 * file name (voc-show extract, seg-eval --save-dir) stays inside its
 * folder. pk_record_encode and pk_record_parse refuse such ids. */
const char *pk_record_id_problem(const char *id);
/* Encodes one record into a malloc'd buffer (*out owned by the caller).
 * image: w*h*3 RGB8 bytes (image_enc PK_IMG_RGB8) or a JPEG file's bytes
 * (PK_IMG_JPEG, image_bytes its length); label: w*h indices. */
int pk_record_encode(uint8_t **out, size_t *out_len, const char *id, int w, int h,
                     int image_enc, const uint8_t *image, size_t image_bytes,
                     const uint8_t *label, pk_err *e);

/* Validates a value (length, magic, version, encodings, sizes, CRC) and
 * fills v with pointers into data. Any defect is PK_EFORMAT with a message. */
int pk_record_parse(pk_record_view *v, const void *data, size_t len, pk_err *e);

/* PK_EFORMAT "label value V at (x, y) with K classes" unless every label
 * of v is < classes or PK_IGNORE_LABEL. */
int pk_record_check_labels(const pk_record_view *v, int classes, pk_err *e);
/* The record's image as RGB8: allocates im->px (w*h*3), decoding the JPEG
 * when stored as JPEG (PK_EFORMAT if it decodes to a different size). */
int pk_record_image(pk_image *im, const pk_record_view *v, pk_err *e);
/* The same into a caller buffer of hdr.width*hdr.height*3 bytes. */
int pk_record_image_into(uint8_t *rgb, const pk_record_view *v, pk_err *e);

/* The record's key for list position i (0-based): "%08d_<id>". */
int pk_record_key(char *key, size_t cap, int index, const char *id, pk_err *e);

/* Metadata of a pack. */
typedef struct pk_meta {
    int version;          /* PK_META_VERSION */
    int record_version;   /* PK_RECORD_VERSION of the records */
    int count;            /* number of image records */
    int classes;          /* 1..PK_CLASSES_MAX */
    int image_enc;        /* how the records store images */
    uint64_t pack_id;     /* pk_pack_id over every (key, record CRC) */
    int unlabeled;        /* 1: images without labels (every label 255) */
    uint8_t palette[256][3];
    char names[PK_CLASSES_MAX][PK_CLASS_NAME_MAX + 1];
} pk_meta;

/* Metadata record layout (little-endian):
 *   "PKDM", u16 version, u16 record version, u32 count, u32 classes,
 *   u32 image encoding, u64 pack id, 768 palette bytes,
 *   per class: u8 name length + name bytes, [u32 flags], then CRC32 of all
 *   before. The flags word is written only when a flag is set, so labelled
 *   packs keep their bytes; its one flag is PK_META_UNLABELED. */
#define PK_META_UNLABELED 1u
int pk_meta_encode(uint8_t **out, size_t *out_len, const pk_meta *m, pk_err *e);
int pk_meta_decode(pk_meta *m, const void *data, size_t len, pk_err *e);

/* Pack id: a running 64-bit hash over each record's key and CRC, in key
 * order. Later stages (teacher-dump's logits cache) store it to check that a
 * cache belongs to this exact pack. Start with *id = PK_PACK_ID_INIT. */
#define PK_PACK_ID_INIT 0x70737065ULL
void pk_pack_id_add(uint64_t *id, const char *key, uint32_t record_crc);

#endif
