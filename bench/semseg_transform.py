#!/usr/bin/python3
"""semseg's training data chain, timed on one core, for bench_data's ratio.

Runs what hszhao/semseg's tool/train.py composes from util/transform.py
(RandScale [0.5, 2], RandRotate [-10, 10] p 0.5 with mean / 255 borders,
RandomGaussianBlur 5x5 p 0.5, RandomHorizontalFlip p 0.5, Crop 473 'rand'
with centred mean / 255 padding, ToTensor, Normalize), re-implemented here
with the same OpenCV calls and numpy in place of torch for ToTensor and
Normalize (the same arithmetic: CHW float32, (x - mean) / std).

usage: semseg_transform.py LIST ROOT [CROPS [RUNS [CROP]]]
LIST holds one id per line; images are ROOT/JPEGImages/ID.jpg, labels
ROOT/SegmentationClass/ID.png (read as semseg's dataset does: imread, BGR to
RGB, float32; label IMREAD_GRAYSCALE). Prints, as "NAME VALUE UNIT" lines,
the median of RUNS runs of CROPS crops for the transforms alone (images
preloaded) and for read + transforms: crops per CPU second (per-core
throughput, robust on a shared machine) and crops per wall-clock second.
"""
import os
import random
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

MEAN = [v * 255 for v in (0.485, 0.456, 0.406)]
STD = [v * 255 for v in (0.229, 0.224, 0.225)]
IGNORE = 255


def read_sample(root, ident):
    image = cv2.imread(os.path.join(root, "JPEGImages", ident + ".jpg"), cv2.IMREAD_COLOR)
    image = np.float32(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    label = cv2.imread(os.path.join(root, "SegmentationClass", ident + ".png"),
                       cv2.IMREAD_GRAYSCALE)
    if image is None or label is None:
        raise SystemExit("semseg_transform.py: cannot read " + ident)
    return image, label


def rand_scale(image, label):
    s = 0.5 + (2.0 - 0.5) * random.random()
    image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    return image, label


def rand_rotate(image, label):
    if random.random() < 0.5:
        angle = -10 + 20 * random.random()
        h, w = label.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1)
        image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=MEAN)
        label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
    return image, label


def rand_blur(image, label):
    if random.random() < 0.5:
        image = cv2.GaussianBlur(image, (5, 5), 0)
    return image, label


def rand_flip(image, label):
    if random.random() < 0.5:
        image = cv2.flip(image, 1)
        label = cv2.flip(label, 1)
    return image, label


def rand_crop(image, label, ch, cw):
    h, w = label.shape
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h > 0 or pad_w > 0:
        t, l = pad_h // 2, pad_w // 2
        image = cv2.copyMakeBorder(image, t, pad_h - t, l, pad_w - l, cv2.BORDER_CONSTANT,
                                   value=MEAN)
        label = cv2.copyMakeBorder(label, t, pad_h - t, l, pad_w - l, cv2.BORDER_CONSTANT,
                                   value=IGNORE)
    h, w = label.shape
    y = random.randint(0, h - ch)
    x = random.randint(0, w - cw)
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def to_tensor_normalize(image, label):
    t = np.ascontiguousarray(image.transpose((2, 0, 1)), dtype=np.float32)
    for c in range(3):
        t[c] -= MEAN[c]
        t[c] /= STD[c]
    return t, label.astype(np.int64)


def chain(image, label, crop):
    image, label = rand_scale(image, label)
    image, label = rand_rotate(image, label)
    image, label = rand_blur(image, label)
    image, label = rand_flip(image, label)
    image, label = rand_crop(image, label, crop, crop)
    return to_tensor_normalize(image, label)


def crops_per_s(ids, root, crops, crop, preloaded):
    """(crops per CPU second, crops per wall second)"""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(crops):
        ident = ids[i % len(ids)]
        image, label = preloaded[ident] if preloaded else read_sample(root, ident)
        chain(image, label, crop)
    return crops / (time.process_time() - c0), crops / (time.perf_counter() - t0)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    list_path, root = sys.argv[1], sys.argv[2]
    crops = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    crop = int(sys.argv[5]) if len(sys.argv) > 5 else 473
    with open(list_path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    random.seed(0)
    preloaded = {i: read_sample(root, i) for i in ids}
    crops_per_s(ids, root, min(8, crops), crop, preloaded)  # warm-up
    tr = [crops_per_s(ids, root, crops, crop, preloaded) for _ in range(runs)]
    lt = [crops_per_s(ids, root, crops, crop, None) for _ in range(runs)]
    for name, v in (("semseg_transform_1t", tr), ("semseg_load_transform_1t", lt)):
        print("%s %.1f crops/cpu-s" % (name, statistics.median(x[0] for x in v)))
        print("%s_wall %.1f crops/s" % (name, statistics.median(x[1] for x in v)))


if __name__ == "__main__":
    main()
