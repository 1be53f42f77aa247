/* pk_stop_signals: SIGINT/SIGTERM are taken by the waiter thread only, so
 * a storm of them while oneDNN's JIT sgemm runs leaves the heap intact
 * (with a plain handler, Debian 12's libdnnl 2.6 had the kernel write the
 * signal frame into the heap, and glibc aborted in free(): the crash CI saw
 * as teacher-train exiting 139 on SIGINT). Also: the first signal is the
 * one reported, and one-shot mode dies of the second. */
#include <dnnl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/stop_signals.h"
#include "support.h"

static int failures;

struct storm {
    int sig, count;
    atomic_int done;
};

/* Sends the signal to the whole process every 20 us. */
static void *storm_main(void *arg)
{
    struct storm *st = arg;
    struct timespec ts = {0, 20000};
    for (int i = 0; i < st->count; i++) {
        kill(getpid(), st->sig);
        nanosleep(&ts, NULL);
    }
    atomic_store(&st->done, 1);
    return NULL;
}

/* The Winograd shape of the crash (36 points of 32x256 by 256x512), with
 * malloc churn so that a damaged chunk is found. */
static int gemms_under_storm(pk_stop_signals *s)
{
    long m = 32, n = 256, k = 512, np = 36;
    float *a = calloc((size_t)(m * k * np), sizeof *a), *b = calloc((size_t)(k * n * np), sizeof *b),
          *c = calloc((size_t)(m * n * np), sizeof *c);
    if (!a || !b || !c)
        abort();
    pk_test_fill(a, (size_t)(m * k * np), 1, 1.0f);
    pk_test_fill(b, (size_t)(k * n * np), 2, 1.0f);
    struct storm st = {SIGINT, 3000, 0};
    pthread_t tid;
    if (pthread_create(&tid, NULL, storm_main, &st))
        abort();
    int rounds = 0, bad = 0;
    while (!atomic_load(&st.done) || rounds < 5) {
        for (long p = 0; p < np; p++)
            bad |= dnnl_sgemm('N', 'N', m, n, k, 1.0f, a + p * m * k, k, b + p * k * n, n, 0.0f,
                              c + p * m * n, n) != dnnl_success;
        free(malloc(1000 + (size_t)(rounds % 7) * 4096));
        rounds++;
    }
    pthread_join(tid, NULL);
    PK_CHECK(failures, !bad, "sgemm failed");
    PK_CHECK(failures, pk_stop_signals_poll(s) == SIGINT, "poll %d, want SIGINT",
             pk_stop_signals_poll(s));
    free(a);
    free(b);
    free(c);
    return rounds;
}

/* In a child: one-shot mode, SIGTERM then SIGINT. The child reports what
 * it polled after the first and must die of the second. */
static void one_shot(void)
{
    int fd[2];
    if (pipe(fd))
        abort();
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        close(fd[0]);
        pk_stop_signals *s;
        pk_err e;
        if (pk_stop_signals_start(&s, PK_STOP_ONE_SHOT, &e))
            _exit(3);
        kill(getpid(), SIGTERM);
        while (!pk_stop_signals_poll(s))
            usleep(1000);
        int got = pk_stop_signals_poll(s);
        if (write(fd[1], &got, sizeof got) != (ssize_t)sizeof got)
            _exit(4);
        kill(getpid(), SIGINT);
        for (int i = 0; i < 5000; i++)
            usleep(1000);
        _exit(0); /* survived the second signal: wrong */
    }
    close(fd[1]);
    int got = 0, status = 0;
    ssize_t r = read(fd[0], &got, sizeof got);
    close(fd[0]);
    waitpid(pid, &status, 0);
    PK_CHECK(failures, r == (ssize_t)sizeof got && got == SIGTERM, "first signal %d, want %d", got,
             SIGTERM);
    PK_CHECK(failures, WIFSIGNALED(status) && WTERMSIG(status) == SIGINT,
             "child status %#x, want killed by SIGINT", status);
}

int main(void)
{
    pk_stop_signals *s;
    pk_err e;
    if (pk_stop_signals_start(&s, PK_STOP_REPEAT, &e)) {
        fprintf(stderr, "test_stop_signals: %s\n", e.msg);
        return 1;
    }
    PK_CHECK(failures, pk_stop_signals_poll(s) == 0, "no signal yet");
    int rounds = gemms_under_storm(s);
    /* A later SIGTERM does not replace the first signal. */
    kill(getpid(), SIGTERM);
    usleep(20000);
    PK_CHECK(failures, pk_stop_signals_poll(s) == SIGINT, "the first signal stays");
    pk_stop_signals_free(s);
    one_shot();
    if (failures)
        fprintf(stderr, "test_stop_signals: %d failure(s)\n", failures);
    else
        printf("  ok  3000 SIGINTs over %d sgemm rounds; first signal kept; one-shot dies of the "
               "second\n",
               rounds);
    return failures != 0;
}
