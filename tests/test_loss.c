/* Losses: values against naive double loops, finite-difference gradients,
 * weight scaling and accumulation into a shared buffer, ignored/masked
 * pixels, the all-ignored and all-masked cases (0, no gradient, no NaN),
 * temperatures other than 1 and large logits, the class-count guard
 * (K up to PK_LOSS_KMAX works; more asserts, in a child process), and
 * pk_branch_loss (the loss step with the upsampling folded in) against the
 * separate ops it replaces: the same gradient bit for bit, the same losses
 * to 1e-6. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ops/ops.h"
#include "support.h"

enum { P = 20, K = 7 }; /* small P: the float loss value limits the difference quotient */

typedef enum { L_CE, L_KD, L_SL1, L_MSE } loss_kind;

typedef struct loss_fn {
    pk_ctx *c;
    loss_kind kind;
    const float *t;        /* KD / regression target */
    const uint8_t *labels; /* CE */
    const uint8_t *mask;   /* KD / regression; NULL = all valid */
    float T;
} loss_fn;

static float eval_loss(const loss_fn *a, float *g, const float *s, float weight)
{
    switch (a->kind) {
    case L_CE: return pk_ce_loss(a->c, g, s, a->labels, P, K, 255, weight);
    case L_KD: return pk_kd_loss(a->c, g, s, a->t, a->mask, P, K, a->T, weight);
    case L_SL1: return pk_smoothl1_loss(a->c, g, s, a->t, a->mask, P, K, weight);
    default: return pk_mse_loss(a->c, g, s, a->t, a->mask, P, K, weight);
    }
}

static double loss_f(void *u, const float *s)
{
    return eval_loss(u, NULL, s, 1.0f);
}

static double naive_ce(const float *x, const uint8_t *lab)
{
    double sum = 0;
    int n = 0;
    for (int p = 0; p < P; p++) {
        if (lab[p] == 255)
            continue;
        double z = 0;
        for (int k = 0; k < K; k++)
            z += exp((double)x[p * K + k]);
        sum += log(z) - x[p * K + lab[p]];
        n++;
    }
    return n ? sum / n : 0;
}

static double naive_kd(const float *s, const float *t, const uint8_t *mask, double T)
{
    double sum = 0;
    int n = 0;
    for (int p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        double zs = 0, zt = 0, kl = 0;
        for (int k = 0; k < K; k++) {
            zs += exp(s[p * K + k] / T);
            zt += exp(t[p * K + k] / T);
        }
        for (int k = 0; k < K; k++) {
            double pt = exp(t[p * K + k] / T) / zt, ps = exp(s[p * K + k] / T) / zs;
            kl += pt * log(pt / ps);
        }
        sum += kl;
        n++;
    }
    return n ? T * T * sum / n : 0;
}

static double naive_reg(const float *s, const float *t, const uint8_t *mask, int smooth)
{
    double sum = 0;
    int n = 0;
    for (int p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        for (int k = 0; k < K; k++) {
            double d = (double)s[p * K + k] - t[p * K + k];
            sum += smooth ? (fabs(d) < 1 ? 0.5 * d * d : fabs(d) - 0.5) : d * d;
            n++;
        }
    }
    return n ? sum / n : 0;
}

static int close_scalar(const char *what, double got, double want, double tol)
{
    double err = fabs(got - want) / (fabs(want) > 1e-12 ? fabs(want) : 1e-12);
    int bad = !(err <= tol);
    printf("  %s %s: %.9g vs %.9g rel=%.3g (tol %.1g)\n", bad ? "FAIL" : "ok  ", what, got,
           want, err, tol);
    return bad;
}

