/* teacher-train: trains a PSPNet teacher on a data pack with semseg's VOC
 * recipe, and freezes it (see teacher-train(1)). */
#include <getopt.h>
#include <stdio.h>

#include "cli/tool_opts.h"
#include "cli/train_cli.h"

#define TOOL "teacher-train"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -d PACK -o OUTPUT [options]\n"
            "       " TOOL " --freeze-only CHECKPOINT -o OUTPUT\n"
            "Trains a PSPNet teacher (ResNet50, semseg's deep stem) with semseg's VOC recipe.\n"
            "\n"
            "Teacher:\n"
            "      --arch NAME        resnet50 or resnet18 (resnet50)\n"
            "      --stem deep|7x7    ResNet50 stem: semseg's deep stem or torchvision's (deep)\n"
            "      --freeze-only IN   only freeze the checkpoint IN into OUTPUT, no training\n");
    pk_train_cli_help(f);
}

int main(int argc, char **argv)
{
    enum { O_FREEZE_ONLY = 1 };
    struct option lo[64];
    int n = pk_train_cli_longopts(lo, 60);
    lo[n++] = (struct option){"freeze-only", required_argument, 0, O_FREEZE_ONLY};
    lo[n++] = (struct option){"help", no_argument, 0, 'h'};
    lo[n++] = (struct option){"version", no_argument, 0, 'V'};
    lo[n] = (struct option){0, 0, 0, 0};

    pk_train_opts o;
    pk_train_opts_defaults(&o, TOOL);
    const char *freeze_only = NULL;
    int c;
    char msg[256];
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":" PK_TRAIN_CLI_SHORT "hV", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " " PSPKD_VERSION "\n"); return 0;
        case O_FREEZE_ONLY: freeze_only = optarg; break;
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
    if (freeze_only) {
        if (!o.output)
            return pk_usage_error(TOOL, "missing -o OUTPUT");
        if (o.data)
            return pk_usage_error(TOOL, "--freeze-only takes no training data");
        return pk_train_freeze_main(TOOL, freeze_only, o.output, o.threads);
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
