/* The trainers' log file (pspkd-log(5)): CSV, one header line
 *   step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc,miou_present
 * then one row per training step (miou .. miou_present empty) and one row
 * per validation (lr .. img_s empty). miou is semseg's mean over all the
 * classes, miou_present the mean over the classes present in the labels or
 * the predictions (seg-eval's two figures). step counts completed iterations (1..),
 * epoch is 1-based, loss is the weighted total and ce .. aux_kd the
 * unweighted terms, img_s the step's throughput, time Unix seconds.
 *
 * Resume keeps the log consistent with the checkpoint: opening a log
 * for a run that starts at step s drops every row with step > s (rows a
 * crashed run wrote after its last checkpoint), rewriting the file
 * atomically; a fresh run (s = 0) starts from the header alone. */
#ifndef PSPKD_TRAIN_LOG_H
#define PSPKD_TRAIN_LOG_H

#include <stdio.h>
#include "core/err.h"
#include "model/metrics.h"

/* The header of logs written before miou_present (one field fewer),
 * upgraded when a run resumes one. */
#define PK_TRAIN_LOG_HEADER_V1 "step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc"
#define PK_TRAIN_LOG_HEADER PK_TRAIN_LOG_HEADER_V1 ",miou_present"
#define PK_TRAIN_LOG_FIELDS 14

typedef struct pk_train_log {
    FILE *f;
    char path[4096];
} pk_train_log;

typedef struct pk_train_log_row {
    long step, epoch;
    double lr, loss, ce, aux_ce, kd, aux_kd, img_s;
} pk_train_log_row;

/* Creates or reopens path for appending (see above). PK_EFORMAT when an
 * existing non-empty file does not start with PK_TRAIN_LOG_HEADER. */
int pk_train_log_open(pk_train_log *l, const char *path, long start_step, pk_err *e);
/* Appends one row and flushes it (PK_EIO on a write error). */
int pk_train_log_step(pk_train_log *l, const pk_train_log_row *r, pk_err *e);
int pk_train_log_val(pk_train_log *l, long step, long epoch, const pk_seg_scores *s,
                     pk_err *e);
/* Closes; PK_EIO when the final flush fails. Safe on a zeroed struct. */
int pk_train_log_close(pk_train_log *l, pk_err *e);

#endif