/* Value, finite-difference gradient, and "weight w accumulates w * grad". */
static int check_loss(const char *name, loss_fn *a, float *s, double want)
{
    int fails = 0;
    char what[128];
    float g[P * K], g2[P * K], pre[P * K], want2[P * K];
    memset(g, 0, sizeof g);
    float v = eval_loss(a, g, s, 1.0f);
    snprintf(what, sizeof what, "%s value vs naive", name);
    fails += close_scalar(what, v, want, 1e-6);
    snprintf(what, sizeof what, "%s value without gradient buffer", name);
    fails += close_scalar(what, eval_loss(a, NULL, s, 1.0f), v, 0.0);
    snprintf(what, sizeof what, "%s finite difference", name);
    fails += pk_check_grad(what, loss_f, a, s, g, P * K, 0, 1e-2, 2e-3);
    /* accumulation: start from a non-zero buffer, weight 0.4 */
    pk_test_fill(pre, P * K, 77, 1.0f);
    memcpy(g2, pre, sizeof g2);
    float v2 = eval_loss(a, g2, s, 0.4f);
    for (int i = 0; i < P * K; i++)
        want2[i] = pre[i] + 0.4f * g[i];
    snprintf(what, sizeof what, "%s weight 0.4 accumulates", name);
    fails += pk_check_close(what, g2, want2, P * K, 1e-6);
    snprintf(what, sizeof what, "%s returns the unweighted loss", name);
    fails += close_scalar(what, v2, v, 0.0);
    return fails;
}

/* Everything ignored / masked: loss 0, buffer untouched, no NaN. */
static int check_empty(const char *name, loss_fn *a, const float *s)
{
    int fails = 0;
    float g[P * K], pre[P * K];
    pk_test_fill(pre, P * K, 78, 1.0f);
    memcpy(g, pre, sizeof g);
    float v = eval_loss(a, g, s, 1.0f);
    char what[128];
    snprintf(what, sizeof what, "%s with no valid pixel: gradient untouched", name);
    PK_CHECK(fails, v == 0.0f, "%s with no valid pixel: loss %g, want 0", name, v);
    fails += pk_check_close(what, g, pre, P * K, 0.0);
    return fails;
}

/* CE and KD at K = PK_LOSS_KMAX give a finite loss; at K = PK_LOSS_KMAX + 1
 * they assert (SIGABRT; a NaN loss where assertions are compiled out), in a
 * child so that the abort does not end this test. */
static int check_kmax_guard(pk_ctx *c)
{
    enum { KX = PK_LOSS_KMAX + 1 };
    static float x[2 * KX], t[2 * KX];
    static const uint8_t lab[2] = {0, 5};
    int fails = 0;
    pk_test_fill(x, 2 * KX, 11, 2.0f);
    pk_test_fill(t, 2 * KX, 12, 2.0f);
    float ce = pk_ce_loss(c, NULL, x, lab, 2, PK_LOSS_KMAX, 255, 1.0f);
    float kd = pk_kd_loss(c, NULL, x, t, NULL, 2, PK_LOSS_KMAX, 2.0f, 1.0f);
    PK_CHECK(fails, isfinite(ce) && ce > 0.0f && isfinite(kd) && kd > 0.0f,
             "K = %d: CE %g, KD %g", PK_LOSS_KMAX, ce, kd);
    for (int which = 0; which < 2; which++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stderr)) /* the assertion's message */
                _exit(4);
            float v = which ? pk_kd_loss(c, NULL, x, t, NULL, 2, KX, 2.0f, 1.0f)
                            : pk_ce_loss(c, NULL, x, lab, 2, KX, 255, 1.0f);
            _exit(isnan(v) ? 3 : 0);
        }
        int st = 0;
        int ok = pid > 0 && waitpid(pid, &st, 0) == pid &&
                 ((WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) ||
                  (WIFEXITED(st) && WEXITSTATUS(st) == 3));
        PK_CHECK(fails, ok, "%s with K = %d: not refused (status %#x)", which ? "KD" : "CE", KX,
                 st);
    }
    printf("  %s CE and KD take K = %d and assert on K = %d\n", fails ? "FAIL" : "ok  ",
           PK_LOSS_KMAX, KX);
    return fails;
}

/* pk_branch_loss against pk_resize_forward + the separate losses into a
 * zeroed buffer, for every distillation term and a zero CE weight. */
