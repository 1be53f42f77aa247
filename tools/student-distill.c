/* student-distill: trains a PSPNet student from a data pack and the
 * teacher's cached logits (or an online teacher, or none for the plain
 * baseline); see student-distill(1). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/tool_opts.h"
#include "cli/train_cli.h"

#define TOOL "student-distill"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -d PACK (-l LOGITS | --teacher MODEL | --no-kd) -o OUTPUT "
            "[options]\n"
            "Trains a PSPNet student (ResNet18) with distillation from a frozen teacher:\n"
            "  ce-weight*CE + aux-weight*auxCE + kd-weight*T^2*KL(main) + "
            "aux-kd-weight*D(aux)\n"
            "\n"
            "Teacher and losses:\n"
            "  -l, --logits FILE      the teacher's logits cache (teacher-dump) for PACK\n"
            "      --teacher FILE     run this frozen teacher online on every crop instead\n"
            "      --no-kd            no teacher: the plain student baseline\n"
            "      --preset NAME      default (T 1.9, CE 0.25, KD 0.75, aux SmoothL1 1; also\n"
            "                         called seed) or sum (T 2, CE 1, KD 1, aux KL 0.4)\n"
            "      --T X              KD temperature, also for an aux KL\n"
            "      --kd-weight X      weight of T^2*KL on the main output\n"
            "      --ce-weight X      weight of the main cross-entropy\n"
            "      --aux-kd kl|smoothl1|mse  distance between the aux outputs\n"
            "      --aux-kd-weight X  its weight (0: off)\n"
            "      --arch NAME        resnet18 or resnet50 (resnet18)\n"
            "      --stem 7x7|deep    (7x7 for resnet18, deep for resnet50)\n"
            "Unlabelled images (KD terms only; needs -l):\n"
            "      --unlabeled PACK:LOGITS  an unlabelled pack (voc-pack --unlabeled) and its\n"
            "                         teacher-dump cache; repeatable (up to 8 packs)\n"
            "      --unlabeled-ratio R  round(b*R) of each batch's b images come from them,\n"
            "                         all from one pack per step (0 < R < 1; 0.5)\n");
    pk_train_cli_help(f);
}

/* The loss settings of a preset. The default is the seed's mixture: the
 * sum (full CE plus full KD) roughly triples the gradient at the logits
 * and lost to the plain student in the study (student-distill(1)). */
static int apply_preset(pk_train_cfg *t, const char *name)
{
    if (!strcmp(name, "sum")) {
        t->kd_T = 2.0f;
        t->ce_weight = 1.0f;
        t->kd_weight = 1.0f;
        t->auxkd = PK_AUXKD_KL;
        t->auxkd_weight = 0.4f;
    } else if (!strcmp(name, "default") || !strcmp(name, "seed")) {
        t->kd_T = 1.9f;
        t->ce_weight = 0.25f;
        t->kd_weight = 0.75f;
        t->auxkd = PK_AUXKD_SMOOTHL1;
        t->auxkd_weight = 1.0f;
    } else {
        return -1;
    }
    return 0;
}

enum { O_LOGITS = 'l', O_TEACHER = 1, O_NOKD, O_PRESET, O_T, O_KDW, O_CEW, O_AUXKD, O_AUXKDW,
       O_UNLAB, O_UNLAB_RATIO };

static const struct option own[] = {
    {"logits", required_argument, 0, O_LOGITS},
    {"teacher", required_argument, 0, O_TEACHER},
    {"no-kd", no_argument, 0, O_NOKD},
    {"preset", required_argument, 0, O_PRESET},
    {"T", required_argument, 0, O_T},
    {"temperature", required_argument, 0, O_T},
    {"kd-weight", required_argument, 0, O_KDW},
    {"ce-weight", required_argument, 0, O_CEW},
    {"aux-kd", required_argument, 0, O_AUXKD},
    {"aux-kd-weight", required_argument, 0, O_AUXKDW},
    {"unlabeled", required_argument, 0, O_UNLAB},
    {"unlabeled-ratio", required_argument, 0, O_UNLAB_RATIO},
    {0, 0, 0, 0}};

/* The command line: the loss options are kept apart (NAN: not given) so
 * that they win over the preset whatever their order. */
struct args {
    pk_train_opts o;
    const char *preset;
    double T, kd_weight, ce_weight, auxkd_weight;
    pk_auxkd auxkd;
    int auxkd_set, ratio_set;
};

/* --unlabeled PACK:LOGITS, split at the last ':' (a pack path may hold
 * one). The strings point into argv. */
static int unlabeled_option(pk_train_opts *o, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || !colon[1])
        return pk_usage_errorf(TOOL, "--unlabeled %.200s: give the pack with its logits cache, "
                               "PACK:LOGITS (teacher-dump -d PACK -o LOGITS)", arg);
    if (o->n_unlab == PK_UNLAB_MAX)
        return pk_usage_errorf(TOOL, "--unlabeled: at most %d unlabelled packs", PK_UNLAB_MAX);
    /* argv strings are ours to cut */
    *(char *)colon = '\0';
    o->unlab_pack[o->n_unlab] = arg;
    o->unlab_logits[o->n_unlab++] = colon + 1;
    return PK_GO_ON;
}

