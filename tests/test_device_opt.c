/* pk_device_parse: the --device values, the default, and the errors for
 * devices this build or machine lacks (checked against what is present). */
#include <stdio.h>
#include <string.h>

#include "cli/device_opt.h"
#include "support.h"

static int parse(const char *s, pk_ctx_opts *o, pk_err *e)
{
    *o = (pk_ctx_opts){.device = PK_DEV_CUDA, .device_index = 7, .threads = 3, .tf32 = 1};
    memset(e, 0, sizeof *e);
    return pk_device_parse(s, o, e);
}

int main(void)
{
    int fails = 0;
    pk_ctx_opts o;
    pk_err e;
    char buf[32];
    int gpu = pk_cuda_available();

    PK_CHECK(fails,
             parse("cpu", &o, &e) == PK_OK && o.device == PK_DEV_CPU && o.device_index == 0,
             "cpu");
    PK_CHECK(fails, o.threads == 3 && o.tf32 == 1, "threads and tf32 left alone");
    pk_device_format(&o, buf, sizeof buf);
    PK_CHECK(fails, !strcmp(buf, "cpu"), "format cpu: %s", buf);

    const char *bad[] = {"gpu",     "cudax",   "cuda:",
                         "cuda:-1", "cuda:+1", "cuda:64",
                         "cuda:1x", "CPU",     "cuda:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse(bad[i], &o, &e);
        PK_CHECK(fails, rc == PK_EINVAL && strstr(e.msg, bad[i]), "'%s': rc %d, %s", bad[i], rc,
                 e.msg);
    }

    const char *dflt[] = {NULL, "", "auto"};
    for (int i = 0; i < 3; i++) {
        PK_CHECK(fails, parse(dflt[i], &o, &e) == PK_OK, "default %d: %s", i, e.msg);
        PK_CHECK(fails, o.device == (gpu ? PK_DEV_CUDA : PK_DEV_CPU) && o.device_index == 0,
                 "default %d picks %s", i, gpu ? "cuda:0" : "cpu");
    }

    int rc = parse("cuda:63", &o, &e);
    char msg63[sizeof e.msg]; /* e is reused by the parses below */
    snprintf(msg63, sizeof msg63, "%s", e.msg);
    if (gpu) {
        PK_CHECK(fails,
                 parse("cuda", &o, &e) == PK_OK && o.device == PK_DEV_CUDA &&
                     o.device_index == 0,
                 "cuda: %s", e.msg);
        pk_device_format(&o, buf, sizeof buf);
        PK_CHECK(fails, !strcmp(buf, "cuda:0"), "format cuda: %s", buf);
        PK_CHECK(fails, rc == PK_ENOTFOUND && strstr(msg63, "only"), "cuda:63: %d %s", rc,
                 msg63);
    } else {
        PK_CHECK(fails, rc == PK_ENOTFOUND, "cuda:63 without a GPU: rc %d", rc);
        rc = parse("cuda", &o, &e);
        PK_CHECK(fails, rc == PK_ENOTFOUND && strstr(e.msg, "cuda"), "cuda without a GPU: %s",
                 e.msg);
        printf("  no GPU here: %s\n", e.msg);
    }
    printf("test_device_opt: %s\n", fails ? "FAILED" : "ok");
    return fails != 0;
}
