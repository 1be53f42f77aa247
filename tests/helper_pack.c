/* helper_pack: writes a small 2-class data pack that voc-pack would refuse
 * to make, for the Bats files' bad-input tests (issue #13).
 * usage: helper_pack OUT good|label|packid
 *   good    4 records of 33x33, labels 0, 1 and 255, a correct pack id
 *   label   the same, with one pixel of record 2 labelled 5
 *   packid  the good records under a metadata pack id that is off by one */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/le_bytes.h"
#include "store/pack.h"
#include "store/record.h"

enum { N = 4, S = 33 };

static int put_records(pk_pack_writer *w, int bad_label, uint64_t *id, pk_err *e)
{
    static uint8_t rgb[S * S * 3], lbl[S * S];
    int rc = PK_OK;
    for (int i = 0; !rc && i < N; i++) {
        for (int p = 0; p < S * S; p++) {
            lbl[p] = (uint8_t)(p % 7 == 0 ? 255 : (p / S + i) % 2);
            for (int c = 0; c < 3; c++)
                rgb[3 * p + c] = (uint8_t)(lbl[p] * 90 + 37 * c + 11 * i);
        }
        if (bad_label && i == 2)
            lbl[S * 3 + 4] = 5;
        char ident[16], key[64];
        snprintf(ident, sizeof ident, "rec%d", i);
        uint8_t *buf = NULL;
        size_t len = 0;
        rc = pk_record_key(key, sizeof key, i, ident, e);
        if (!rc)
            rc = pk_record_encode(&buf, &len, ident, S, S, PK_IMG_RGB8, rgb, sizeof rgb, lbl, e);
        if (!rc)
            rc = pk_pack_writer_put(w, key, buf, len, e);
        if (!rc)
            pk_pack_id_add(id, key, pk_get32(buf + len - 4));
        free(buf);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "good") && strcmp(argv[2], "label") &&
                      strcmp(argv[2], "packid"))) {
        fprintf(stderr, "usage: helper_pack OUT good|label|packid\n");
        return 2;
    }
    pk_err e = {0, ""};
    pk_pack_writer *w = NULL;
    static pk_meta m;
    m = (pk_meta){.version = PK_META_VERSION, .record_version = PK_RECORD_VERSION,
                  .count = N, .classes = 2, .image_enc = PK_IMG_RGB8,
                  .pack_id = PK_PACK_ID_INIT};
    snprintf(m.names[0], sizeof m.names[0], "background");
    snprintf(m.names[1], sizeof m.names[1], "thing");
    m.palette[1][0] = 128;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pk_pack_writer_open(&w, argv[1], 4, 1, &e);
    if (!rc)
        rc = put_records(w, !strcmp(argv[2], "label"), &m.pack_id, &e);
    if (!rc && !strcmp(argv[2], "packid"))
        m.pack_id++;
    if (!rc)
        rc = pk_meta_encode(&buf, &len, &m, &e);
    if (!rc)
        rc = pk_pack_writer_put(w, PK_META_KEY, buf, len, &e);
    free(buf);
    if (!rc) {
        rc = pk_pack_writer_finish(w, &e);
        w = NULL;
    }
    pk_pack_writer_abort(w);
    if (rc) {
        fprintf(stderr, "helper_pack: %s\n", e.msg);
        return 1;
    }
    return 0;
}
