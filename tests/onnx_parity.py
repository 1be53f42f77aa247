#!/usr/bin/python3
"""seg-export's ONNX files against seg-predict (tests/seg-export.bats runs this
when Debian's python3-onnx and python3-opencv are installed).

For each image: seg-predict --logits gives the normalised, padded input and
the main/aux logits at the padded size Hp x Wp; seg-export writes the model
at Hp x Wp (with --aux); onnx.checker.check_model must accept the file and
OpenCV DNN (cv2.dnn.readNetFromONNX) must reproduce both logits within --tol,
measured as max|onnx - pspkd| / max|pspkd| over the tensor. With --dynamic
the model is also exported with symbolic N, H, W and checked (checker, strict
shape inference); OpenCV 4.6 cannot run shape-computing graphs, so when
PyTorch is installed the dynamic model runs in tests/onnx_torch_eval.py (each
node by the ONNX spec on PyTorch ops) against the same logits and tol.

usage: onnx_parity.py --bin DIR --model M [--tol 1e-4] [--dynamic] IMAGE...
Prints one line per image and output; exits 1 when any error is over tol.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures"))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import cv2  # noqa: E402
from st_io import load, load_metadata  # noqa: E402


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def export(args, tmp, extra, name):
    path = os.path.join(tmp, name)
    run(os.path.join(args.bin, "seg-export"), "-q", "-m", args.model, "-o", path, "--aux",
        *extra)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    return path, model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--dynamic", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if args.dynamic:
            _, dyn_model = export(args, tmp, ["--dynamic"], "dynamic.onnx")
            model = dyn_model
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            dims = [d.dim_param or d.dim_value
                    for d in inferred.graph.output[0].type.tensor_type.shape.dim]
            print(f"{args.label}dynamic: checker ok, output main {dims}, "
                  f"opset {model.opset_import[0].version}")
        dyn_run = None
        if args.dynamic:
            try:
                from onnx_torch_eval import run as dyn_run
            except ImportError:
                print(f"{args.label}dynamic: no PyTorch, the dynamic model is not run")
        nets = {}
        for img in args.images:
            lg = os.path.join(tmp, "logits.safetensors")
            run(os.path.join(args.bin, "seg-predict"), "-q", "-t", "1", "-m", args.model,
                "-o", tmp, "--logits", lg, img)
            t = load(lg)
            meta = load_metadata(lg)
            hp, wp = int(meta["padded_height"]), int(meta["padded_width"])
            if (hp, wp) not in nets:
                path, model = export(args, tmp, ["--size", f"{hp}x{wp}"], f"m{hp}x{wp}.onnx")
                nets[(hp, wp)] = (cv2.dnn.readNetFromONNX(path), os.path.getsize(path),
                                  model.opset_import[0].version)
            net, size, opset = nets[(hp, wp)]
            net.setInput(np.ascontiguousarray(t["input"], np.float32), "image")
            outs = [("", o) for o in net.forward(["main", "aux"])]
            if dyn_run:
                outs += [("dynamic ", o) for o in dyn_run(dyn_model, {"image": t["input"]})]
            for (kind, got), name in zip(outs, ("main", "aux") * 2):
                ref = t[name]
                if got.shape != ref.shape:
                    print(f"{args.label}{img}: {name} shape {got.shape}, expected {ref.shape}")
                    return 1
                err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
                worst = max(worst, err)
                print(f"{args.label}{kind}{os.path.basename(img)} {hp}x{wp} {name}: max rel err "
                      f"{err:.2e} (max |logit| {np.abs(ref).max():.3g}; opset {opset}, "
                      f"{size / 1e6:.1f} MB)")
    print(f"{args.label}worst {worst:.2e} (tol {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