static int option(void *ctx, int c, const char *arg)
{
    struct args *a = ctx;
    const pk_num_opt nums[] = {
        {O_T, 0.01, 1000, "--T takes a number in 0.01..1000", .d = &a->T},
        {O_KDW, 0, 1000, "--kd-weight takes a number in 0..1000", .d = &a->kd_weight},
        {O_CEW, 0, 1000, "--ce-weight takes a number in 0..1000", .d = &a->ce_weight},
        {O_AUXKDW, 0, 1000, "--aux-kd-weight takes a number in 0..1000", .d = &a->auxkd_weight},
    };
    switch (c) {
    case O_LOGITS: a->o.logits = arg; break;
    case O_TEACHER: a->o.teacher = arg; break;
    case O_NOKD: a->o.no_kd = 1; break;
    case O_PRESET: a->preset = arg; break;
    case O_UNLAB: return unlabeled_option(&a->o, arg);
    case O_UNLAB_RATIO:
        if (pk_parse_double(arg, 0, 1, &a->o.unlab_ratio) || a->o.unlab_ratio <= 0 ||
            a->o.unlab_ratio >= 1)
            return pk_usage_error(TOOL, "--unlabeled-ratio takes a number between 0 and 1 "
                                        "(both excluded)");
        a->ratio_set = 1;
        break;
    case O_AUXKD:
        if (pk_auxkd_parse(arg, &a->auxkd))
            return pk_usage_error(TOOL, "--aux-kd takes kl, smoothl1 or mse");
        a->auxkd_set = 1;
        break;
    case O_T:
    case O_KDW:
    case O_CEW:
    case O_AUXKDW: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    default: return pk_train_cli_option(&a->o, c, arg);
    }
    return PK_GO_ON;
}

/* The unlabelled packs against the teacher source and the batch. */
static int settle_unlabeled(const struct args *a)
{
    const pk_train_opts *o = &a->o;
    int nl, nu;
    if (!o->n_unlab)
        return a->ratio_set ? pk_usage_error(TOOL, "--unlabeled-ratio goes with --unlabeled")
                            : PK_GO_ON;
    if (o->no_kd)
        return pk_usage_error(TOOL, "--unlabeled with --no-kd: unlabelled images only have "
                                    "distillation terms");
    if (o->teacher)
        return pk_usage_error(TOOL, "--unlabeled goes with -l LOGITS, not --teacher");
    if (pk_unlab_split(o->batch, o->unlab_ratio, &nl, &nu))
        return pk_usage_errorf(TOOL, "-b %d at --unlabeled-ratio %g leaves no labelled or no "
                               "unlabelled image (round(b*R) must be 1..b-1)", o->batch,
                               o->unlab_ratio);
    return PK_GO_ON;
}

/* The preset, the loss options over it, the teacher source. */
static int settle_losses(struct args *a)
{
    int st;
    pk_train_cfg *cfg = &a->o.cfg;
    if (apply_preset(cfg, a->preset))
        return pk_usage_error(TOOL, "--preset takes default, seed or sum");
    if (!isnan(a->T))
        cfg->kd_T = (float)a->T;
    if (!isnan(a->kd_weight))
        cfg->kd_weight = (float)a->kd_weight;
    if (!isnan(a->ce_weight))
        cfg->ce_weight = (float)a->ce_weight;
    if (!isnan(a->auxkd_weight))
        cfg->auxkd_weight = (float)a->auxkd_weight;
    if (a->auxkd_set)
        cfg->auxkd = a->auxkd;
    if (!!a->o.logits + !!a->o.teacher + a->o.no_kd != 1)
        return pk_usage_error(TOOL, "give exactly one of -l LOGITS, --teacher MODEL and --no-kd");
    if ((st = settle_unlabeled(a)) != PK_GO_ON)
        return st;
    if (a->o.no_kd) {
        /* The plain baseline is semseg's recipe: CE + aux CE, nothing else. */
        cfg->kd_weight = cfg->auxkd_weight = 0.0f;
        if (isnan(a->ce_weight))
            cfg->ce_weight = 1.0f;
    }
    return PK_GO_ON;
}

int main(int argc, char **argv)
{
    static const pk_tool tool = {TOOL, "l:", own, usage};
    struct args a = {.preset = "default", .T = NAN, .kd_weight = NAN, .ce_weight = NAN,
                     .auxkd_weight = NAN, .auxkd = PK_AUXKD_KL};
    pk_train_opts_defaults(&a.o, TOOL);
    a.o.arch = PK_ARCH_R18;
    a.o.unlab_ratio = 0.5;
    int st = pk_train_cli_parse(&tool, argc, argv, option, &a);
    if (st != PK_GO_ON || (st = settle_losses(&a)) != PK_GO_ON)
        return st;
    return pk_train_main(&a.o);
}
