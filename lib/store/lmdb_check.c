/* Checks an LMDB file's meta pages before it is mapped (see
 * lmdb_util_impl.h): a file shorter than its meta page says would kill the
 * reader with SIGBUS on the first touch past the end, and a crafted root
 * page number trips an LMDB assertion. */
#include "store/lmdb_util_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/le_bytes.h"

/* LMDB 0.9's on-disk meta page (64-bit build): a 16-byte page header
 * (page number, pad, flags, lower, upper), then MDB_meta. */
enum {
    M_FLAGS = 10,     /* u16 page flags; P_META = 0x08 */
    M_MAGIC = 16,     /* u32 0xBEEFC0DE */
    M_VERSION = 20,   /* u32 1 */
    M_PSIZE = 40,     /* u32: the free DB's md_pad holds the page size */
    M_FREE_ROOT = 80, /* u64 root page of the free DB */
    M_MAIN_DEPTH = 94, /* u16 */
    M_MAIN_ROOT = 128, /* u64 root page of the main DB */
    M_LAST_PG = 136,  /* u64 last page number in use */
    M_TXNID = 144,    /* u64 */
    M_BYTES = 152
};
#define P_META 0x08
#define LMDB_MAGIC 0xBEEFC0DEu
#define P_INVALID UINT64_MAX

typedef struct meta_page {
    uint32_t psize;
    uint64_t free_root, main_root, last_pg, txnid;
} meta_page;

/* Decodes one meta page; returns a reason it is not valid, or NULL. */
static const char *decode(meta_page *m, const uint8_t *p)
{
    if (!(pk_get16(p + M_FLAGS) & P_META))
        return "not a meta page";
    if (pk_get32(p + M_MAGIC) != LMDB_MAGIC)
        return "bad magic";
    if (pk_get32(p + M_VERSION) != 1)
        return "unknown version";
    m->psize = pk_get32(p + M_PSIZE);
    m->free_root = pk_get64(p + M_FREE_ROOT);
    m->main_root = pk_get64(p + M_MAIN_ROOT);
    m->last_pg = pk_get64(p + M_LAST_PG);
    m->txnid = pk_get64(p + M_TXNID);
    if (m->psize < 512 || m->psize > 65536 || (m->psize & (m->psize - 1)))
        return "bad page size";
    if (m->last_pg < 1 || m->last_pg > (uint64_t)INT64_MAX / m->psize)
        return "bad last page";
    /* Pages 0 and 1 are the meta pages: a root is a later page or none. */
    uint64_t roots[2] = {m->free_root, m->main_root};
    for (int i = 0; i < 2; i++)
        if (roots[i] != P_INVALID && (roots[i] < 2 || roots[i] > m->last_pg))
            return "root page out of range";
    if (m->main_root == P_INVALID && pk_get16(p + M_MAIN_DEPTH))
        return "depth without a root";
    return NULL;
}

static int read_at(int fd, uint8_t *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : 1;
        got += (size_t)r;
    }
    return 0;
}

int pk_lmdb_check_file(const char *path, pk_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", path,
                       strerror(errno));
    struct stat st;
    uint8_t p0[M_BYTES], p1[M_BYTES];
    int rc = PK_OK, io = 0;
    if (fstat(fd, &st) != 0) {
        rc = pk_fail(e, PK_EIO, "%s: %s", path, strerror(errno));
    } else if (st.st_size == 0) {
        rc = pk_fail(e, PK_EFORMAT, "%s: empty file (not a pack)", path);
    } else if ((io = read_at(fd, p0, sizeof p0, 0)) != 0) {
        rc = io < 0 ? pk_fail(e, PK_EIO, "%s: %s", path, strerror(errno))
                    : pk_fail(e, PK_EFORMAT, "%s: truncated (%lld bytes, shorter than an "
                              "LMDB meta page)", path, (long long)st.st_size);
    }
    meta_page m[2];
    const char *bad[2] = {NULL, NULL};
    if (!rc && (bad[0] = decode(&m[0], p0)))
        rc = pk_fail(e, PK_EFORMAT, "%s: not an LMDB file or a damaged one (meta page 0: %s)",
                     path, bad[0]);
    if (!rc && (uint64_t)st.st_size < 2 * (uint64_t)m[0].psize)
        rc = pk_fail(e, PK_EFORMAT, "%s: truncated (%lld bytes, the meta pages need %u)", path,
                     (long long)st.st_size, 2 * m[0].psize);
    if (!rc && (io = read_at(fd, p1, sizeof p1, (off_t)m[0].psize)) != 0)
        rc = pk_fail(e, PK_EIO, "%s: %s", path, io < 0 ? strerror(errno) : "short read");
    if (!rc) {
        bad[1] = decode(&m[1], p1);
        if (!bad[1] && m[1].psize != m[0].psize)
            bad[1] = "page size differs from meta page 0";
        if (bad[1])
            rc = pk_fail(e, PK_EFORMAT, "%s: damaged LMDB file (meta page 1: %s)", path,
                         bad[1]);
    }
    close(fd);
    if (rc)
        return rc;
    /* LMDB uses the meta page with the higher transaction id. */
    const meta_page *cur = m[1].txnid > m[0].txnid ? &m[1] : &m[0];
    uint64_t need = (cur->last_pg + 1) * cur->psize;
    if ((uint64_t)st.st_size < need)
        return pk_fail(e, PK_EFORMAT, "%s: truncated (%lld bytes, its meta page says %llu "
                       "pages of %u = %llu bytes)", path, (long long)st.st_size,
                       (unsigned long long)cur->last_pg + 1, cur->psize,
                       (unsigned long long)need);
    return PK_OK;
}
