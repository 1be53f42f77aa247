/* libFuzzer: the trainers' CSV log as a resumed run reads it
 * (pk_train_log_open: header check, torn rows, trimming rows past the
 * checkpoint's step, upgrading a legacy log). The first byte picks the
 * step resumed from; the rest is the log. */
#include "fuzz_util.h"
#include "train/train_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    long start = data[0] == 0xff ? 0 : data[0];
    const char *path = fz_write("log.csv", data + 1, size - 1);
    pk_train_log l;
    pk_err e;
    if (pk_train_log_open(&l, path, start, &e) == PK_OK) {
        pk_train_log_row r = {.step = start + 1, .epoch = 1, .lr = 0.01, .loss = 1};
        (void)pk_train_log_step(&l, &r, &e);
        (void)pk_train_log_close(&l, &e);
    }
    return 0;
}
