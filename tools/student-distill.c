/* student-distill: trains a PSPNet student from a data pack and the
 * teacher's cached logits (or an online teacher, or none for the plain
 * baseline); see student-distill(1). */
#include <getopt.h>
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
            "      --preset NAME      default (T 2, CE 1, KD 1, aux KL 0.4) or seed\n"
            "                         (T 1.9, CE 0.25, KD 0.75, aux SmoothL1 1)\n"
            "      --T X              KD temperature, also for an aux KL\n"
            "      --kd-weight X      weight of T^2*KL on the main output\n"
            "      --ce-weight X      weight of the main cross-entropy\n"
            "      --aux-kd kl|smoothl1|mse  distance between the aux outputs\n"
            "      --aux-kd-weight X  its weight (0: off)\n"
            "      --arch NAME        resnet18 or resnet50 (resnet18)\n"
            "      --stem 7x7|deep    (7x7 for resnet18, deep for resnet50)\n");
    pk_train_cli_help(f);
}

/* The loss settings of a preset. */
static int apply_preset(pk_train_cfg *t, const char *name)
{
    if (!strcmp(name, "default")) {
        t->kd_T = 2.0f;
        t->ce_weight = 1.0f;
        t->kd_weight = 1.0f;
        t->auxkd = PK_AUXKD_KL;
        t->auxkd_weight = 0.4f;
    } else if (!strcmp(name, "seed")) {
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

int main(int argc, char **argv)
{
    enum { O_LOGITS = 'l', O_TEACHER = 1, O_NOKD, O_PRESET, O_T, O_KDW, O_CEW, O_AUXKD,
           O_AUXKDW };
    struct option lo[72];
    int n = pk_train_cli_longopts(lo, 60);
    lo[n++] = (struct option){"logits", required_argument, 0, O_LOGITS};
    lo[n++] = (struct option){"teacher", required_argument, 0, O_TEACHER};
    lo[n++] = (struct option){"no-kd", no_argument, 0, O_NOKD};
    lo[n++] = (struct option){"preset", required_argument, 0, O_PRESET};
    lo[n++] = (struct option){"T", required_argument, 0, O_T};
    lo[n++] = (struct option){"temperature", required_argument, 0, O_T};
    lo[n++] = (struct option){"kd-weight", required_argument, 0, O_KDW};
    lo[n++] = (struct option){"ce-weight", required_argument, 0, O_CEW};
    lo[n++] = (struct option){"aux-kd", required_argument, 0, O_AUXKD};
    lo[n++] = (struct option){"aux-kd-weight", required_argument, 0, O_AUXKDW};
    lo[n++] = (struct option){"help", no_argument, 0, 'h'};
    lo[n++] = (struct option){"version", no_argument, 0, 'V'};
    lo[n] = (struct option){0, 0, 0, 0};

    pk_train_opts o;
    pk_train_opts_defaults(&o, TOOL);
    o.arch = PK_ARCH_R18;
    const char *preset = "default";
    /* Explicit loss options win over the preset whatever their order. */
    double val[4];
    int set[4] = {0, 0, 0, 0}, auxkd_set = 0;
    pk_auxkd auxkd = PK_AUXKD_KL;
    int c;
    char msg[256];
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":" PK_TRAIN_CLI_SHORT "l:hV", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " " PSPKD_VERSION "\n"); return 0;
        case O_LOGITS: o.logits = optarg; break;
        case O_TEACHER: o.teacher = optarg; break;
        case O_NOKD: o.no_kd = 1; break;
        case O_PRESET: preset = optarg; break;
        case O_T:
        case O_KDW:
        case O_CEW:
        case O_AUXKDW: {
            int i = c == O_T ? 0 : c == O_KDW ? 1 : c == O_CEW ? 2 : 3;
            double lo_v = i == 0 ? 0.01 : 0.0;
            if (pk_parse_double(optarg, lo_v, 1000, &val[i])) {
                snprintf(msg, sizeof msg, "%s takes a number in %g..1000",
                         argv[optind - 1], lo_v);
                return pk_usage_error(TOOL, msg);
            }
            set[i] = 1;
            break;
        }
        case O_AUXKD:
            if (pk_auxkd_parse(optarg, &auxkd))
                return pk_usage_error(TOOL, "--aux-kd takes kl, smoothl1 or mse");
            auxkd_set = 1;
            break;
        case ':':
            snprintf(msg, sizeof msg, "option '%s' needs an argument", argv[optind - 1]);
            return pk_usage_error(TOOL, msg);
        case '?':
            snprintf(msg, sizeof msg, "unknown option '%s'", argv[optind - 1]);
            return pk_usage_error(TOOL, msg);
        default: {
            int r = pk_train_cli_option(&o, c, optarg, msg, sizeof msg);
            if (r < 0)
                return pk_usage_error(TOOL, msg);
            if (r == 0)
                return pk_usage_error(TOOL, "unknown option");
        }
        }
    }
    if (optind < argc)
        return pk_usage_error(TOOL, "unexpected argument");
    if (apply_preset(&o.cfg, preset))
        return pk_usage_error(TOOL, "--preset takes default or seed");
    if (set[0]) o.cfg.kd_T = (float)val[0];
    if (set[1]) o.cfg.kd_weight = (float)val[1];
    if (set[2]) o.cfg.ce_weight = (float)val[2];
    if (set[3]) o.cfg.auxkd_weight = (float)val[3];
    if (auxkd_set) o.cfg.auxkd = auxkd;
    if (!!o.logits + !!o.teacher + o.no_kd != 1)
        return pk_usage_error(TOOL, "give exactly one of -l LOGITS, --teacher MODEL and --no-kd");
    if (o.no_kd) {
        /* The plain baseline is semseg's recipe: CE + aux CE, nothing else. */
        o.cfg.kd_weight = o.cfg.auxkd_weight = 0.0f;
        if (!set[2])
            o.cfg.ce_weight = 1.0f;
    }
    int fr = pk_train_cli_finish(&o, msg, sizeof msg);
    if (fr < 0)
        return pk_usage_error(TOOL, msg);
    if (fr > 0) {
        fprintf(stderr, TOOL ": %s\n", msg);
        return 1;
    }
    return pk_train_main(&o);
}
