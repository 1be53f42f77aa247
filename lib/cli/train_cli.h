/* The command line shared by teacher-train and student-distill: the
 * common options (getopt_long codes >= PK_TRAIN_OPT_BASE, plus -d -o -b -q
 * -h -V), their help text, and the run itself (context, model, teacher,
 * pk_train_run) returning the tool's exit status. Each tool adds its own
 * options to these and owns its signal handlers. */
#ifndef PSPKD_TRAIN_CLI_H
#define PSPKD_TRAIN_CLI_H

#include <stdio.h>
#include "cli/tool_opts.h"
#include "train/train_loop.h"

/* The common options' codes start here; a tool's own stay below. */
#define PK_TRAIN_OPT_BASE 1000

/* Parses argv with the tool's own options (t->shortopts, t->longopts)
 * added to the common ones (PK_TOOL_LONGOPTS_MAX in all): fn gets every
 * option but --help and --version, handles the tool's own and hands the
 * rest to pk_train_cli_option. No operands are allowed. PK_GO_ON, or the
 * exit status. */
int pk_train_cli_parse(const pk_tool *t, int argc, char **argv, pk_opt_fn *fn, void *ctx);
/* One common option into o: PK_GO_ON, or 2 after the usage error (named
 * by o->tool). */
int pk_train_cli_option(pk_train_opts *o, int code, const char *arg);
/* The common options' help lines. */
void pk_train_cli_help(FILE *f);

/* Checks the options taken together and settles the defaults that depend
 * on others (the stem) or on the machine (--device, cli/device_opt.h);
 * builds the context, the model (--init) and the teacher, checks classes,
 * runs the loop and reports. SIGINT and SIGTERM (cli/stop_signals.h, taken
 * from here on: call it before starting any thread) stop the run at the
 * next step, after a checkpoint; a second one kills at once.
 * Returns the exit status: 0; 2 after a usage error; 1 on a runtime
 * failure ("tool: message" printed); 128 + signal when a signal stopped
 * the run after its checkpoint was written. */
int pk_train_main(pk_train_opts *o);

/* Writes in's model as a frozen teacher to out: model tensors and BN
 * statistics only, no optimiser state, frozen = 1. Exit status 0 or 1. */
int pk_train_freeze_main(const char *tool, const char *in, const char *out, int threads);

#endif
