/* helper_st_diff: how far apart two safetensors files are (every tensor of
 * A must be in B with the same size). Prints "max_rel R max_abs X at NAME
 * (worst tensor: ...)": X the largest |a-b| over the tensors compared, R =
 * X / the largest |a| over them (the model's scale: a norm-wise relative
 * difference), and the worst tensor measured against its own scale (BN
 * biases near 0 make that one large). Exits 1 when R exceeds TOL, 2 on a
 * usage or file error. Without PREFIX the optimiser state (optimizer.*) is
 * left out; with it, only tensors whose name starts with PREFIX count.
 * mpi.bats compares the weights of a data-parallel run with one process.
 * usage: helper_st_diff A B [TOL] [PREFIX] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/safetensors.h"

static double tensor_diff(const pk_st_tensor *a, const pk_st_tensor *b, double *abs_out,
                          double *scale_out)
{
    float *x = malloc(a->numel * sizeof *x), *y = malloc(b->numel * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        *abs_out = *scale_out = INFINITY;
        return INFINITY;
    }
    pk_st_tensor_f32(a, x);
    pk_st_tensor_f32(b, y);
    double dmax = 0, scale = 0;
    for (size_t i = 0; i < a->numel; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= dmax)) /* NaN counts as infinitely far */
            dmax = isnan(d) ? INFINITY : d;
        if (fabs((double)x[i]) > scale)
            scale = fabs((double)x[i]);
    }
    free(x);
    free(y);
    *abs_out = dmax;
    *scale_out = scale;
    return dmax / (scale > 1e-12 ? scale : 1e-12);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: helper_st_diff A B [TOL] [PREFIX]\n");
        return 2;
    }
    double tol = argc > 3 ? strtod(argv[3], NULL) : INFINITY;
    const char *prefix = argc > 4 ? argv[4] : "";
    pk_err e = {0};
    pk_st_file *a = NULL, *b = NULL;
    if (pk_st_open(&a, argv[1], &e) || pk_st_open(&b, argv[2], &e)) {
        fprintf(stderr, "helper_st_diff: %s\n", e.msg);
        pk_st_close(a);
        return 2;
    }
    double dmax = 0, scale = 0, worst = 0;
    const char *where = "-", *worst_at = "-";
    int status = 0;
    for (int i = 0; i < pk_st_count(a); i++) {
        const pk_st_tensor *ta = pk_st_at(a, i), *tb = pk_st_find(b, ta->name);
        if (strncmp(ta->name, prefix, strlen(prefix)) ||
            (!prefix[0] && !strncmp(ta->name, "optimizer.", 10)))
            continue;
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "helper_st_diff: %s: missing or of another size in %s\n", ta->name,
                        argv[2]);
            status = 2;
            break;
        }
        double ab = 0, sc = 0, r = tensor_diff(ta, tb, &ab, &sc);
        if (ab > dmax || where[0] == '-') {
            dmax = ab;
            where = ta->name;
        }
        if (sc > scale)
            scale = sc;
        if (r > worst || worst_at[0] == '-') {
            worst = r;
            worst_at = ta->name;
        }
    }
    if (!status) {
        double rel = dmax / (scale > 1e-12 ? scale : 1e-12);
        printf("max_rel %.3g max_abs %.3g at %s (worst tensor: %.3g of its own scale at %s)\n",
               rel, dmax, where, worst, worst_at);
        status = rel > tol ? 1 : 0;
    }
    pk_st_close(a);
    pk_st_close(b);
    return status;
}
