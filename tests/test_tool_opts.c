/* tool_opts: the getopt_long driver and its messages (run against glibc's
 * getopt_long on real argument vectors), and the value parsers. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/tool_opts.h"
#include "support.h"

enum { O_JSON = 256, O_SAVE, O_SCALE };

static const struct option lo[] = {
    {"model", required_argument, 0, 'm'}, {"quiet", no_argument, 0, 'q'},
    {"json", no_argument, 0, O_JSON},     {"save-dir", required_argument, 0, O_SAVE},
    {"scales", required_argument, 0, O_SCALE}, {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},     {0, 0, 0, 0}};

#define SHORT ":m:d:qhV"

/* Runs getopt_long over the NULL-terminated arguments after argv[0] up to
 * its first error, and returns that error's message ("" when none). */
static const char *message(const char *first, ...)
{
    static char m[160];
    char *argv[16] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 15; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    optind = 0; /* glibc: start over */
    opterr = 0;
    int c;
    m[0] = '\0';
    while ((c = getopt_long(argc, argv, SHORT, lo, NULL)) != -1)
        if (c == ':' || c == '?') {
            pk_getopt_message(m, sizeof m, c, optopt, argv[optind - 1], lo);
            break;
        }
    return m;
}

struct seen {
    int n, codes[8];
    const char *args[8];
};

static int record(void *ctx, int code, const char *arg)
{
    struct seen *s = ctx;
    if (code == 'd' && !strcmp(arg, "stop"))
        return 7;
    s->codes[s->n] = code;
    s->args[s->n++] = arg;
    return PK_GO_ON;
}

static void no_usage(FILE *f) { (void)f; }

/* Sends stderr to /dev/null (the usage errors the checks provoke) until
 * unmute(the returned descriptor). */
static int mute(void)
{
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, 2);
        close(null);
    }
    return saved;
}

static void unmute(int saved)
{
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
}

static int drive(struct seen *s, int argc, char **argv)
{
    static const pk_tool t = {"prog", "m:d:q", lo, no_usage};
    memset(s, 0, sizeof *s);
    optind = 0;
    int saved = mute();
    int st = pk_getopt(&t, argc, argv, record, s);
    unmute(saved);
    return st;
}

static int check_numbers(void)
{
    int fails = 0, i = 0;
    long l = 0;
    float f = 0;
    double d = 0;
    const pk_num_opt t[] = {
        {'i', 1, 8, "-i takes 1..8", .i = &i},
        {'l', 0, 1L << 40, "-l takes a count", .l = &l},
        {'f', 0, 1, "-f takes 0..1", .f = &f},
        {'d', -1, 1e6, "-d takes -1..1e6", .d = &d},
    };
    size_t n = sizeof t / sizeof *t;
    PK_CHECK(fails, pk_num_option("prog", t, n, 'i', "8") == PK_GO_ON && i == 8, "int");
    PK_CHECK(fails, pk_num_option("prog", t, n, 'l', "1099511627776") == PK_GO_ON &&
                        l == 1L << 40, "long");
    PK_CHECK(fails, pk_num_option("prog", t, n, 'f', "0.25") == PK_GO_ON && f == 0.25f, "float");
    PK_CHECK(fails, pk_num_option("prog", t, n, 'd', "-1") == PK_GO_ON && d == -1, "double");
    int saved = mute();
    int bad[] = {pk_num_option("prog", t, n, 'i', "9"), pk_num_option("prog", t, n, 'i', "2.5"),
                 pk_num_option("prog", t, n, 'f', "abc"), pk_num_option("prog", t, n, 'x', "1")};
    unmute(saved);
    for (int k = 0; k < 4; k++)
        PK_CHECK(fails, bad[k] == 2, "bad value %d: status %d", k, bad[k]);
    PK_CHECK(fails, i == 8 && f == 0.25f, "a bad value stores nothing");
    return fails;
}