static int check_branch(pk_ctx *c)
{
    enum { N = 2, H8 = 4, W8 = 5, H = 25, W = 33, FP = N * H * W };
    static float logits[N * H8 * W8 * K], teacher[FP * K], full[FP * K], want[FP * K],
        got[FP * K];
    static uint8_t labels[FP], valid[FP];
    pk_test_fill(logits, N * H8 * W8 * K, 5, 4.0f);
    pk_test_fill(teacher, FP * K, 6, 4.0f);
    for (int p = 0; p < FP; p++) {
        labels[p] = p % 7 == 2 ? 255 : p % 11 == 5 ? 200 : (uint8_t)((p * 5) % K);
        valid[p] = p % 3 != 0;
    }
    const pk_distill kinds[] = {PK_DISTILL_NONE, PK_DISTILL_KL, PK_DISTILL_SMOOTHL1,
                                PK_DISTILL_MSE};
    const char *names[] = {"none", "KL", "SmoothL1", "MSE"};
    int fails = 0;
    for (int k = 0; k < 4; k++)
        for (int zero_ce = 0; zero_ce < 2; zero_ce++) {
            pk_branch_loss_args a = {logits, N, H8, W8, K, H, W, labels, 255,
                                     zero_ce ? 0.0f : 0.7f, teacher, valid, kinds[k], 1.9f,
                                     0.3f};
            float ce, d, wce, wd = 0.0f;
            pk_resize_forward(c, full, logits, N, H8, W8, K, H, W);
            memset(want, 0, sizeof want);
            wce = pk_ce_loss(c, zero_ce ? NULL : want, full, labels, FP, K, 255, a.ce_weight);
            if (kinds[k] == PK_DISTILL_KL)
                wd = pk_kd_loss(c, want, full, teacher, valid, FP, K, 1.9f, 0.3f);
            else if (kinds[k] == PK_DISTILL_SMOOTHL1)
                wd = pk_smoothl1_loss(c, want, full, teacher, valid, FP, K, 0.3f);
            else if (kinds[k] == PK_DISTILL_MSE)
                wd = pk_mse_loss(c, want, full, teacher, valid, FP, K, 0.3f);
            memset(got, 0x7f, sizeof got); /* assigned, not accumulated */
            pk_branch_loss(c, got, NULL, &a, &ce, &d);
            char what[96];
            snprintf(what, sizeof what, "branch loss, %s, CE weight %g: gradient", names[k],
                     a.ce_weight);
            fails += pk_check_close(what, got, want, FP * K, 0.0);
            snprintf(what, sizeof what, "branch loss, %s, CE weight %g: CE", names[k],
                     a.ce_weight);
            fails += close_scalar(what, ce, wce, 1e-6);
            snprintf(what, sizeof what, "branch loss, %s, CE weight %g: distillation",
                     names[k], a.ce_weight);
            fails += close_scalar(what, d, wd, 1e-6);
        }
    return fails;
}

