#!/usr/bin/python3
"""PyTorch's figures for the three cases of bench/bench_gpu.c, on the same GPU:
semseg's PSPNet from tests/fixtures/pspnet_ref.py, eager FP32 with TF32
allowed for convolutions and matmuls (PyTorch's convolution default; the
matmul switch turned on as well), cudnn.benchmark on (semseg's setting, and
the fastest eager configuration), NCHW (PyTorch's default layout):

  torch_r18_train_b8_473   ResNet18 train step: forward, CE + 0.4 aux CE
  torch_r18_train_b16_473  + KD (KL, T=1, main logits vs fake teacher
                           logits) + SmoothL1 (aux vs fake teacher aux),
                           backward, SGD (momentum 0.9, wd 1e-4)
  torch_r50_infer_b8_473   ResNet50 (deep stem) eval forward, main + aux
                           logits at full resolution, no autograd

Prints "NAME VALUE UNIT" lines: img/s (median step), GFLOP/s from the same
convolution FLOP counts as bench_gpu (ResNet18 forward 120.7 GFLOP per image
at 473, a train step 3x that; ResNet50 forward 340.3), the peak of
torch.cuda.max_memory_allocated over the timed steps, and the device's used
memory (torch.cuda.mem_get_info: the caching allocator's reserve and the
CUDA context too).

bf16 (the default --precision both runs it after fp32): the same cases as
torch_NAME_bf16 in the configuration a PyTorch user picks for speed on a
GPU: channels-last model and input, the forward under CUDA autocast to
bfloat16 (torch_step.py; fp32 master weights, losses and SGD step), and
its fraction of the dense bf16 peak. Usage:
  python3 bench/torch_pspnet_gpu.py [--warmup N] [--iters N] [--only NAME] [--no-tf32]
      [--precision fp32|bf16|both]
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
GFLOP_FWD = {"resnet18": 120.7, "resnet50": 340.3}  # per image at 473x473 (pk_model_flops)
# name, arch, stem, train, batch, size
CASES = [("r18_train_b8_473", "resnet18", "7x7", True, 8, 473),
         ("r18_train_b16_473", "resnet18", "7x7", True, 16, 473),
         ("r50_infer_b8_473", "resnet50", "deep", False, 8, 473)]


def bf16_peak(name):
    """Dense bf16 tensor-core peak in FLOP/s by device name; 0 when unknown
    (bench_gpu.c's table)."""
    if "H100" in name or "H200" in name:
        return 989.4e12
    if "A100" in name:
        return 312e12
    return 0.0


def run(case, warmup, iters, bf16):
    name, arch, stem, train, n, size = case
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(7)
    net = PSPNet(arch, stem, CLASSES, dropout=0.1).to(dev)
    x = torch.rand(n, 3, size, size, generator=g, device=dev) * 4 - 2
    if bf16:
        name += "_bf16"
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = t_main = t_aux = None
    if train:
        y = torch.randint(0, CLASSES, (n, size, size), generator=g, device=dev)
        y[torch.rand(n, size, size, generator=g, device=dev) < 0.05] = 255
        t_main = torch.rand(n, CLASSES, size, size, generator=g, device=dev) * 8 - 4
        t_aux = torch.rand(n, CLASSES, size, size, generator=g, device=dev) * 8 - 4
    step = make_step(net, x, y, t_main, t_aux, bf16)
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, used = [], 0
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        free_b, total_b = torch.cuda.mem_get_info()
        used = max(used, total_b - free_b)
    med = statistics.median(times)
    flops = GFLOP_FWD[arch] * n * (3 if train else 1)
    print("torch_%s %.2f img/s" % (name, n / med))
    print("torch_%s_gflops %.0f GFLOP/s" % (name, flops / med))
    peak = bf16_peak(torch.cuda.get_device_name(0))
    if bf16 and peak > 0:
        print("torch_%s_bf16_peak_frac %.3f of dense bf16 peak" % (name, flops * 1e9 / med / peak))
    print("torch_%s_peak_alloc %.0f MiB" % (name, torch.cuda.max_memory_allocated() / 2**20))
    print("torch_%s_device_used %.0f MiB" % (name, used / 2**20))
    print("torch_%s_step %.4f s (median of %d, min %.4f, max %.4f)"
          % (name, med, iters, min(times), max(times)), flush=True)
    del net, x
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description="PyTorch PSPNet GPU throughput")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--no-tf32", action="store_true", help="strict FP32 convolutions")
    ap.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_pspnet_gpu: skipped: no GPU (or no CUDA in this PyTorch)")
        return 0
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = not a.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = not a.no_tf32
    print("# torch_pspnet_gpu: PyTorch %s, cuDNN %s, %s, TF32 %s, %d warm-up + %d timed steps"
          % (torch.__version__, torch.backends.cudnn.version(), torch.cuda.get_device_name(0),
             "off" if a.no_tf32 else "on", a.warmup, a.iters))
    precisions = {"fp32": [False], "bf16": [True], "both": [False, True]}[a.precision]
    for bf16 in precisions:
        for case in CASES:
            if a.only is None or case[0] in a.only.split(","):
                run(case, a.warmup, a.iters, bf16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
