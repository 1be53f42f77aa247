/* The waiter thread behind pk_stop_signals (see stop_signals.h for why). */
#include "cli/stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pk_stop_signals {
    sigset_t set, old;
    pthread_t tid;
    int mode;
    atomic_int first;
    atomic_int quit; /* pk_stop_signals_free: the next signal ends the waiter */
};

/* Takes the signals for the whole process: the first is recorded; in
 * one-shot mode the next one gets its default action (the process dies
 * with it), as a second Ctrl-C does in most tools. */
static void *waiter(void *arg)
{
    pk_stop_signals *s = arg;
    for (;;) {
        int sig;
        if (sigwait(&s->set, &sig))
            continue;
        if (atomic_load(&s->quit))
            return NULL;
        int none = 0;
        if (atomic_compare_exchange_strong(&s->first, &none, sig) || s->mode != PK_STOP_ONE_SHOT)
            continue;
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        raise(sig); /* thread-directed: delivered here, unblocked */
    }
    return NULL;
}

int pk_stop_signals_start(pk_stop_signals **out, int mode, pk_err *e)
{
    *out = NULL;
    pk_stop_signals *s = calloc(1, sizeof *s);
    if (!s)
        return pk_fail(e, PK_ENOMEM, "out of memory (signal thread)");
    s->mode = mode;
    atomic_init(&s->first, 0);
    atomic_init(&s->quit, 0);
    sigemptyset(&s->set);
    sigaddset(&s->set, SIGINT);
    sigaddset(&s->set, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, &s->set, &s->old);
    if (!rc && (rc = pthread_create(&s->tid, NULL, waiter, s)))
        pthread_sigmask(SIG_SETMASK, &s->old, NULL);
    if (rc) {
        free(s);
        return pk_fail(e, PK_EIO, "cannot start the signal thread: %s", strerror(rc));
    }
    *out = s;
    return PK_OK;
}

int pk_stop_signals_poll(void *stop_signals)
{
    return atomic_load(&((pk_stop_signals *)stop_signals)->first);
}

void pk_stop_signals_free(pk_stop_signals *s)
{
    if (!s)
        return;
    /* a signal to the waiter alone ends it (not pthread_cancel: ASan takes
     * the cancelled thread's unwinding for a use after scope) */
    atomic_store(&s->quit, 1);
    pthread_kill(s->tid, SIGTERM);
    pthread_join(s->tid, NULL);
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
    free(s);
}
