/* The command line shared by teacher-train and student-distill: the
 * common long options (getopt_long codes >= PK_TRAIN_OPT_BASE, plus the
 * short -d -o -b -q), their help text, and the run itself (context, model,
 * teacher, pk_train_run) returning the tool's exit status. Each tool adds
 * its own options in front of these. */
#ifndef PSPKD_TRAIN_CLI_H
#define PSPKD_TRAIN_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include "train/train_loop.h"

#define PK_TRAIN_OPT_BASE 1000

/* Copies the common options into dst (cap entries, the {0} terminator
 * not included); returns how many, or -1 when cap is too small. */
int pk_train_cli_longopts(struct option *dst, int cap);
/* The short options string part for the common options. */
#define PK_TRAIN_CLI_SHORT "d:o:b:q"
/* Handles one getopt_long code: 1 when handled, 0 when the code is not a
 * common option, -1 on a bad value (msg filled, for a usage error). */
int pk_train_cli_option(pk_train_opts *o, int code, const char *arg, char *msg, size_t cap);
/* After parsing: checks the options taken together and settles the
 * defaults that depend on others (the stem) or on the machine (--device,
 * lib/cli/device_opt.h). 0 when fine; -1 with msg on a usage error; 1 with msg
 * on a runtime error (a device this build or machine does not have). */
int pk_train_cli_finish(pk_train_opts *o, char *msg, size_t cap);
/* The common options' help lines. */
void pk_train_cli_help(FILE *f);

/* Builds the context, the model (--init) and the teacher, checks classes,
 * runs the loop and reports. Returns the exit status: 0, 1 on a runtime
 * failure ("tool: message" printed), 128 + signal when a signal stopped the
 * run after its checkpoint was written. */
int pk_train_main(pk_train_opts *o);

/* Writes in's model as a frozen teacher to out: model tensors and BN
 * statistics only, no optimiser state, frozen = 1. Exit status 0 or 1. */
int pk_train_freeze_main(const char *tool, const char *in, const char *out, int threads);

#endif
