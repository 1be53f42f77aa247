/* teacher-train: trains a PSPNet teacher on a data pack with semseg's VOC
 * recipe, and freezes it (see teacher-train(1)). */
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

enum { O_FREEZE_ONLY = 1 };

struct args {
    pk_train_opts o;
    const char *freeze_only;
};

static int option(void *ctx, int c, const char *arg)
{
    struct args *a = ctx;
    if (c != O_FREEZE_ONLY)
        return pk_train_cli_option(&a->o, c, arg);
    a->freeze_only = arg;
    return PK_GO_ON;
}

int main(int argc, char **argv)
{
    static const struct option own[] = {
        {"freeze-only", required_argument, 0, O_FREEZE_ONLY}, {0, 0, 0, 0}};
    static const pk_tool tool = {TOOL, "", own, usage};
    struct args a = {.freeze_only = NULL};
    pk_train_opts_defaults(&a.o, TOOL);
    int st = pk_train_cli_parse(&tool, argc, argv, option, &a);
    if (st != PK_GO_ON)
        return st;
    if (a.freeze_only) {
        if (!a.o.output)
            return pk_usage_error(TOOL, "missing -o OUTPUT");
        if (a.o.data)
            return pk_usage_error(TOOL, "--freeze-only takes no training data");
        return pk_train_freeze_main(TOOL, a.freeze_only, a.o.output, a.o.threads);
    }
    return pk_train_main(&a.o);
}
