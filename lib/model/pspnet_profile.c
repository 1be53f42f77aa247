/* Per-layer-group wall time (forward and backward apart) and per-op-kind
 * totals. Timing syncs the device around every node, so it is off unless
 * asked for (it slows a GPU down). */
#include "model/pspnet_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const group_names[PK_G_COUNT] = {
    "stem", "layer1", "layer2", "layer3", "layer4", "ppm", "cls", "aux", "losses", "sgd"};
static const char *const kind_names[PK_N_KINDS] = {
    "conv", "batchnorm", "relu", "add", "maxpool", "adapool", "resize", "concat", "dropout"};

double pk_prof_now(pk_model *m)
{
    pk_dev_sync(m->ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void pk_prof_add(pk_model *m, int group, int kind, int dir, double seconds)
{
    m->prof[group][dir] += seconds;
    if (kind >= 0)
        m->prof_kind[kind][dir] += seconds;
}

void pk_model_set_profile(pk_model *m, int on) { m->profile = on != 0; }

void pk_model_profile_reset(pk_model *m)
{
    memset(m->prof, 0, sizeof m->prof);
    memset(m->prof_kind, 0, sizeof m->prof_kind);
    m->prof_steps = 0;
}

typedef struct row {
    const char *name, *dir;
    double s;
} row;

static int by_time_desc(const void *a, const void *b)
{
    double x = ((const row *)a)->s, y = ((const row *)b)->s;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void print_rows(FILE *f, row *r, int n, double total, double steps)
{
    qsort(r, (size_t)n, sizeof *r, by_time_desc);
    for (int i = 0; i < n; i++)
        if (r[i].s > 0.0)
            fprintf(f, "  %-10s %-4s %10.2f %6.1f%%\n", r[i].name, r[i].dir,
                    1e3 * r[i].s / steps, 100.0 * r[i].s / total);
}

void pk_model_profile_print(const pk_model *m, FILE *f)
{
    row r[2 * ((int)PK_G_COUNT > (int)PK_N_KINDS ? (int)PK_G_COUNT : (int)PK_N_KINDS)];
    double total = 0.0, steps = m->prof_steps > 0 ? (double)m->prof_steps : 1.0;
    int n = 0;
    for (int g = 0; g < PK_G_COUNT; g++)
        for (int d = 0; d < 2; d++) {
            int single = g == PK_G_LOSS || g == PK_G_SGD;
            if (single && d == PK_PROF_BWD)
                continue;
            r[n++] = (row){group_names[g], single ? "" : d ? "bwd" : "fwd", m->prof[g][d]};
            total += m->prof[g][d];
        }
    if (total <= 0.0) {
        fprintf(f, "profile: nothing timed (enable with pk_model_set_profile)\n");
        return;
    }
    fprintf(f, "profile: %ld step(s), %.2f ms per step timed\n", m->prof_steps,
            1e3 * total / steps);
    fprintf(f, "  %-10s %-4s %10s %7s\n", "group", "dir", "ms/step", "share");
    print_rows(f, r, n, total, steps);
    n = 0;
    for (int k = 0; k < PK_N_KINDS; k++)
        for (int d = 0; d < 2; d++)
            r[n++] = (row){kind_names[k], d ? "bwd" : "fwd", m->prof_kind[k][d]};
    fprintf(f, "  by op kind:\n");
    print_rows(f, r, n, total, steps);
}
