#!/usr/bin/python3
"""The PyTorch side of tests/pth2safetensors.bats (Debian's python3-torch; no
torchvision: the ResNet is pspnet_ref's replica of torchvision's, whose
state_dict names and shapes are torchvision's).

  pth_roundtrip.py make OUT.pth ARCH STEM [--wrap]
      a ResNet with random weights and running statistics, plus fc (1000
      classes), saved with torch.save; --wrap saves semseg's checkpoint shape
      {'epoch', 'state_dict': {'module.' + name: ...}} instead.
  pth_roundtrip.py compare IN.pth MODEL LOGITS
      MODEL: pspkd's model after --init from the converted IN.pth; LOGITS:
      seg-predict --logits of MODEL. Checks that MODEL's backbone tensors are
      IN.pth's, bit for bit, then runs PyTorch's PSPNet with IN.pth's backbone
      (mapped here, independently of pspkd) and MODEL's heads on LOGITS'
      input: both logits within 1e-4 (max|d| / max|ref|).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pspnet_ref import ARCHS, PSPNet, ResNet  # noqa: E402
from st_io import load, load_metadata  # noqa: E402


def make(out, arch, stem, wrap):
    torch.manual_seed(7)
    block, layers, _, _ = ARCHS[arch]
    r = ResNet(block, layers, deep_base=(stem == "deep"))
    sd = r.state_dict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1234, dtype=torch.int64)
        elif k.endswith("running_var"):
            sd[k] = torch.rand_like(v) + 0.5
        elif k.endswith("running_mean") or k.endswith(".bias"):
            sd[k] = torch.randn_like(v) * 0.1
        elif k.endswith(".weight") and v.dim() == 1:
            sd[k] = 1 + torch.randn_like(v) * 0.1
        else:  # conv weights, He-scaled so that activations stay O(1)
            fan_in = v[0].numel()
            sd[k] = torch.randn_like(v) * (2.0 / fan_in) ** 0.5
    sd["fc.weight"] = torch.randn(1000, 512 * block.expansion) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    obj = {"epoch": 100, "state_dict": {"module." + k: v for k, v in sd.items()}} if wrap else sd
    torch.save(obj, out)
    print(f"{out}: {len(sd)} tensors")


def backbone_name(name, stem):
    """pspkd/semseg name -> the ImageNet file's, or None for heads."""
    if name.startswith("layer0."):
        idx, rest = name[len("layer0."):].split(".", 1)
        mods = ({"0": "conv1", "1": "bn1"} if stem == "7x7" else
                {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"})
        return mods[idx] + "." + rest
    return name if name.split(".")[0] in ("layer1", "layer2", "layer3", "layer4") else None


def compare(pth, model, logits):
    src = torch.load(pth, map_location="cpu", weights_only=True)
    if "state_dict" in src:
        src = {k[len("module."):]: v for k, v in src["state_dict"].items()}
    meta = load_metadata(model)
    arch, stem = meta["arch"], meta["stem"]
    m = load(model)
    same = diff = 0
    for k, v in m.items():
        fk = backbone_name(k, stem)
        if fk is None or k.endswith("num_batches_tracked"):
            continue
        if np.array_equal(np.asarray(v), src[fk].numpy()):
            same += 1
        else:
            diff += 1
            print(f"differs: {k} <- {fk}")
    print(f"backbone tensors equal to the .pth: {same}, different: {diff}")
    if diff or not same:
        return 1
    net = PSPNet(arch=arch, stem=stem, classes=int(meta["classes"]))
    sd = net.state_dict()
    for k in sd:
        fk = backbone_name(k, stem)
        if fk is not None:
            sd[k] = src[fk].clone()
        else:
            sd[k] = torch.from_numpy(np.array(m[k]))
    net.load_state_dict(sd)
    net.eval()
    t = load(logits)
    with torch.no_grad():
        main, aux = net(torch.from_numpy(np.array(t["input"])))
    worst = 0.0
    for name, ref in (("main", main), ("aux", aux)):
        got = torch.from_numpy(np.array(t[name]))
        err = float((got - ref).abs().max() / ref.abs().max())
        worst = max(worst, err)
        print(f"{arch} {stem}: {name} logits vs PyTorch: max rel err {err:.2e} "
              f"(max |logit| {float(ref.abs().max()):.3g})")
    return 0 if worst < 1e-4 else 1


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4], "--wrap" in sys.argv[5:])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3], sys.argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