static int check_messages(void)
{
    int fails = 0;
    static const char *const cases[][4] = {
        /* the grouped unknown short option: named by optopt, not by argv */
        {"-Zq", NULL, NULL, "unknown option '-Z'"},
        {"-qZ", NULL, NULL, "unknown option '-Z'"},
        {"--json", "-Zq", NULL, "unknown option '-Z'"},
        {"-m", "--save-dir=x", "-Zq", "unknown option '-Z'"},
        {"-Z", NULL, NULL, "unknown option '-Z'"},
        {"--bogus", "-q", NULL, "unknown option '--bogus'"},
        {"--bogus=3", NULL, NULL, "unknown option '--bogus'"},
        {"--s", "x", NULL, "ambiguous option '--s'"},
        {"-m", NULL, NULL, "option '-m' needs an argument"},
        {"-qm", NULL, NULL, "option '-m' needs an argument"},
        {"--model", NULL, NULL, "option '--model' needs an argument"},
        {"--mod", NULL, NULL, "option '--model' needs an argument"},
        {"--save-dir", NULL, NULL, "option '--save-dir' needs an argument"},
        {"--quiet=3", NULL, NULL, "option '--quiet' takes no argument"},
        {"--js=1", NULL, NULL, "option '--json' takes no argument"},
        {"-q", "--json", NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *got = message(cases[i][0], cases[i][1], cases[i][2], NULL);
        PK_CHECK(fails, !strcmp(got, cases[i][3]), "%s %s: got \"%s\", want \"%s\"",
                 cases[i][0], cases[i][1] ? cases[i][1] : "", got, cases[i][3]);
    }
    return fails;
}

static int check_driver(void)
{
    int fails = 0;
    struct seen s;
    char *a1[] = {"prog", "-qm", "M", "--save-dir=D", "in1", "--json", "in2", NULL};
    int st = drive(&s, 7, a1);
    PK_CHECK(fails, st == PK_GO_ON && s.n == 4, "options: status %d, %d seen", st, s.n);
    PK_CHECK(fails, s.codes[0] == 'q' && s.codes[1] == 'm' && !strcmp(s.args[1], "M"),
             "-qm M");
    PK_CHECK(fails, s.codes[2] == O_SAVE && !strcmp(s.args[2], "D") && s.codes[3] == O_JSON,
             "--save-dir=D --json");
    PK_CHECK(fails, optind == 5 && !strcmp(a1[5], "in1") && !strcmp(a1[6], "in2"),
             "operands last: optind %d", optind);
    char *a2[] = {"prog", "-d", "stop", "-q", NULL};
    PK_CHECK(fails, drive(&s, 4, a2) == 7 && s.n == 0, "a handler's status ends the parse");
    char *a3[] = {"prog", "--help", "-Z", NULL};
    PK_CHECK(fails, drive(&s, 3, a3) == 0, "--help: 0");
    char *a4[] = {"prog", "-q", "-Z", NULL};
    PK_CHECK(fails, drive(&s, 3, a4) == 2 && s.n == 1, "-Z: a usage error");
    return fails;
}

static int check_values(void)
{
    int fails = 0;
    uint64_t seed;
    PK_CHECK(fails, !pk_parse_seed("010", &seed) && seed == 10, "seed 010 is ten");
    PK_CHECK(fails, !pk_parse_seed("0", &seed) && seed == 0, "seed 0");
    PK_CHECK(fails, !pk_parse_seed("18446744073709551615", &seed) && seed == UINT64_MAX,
             "seed max");
    const char *bad_seeds[] = {"", "-1", " 1", "+1", "1x", "0x10", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad_seeds / sizeof *bad_seeds; i++) {
        seed = 99;
        PK_CHECK(fails, pk_parse_seed(bad_seeds[i], &seed) && seed == 99, "seed '%s'",
                 bad_seeds[i]);
    }

    int h = 0, w = 0;
    PK_CHECK(fails, !pk_parse_crop("473", &h, &w) && h == 473 && w == 473, "crop 473");
    PK_CHECK(fails, !pk_parse_crop("33x41", &h, &w) && h == 33 && w == 41, "crop 33x41");
    PK_CHECK(fails, !pk_parse_crop("1", &h, &w) && h == 1 && w == 1, "crop 1");
    PK_CHECK(fails, !pk_parse_crop("8193x9", &h, &w) && h == 8193 && w == 9, "crop 8193x9");
    const char *bad_crops[] = {"32", "33x40", "8201", "0", "-7", "x33", "33x", "33x41x9",
                               "33 ", "", "33,41"};
    for (size_t i = 0; i < sizeof bad_crops / sizeof *bad_crops; i++) {
        h = w = 5;
        PK_CHECK(fails, pk_parse_crop(bad_crops[i], &h, &w) && h == 5 && w == 5, "crop '%s'",
                 bad_crops[i]);
    }

    int i;
    long l;
    double x;
    char *end;
    PK_CHECK(fails, !pk_parse_int("-3", -5, 5, &i) && i == -3, "int -3");
    PK_CHECK(fails, pk_parse_int("6", -5, 5, &i) && pk_parse_int("3x", 0, 5, &i), "int range");
    PK_CHECK(fails, !pk_parse_long("12,7", 0, 99, &l, &end) && l == 12 && *end == ',',
             "long with endp");
    PK_CHECK(fails, pk_parse_long("12,7", 0, 99, &l, NULL), "long, whole string");
    PK_CHECK(fails, !pk_parse_double("1e-4", 0, 1, &x) && x == 1e-4, "double 1e-4");
    PK_CHECK(fails, pk_parse_double("nan", 0, 1, &x) && pk_parse_double("abc", 0, 1, &x),
             "double nan, abc");
    return fails;
}

int main(void)
{
    int fails = check_messages() + check_driver() + check_numbers() + check_values();
    if (fails) {
        fprintf(stderr, "test_tool_opts: %d failure(s)\n", fails);
        return 1;
    }
    printf("test_tool_opts: ok\n");
    return 0;
}
