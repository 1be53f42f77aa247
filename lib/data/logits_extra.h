/* The logits cache as the loader's extra planes (lib/data/loader.h): pass
 *   opts.extra_fn = pk_logits_extra_fn, opts.extra_user = a pk_logits_cache*,
 *   opts.extra_channels = 2 * classes
 * and each sample's batch `extra` holds the teacher's main logits in
 * channels [0, K) and aux logits in [K, 2K), warped with the image (zero on
 * invalid pixels). Kept out of logits_cache.h so that tools which do not
 * use the loader do not pull it in. */
#ifndef PSPKD_LOGITS_EXTRA_H
#define PSPKD_LOGITS_EXTRA_H

#include "data/loader.h"
#include "store/logits_cache.h"

/* A pk_extra_fn: fills set 0 (main) and set 1 (aux), each grid_h x grid_w x
 * K, with m = {1/8, 0, 0, 0, 1/8, 0}. Thread-safe. */
int pk_logits_extra_fn(void *user, const char *key, int img_w, int img_h,
                       pk_extra_planes *out, pk_err *e);

#endif
