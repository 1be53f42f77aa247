/* SIGINT and SIGTERM, taken by a thread of their own.
 *
 * A signal handler runs on whichever thread the kernel picks, on that
 * thread's stack as it is at that moment. oneDNN 2.x's JIT sgemm kernels
 * (Debian 12 ships libdnnl 2.6) point rsp into the heap while they run
 * (oneDNN issue #4845, fixed upstream in 3.11), so a handler that interrupts
 * one writes its signal frame over heap memory and the process aborts later
 * in free(). pspkd therefore never runs a handler on a computing thread:
 * pk_stop_signals_start blocks the two signals in the calling thread, every
 * thread created afterwards (OpenMP's, oneDNN's, MPI's, the loaders')
 * inherits that mask, and one waiter thread receives them with sigwait and
 * records the first in an atomic flag that the tools poll. The price: a
 * signal no longer interrupts a blocking system call (a read from a FIFO
 * waits on), which is why voc-pack, which runs no model and reads its list
 * from wherever it is told, keeps a handler on its main thread. */
#ifndef PSPKD_STOP_SIGNALS_H
#define PSPKD_STOP_SIGNALS_H

#include "core/err.h"

typedef struct pk_stop_signals pk_stop_signals;

enum {
    PK_STOP_REPEAT = 0,  /* later signals are taken like the first */
    PK_STOP_ONE_SHOT = 1 /* a second signal kills at once (its default action) */
};

/* Call at the start of main, before any thread exists: threads created
 * before it would keep the signals unblocked and could still take them. */
int pk_stop_signals_start(pk_stop_signals **out, int mode, pk_err *e);

/* The first signal received (SIGINT or SIGTERM), or 0. Fits pk_stop_fn. */
int pk_stop_signals_poll(void *stop_signals);

/* Stops the waiter and restores the calling thread's signal mask (tests;
 * the tools simply exit). */
void pk_stop_signals_free(pk_stop_signals *s);

#endif