int main(void)
{
    pk_ctx *c = pk_test_ctx(2);
    int fails = 0;
    float s[P * K], t[P * K];
    uint8_t labels[P], mask[P], none[P];
    pk_test_fill(s, P * K, 1, 3.0f);
    pk_test_fill(t, P * K, 2, 3.0f);
    for (int p = 0; p < P; p++) {
        labels[p] = p % 5 == 3 ? 255 : (uint8_t)((p * 3) % K);
        mask[p] = p % 4 != 1;
        none[p] = 255;
    }

    /* cross-entropy with ignored pixels */
    loss_fn ce = {c, L_CE, NULL, labels, NULL, 1.0f};
    fails += check_loss("CE ignore 255", &ce, s, naive_ce(s, labels));
    loss_fn ce0 = {c, L_CE, NULL, none, NULL, 1.0f};
    fails += check_empty("CE all ignored", &ce0, s);

    /* CE on huge logits stays finite: shifting all logits leaves it unchanged */
    float big[P * K], gb[P * K] = {0}, gs[P * K] = {0};
    for (int i = 0; i < P * K; i++)
        big[i] = s[i] + 1000.0f;
    float vb = pk_ce_loss(c, gb, big, labels, P, K, 255, 1.0f);
    float vs = pk_ce_loss(c, gs, s, labels, P, K, 255, 1.0f);
    fails += close_scalar("CE logits + 1000 (log-sum-exp shift)", vb, vs, 1e-3);
    fails += pk_check_close("CE logits + 1000 gradient", gb, gs, P * K, 1e-3);

    /* distillation: T = 1.9 with a mask, T = 1 without, all-zero mask */
    loss_fn kd = {c, L_KD, t, NULL, mask, 1.9f};
    fails += check_loss("KD T=1.9 masked", &kd, s, naive_kd(s, t, mask, 1.9));
    loss_fn kd1 = {c, L_KD, t, NULL, NULL, 1.0f};
    fails += check_loss("KD T=1 unmasked", &kd1, s, naive_kd(s, t, NULL, 1.0));
    uint8_t zero[P] = {0};
    loss_fn kd0 = {c, L_KD, t, NULL, zero, 1.9f};
    fails += check_empty("KD all-zero mask", &kd0, s);
    /* student == teacher: loss 0, gradient 0 */
    float gz[P * K] = {0}, zeros[P * K] = {0};
    float vz = pk_kd_loss(c, gz, t, t, mask, P, K, 3.0f, 1.0f);
    PK_CHECK(fails, fabsf(vz) < 1e-6f, "KD(t, t) = %g, want 0", vz);
    fails += pk_check_close("KD student == teacher gradient is 0", gz, zeros, P * K, 1e-6);

    /* regression losses; SmoothL1 needs both branches and no |d| near 1 */
    float sr[P * K];
    for (int i = 0; i < P * K; i++) {
        sr[i] = s[i];
        double d = fabs((double)sr[i] - t[i]);
        if (fabs(d - 1.0) < 0.05)
            sr[i] += 0.2f;
    }
    int quad = 0, lin = 0;
    for (int i = 0; i < P * K; i++)
        fabs((double)sr[i] - t[i]) < 1 ? quad++ : lin++;
    PK_CHECK(fails, quad > 20 && lin > 20, "SmoothL1 input covers only one branch");
    loss_fn sl1 = {c, L_SL1, t, NULL, mask, 1.0f};
    fails += check_loss("SmoothL1 masked", &sl1, sr, naive_reg(sr, t, mask, 1));
    loss_fn sl1n = {c, L_SL1, t, NULL, NULL, 1.0f};
    fails += check_loss("SmoothL1 unmasked", &sl1n, sr, naive_reg(sr, t, NULL, 1));
    loss_fn sl10 = {c, L_SL1, t, NULL, zero, 1.0f};
    fails += check_empty("SmoothL1 all-zero mask", &sl10, sr);
    loss_fn mse = {c, L_MSE, t, NULL, mask, 1.0f};
    fails += check_loss("MSE masked", &mse, s, naive_reg(s, t, mask, 0));
    loss_fn mse0 = {c, L_MSE, t, NULL, zero, 1.0f};
    fails += check_empty("MSE all-zero mask", &mse0, s);

    /* CE and KD share one gradient buffer: the sum of the two */
    float gce[P * K] = {0}, gkd[P * K] = {0}, gsum[P * K] = {0}, want[P * K];
    pk_ce_loss(c, gce, s, labels, P, K, 255, 1.0f);
    pk_kd_loss(c, gkd, s, t, mask, P, K, 1.9f, 0.5f);
    pk_ce_loss(c, gsum, s, labels, P, K, 255, 1.0f);
    pk_kd_loss(c, gsum, s, t, mask, P, K, 1.9f, 0.5f);
    for (int i = 0; i < P * K; i++)
        want[i] = gce[i] + gkd[i];
    fails += pk_check_close("CE + 0.5 KD into one buffer", gsum, want, P * K, 1e-6);

    fails += check_kmax_guard(c);
    fails += check_branch(c);

    pk_ctx_destroy(c);
    if (fails)
        printf("test_loss: %d failure(s)\n", fails);
    return fails != 0;
}
