/* pk_mkdir_p: nested directories, existing ones, and the errors (a parent
 * that is a file, an empty path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mkdir_p.h"
#include "support.h"

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int main(void)
{
    int fails = 0;
    char root[] = "/tmp/pspkd-mkdir-XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char p[256], file[256];
    pk_err e = {0, ""};
    snprintf(p, sizeof p, "%s/a/b//c/", root);
    PK_CHECK(fails, pk_mkdir_p(p, &e) == PK_OK, "a/b//c/: %s", e.msg);
    snprintf(p, sizeof p, "%s/a/b/c", root);
    PK_CHECK(fails, is_dir(p), "a/b/c made");
    PK_CHECK(fails, pk_mkdir_p(p, &e) == PK_OK, "again: %s", e.msg);
    snprintf(file, sizeof file, "%s/f", root);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    snprintf(p, sizeof p, "%s/f/sub/dir", root);
    int rc = pk_mkdir_p(p, &e);
    PK_CHECK(fails, rc == PK_EIO && strstr(e.msg, "/f/sub: "), "under a file: %d %s", rc, e.msg);
    PK_CHECK(fails, pk_mkdir_p("", &e) == PK_EIO, "empty path");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "test_mkdir_p: could not remove %s\n", root);
    if (fails) {
        fprintf(stderr, "test_mkdir_p: %d failure(s)\n", fails);
        return 1;
    }
    printf("test_mkdir_p: ok\n");
    return 0;
}
