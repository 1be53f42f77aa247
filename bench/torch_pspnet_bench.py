#!/usr/bin/python3
"""PyTorch's figures for the three model cases of bench/bench_model.c, with
semseg's PSPNet from tests/fixtures/pspnet_ref.py, 2 threads, NCHW (PyTorch's
default layout; oneDNN underneath):

  torch_r18_train_b2_225  ResNet18 train step: forward, CE + 0.4 aux CE
                          + KD (KL, T=1, on the main logits against fake
                          teacher logits) + SmoothL1 (aux vs fake teacher
                          aux), backward, SGD (momentum 0.9, wd 1e-4)
  torch_r50_infer_b1_473  ResNet50 (deep stem) eval forward, main + aux
                          logits at full resolution, no autograd
  torch_r50_train_b2_225  ResNet50 train step, CE + 0.4 aux CE

--precision bf16: the same cases as torch_NAME_bf16, channels-last (model
and input) with the forward under CPU autocast to bfloat16 (torch_step.py).

Prints "NAME VALUE img/s" (median over the timed iterations), "NAME_cpu
VALUE img/cpu-s" (CPU seconds of all threads: steadier than wall time on a
shared machine) and a "NAME_step" line with the median seconds. Usage:
  /usr/bin/python3 bench/torch_pspnet_bench.py [--warmup N] [--iters N] [--only NAME]
      [--precision fp32|bf16]
"""
import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from pspnet_ref import PSPNet  # noqa: E402
from torch_step import make_step  # noqa: E402  (beside this file)

CLASSES = 21
# name, arch, stem, train, kd, batch, size
CASES = [("r18_train_b2_225", "resnet18", "7x7", True, True, 2, 225),
         ("r50_infer_b1_473", "resnet50", "deep", False, False, 1, 473),
         ("r50_train_b2_225", "resnet50", "deep", True, False, 2, 225)]


def run(case, warmup, iters, bf16):
    name, arch, stem, train, kd, n, size = case
    g = torch.Generator().manual_seed(7)
    net = PSPNet(arch, stem, CLASSES, dropout=0.1)
    x = torch.rand(n, 3, size, size, generator=g) * 4 - 2
    if bf16:
        name += "_bf16"
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (n, size, size), generator=g)
    y[torch.rand(n, size, size, generator=g) < 0.05] = 255
    t_main = t_aux = None
    if kd:
        t_main = torch.rand(n, CLASSES, size, size, generator=g) * 8 - 4
        t_aux = torch.rand(n, CLASSES, size, size, generator=g) * 8 - 4
    step = make_step(net, x, y if train else None, t_main, t_aux, bf16)
    for _ in range(warmup):
        step()
    times, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    print("torch_%s %.3f img/s" % (name, n / med))
    print("torch_%s_cpu %.3f img/cpu-s" % (name, n / statistics.median(cpu)))
    print("torch_%s_step %.3f s (median of %d, min %.3f, max %.3f)"
          % (name, med, iters, min(times), max(times)), flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch PSPNet throughput")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("# torch_pspnet_bench: PyTorch %s, %d threads, %s, %d warm-up + %d timed iterations"
          % (torch.__version__, torch.get_num_threads(), a.precision, a.warmup, a.iters))
    for case in CASES:
        if a.only is None or case[0] in a.only.split(","):
            run(case, a.warmup, a.iters, a.precision == "bf16")


if __name__ == "__main__":
    main()
