"""A small ONNX interpreter on PyTorch ops, for the node types seg-export
writes, so that tests/onnx_parity.py can run the --dynamic models (shape
computations included), which OpenCV 4.6 cannot; Debian's python3-onnx 1.12
has no reference runtime. Each node follows the ONNX operator spec (opset 13)
literally: integer Div truncates, Slice takes starts/ends/axes inputs,
Resize takes sizes and supports only mode=linear with align_corners.

    from onnx_torch_eval import run
    main, aux = run(onnx.load("m.onnx"), {"image": x})   # numpy in and out
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _attrs(node):
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _pads2(a):
    p = list(a.get("pads", [0, 0, 0, 0]))
    assert p[:2] == p[2:], f"asymmetric pads {p}"
    return tuple(p[:2])


def _slice(x, starts, ends, axes):
    idx = [slice(None)] * x.dim()
    for s, e, ax in zip(starts.tolist(), ends.tolist(), axes.tolist()):
        idx[ax] = slice(s, e)
    return x[tuple(idx)]


def _node(t, x, a):
    if t == "Conv":
        return F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=tuple(a["strides"]),
                        padding=_pads2(a), dilation=tuple(a["dilations"]),
                        groups=a.get("group", 1))
    if t == "Relu":
        return F.relu(x[0])
    if t == "Add":
        return x[0] + x[1]
    if t == "Mul":
        return x[0] * x[1]
    if t == "Div":
        if x[0].dtype.is_floating_point:
            return x[0] / x[1]
        return torch.div(x[0], x[1], rounding_mode="trunc")
    if t == "MaxPool":
        return F.max_pool2d(x[0], tuple(a["kernel_shape"]), tuple(a["strides"]), _pads2(a))
    if t == "AveragePool":
        return F.avg_pool2d(x[0], tuple(a["kernel_shape"]), tuple(a["strides"]), _pads2(a))
    if t == "GlobalAveragePool":
        return x[0].mean((2, 3), keepdim=True)
    if t == "Shape":
        return torch.tensor(list(x[0].shape), dtype=torch.int64)
    if t == "Slice":
        axes = x[3] if len(x) > 3 else torch.arange(len(x[1]))
        return _slice(x[0], x[1], x[2], axes)
    if t == "ReduceMean":
        return x[0].mean(tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
    if t == "Concat":
        return torch.cat(x, a["axis"])
    if t == "Resize":
        assert a["mode"] == "linear" and a["coordinate_transformation_mode"] == "align_corners"
        sizes = x[3].tolist()
        assert sizes[:2] == list(x[0].shape[:2]), (sizes, x[0].shape)
        return F.interpolate(x[0], size=tuple(sizes[2:]), mode="bilinear", align_corners=True)
    raise NotImplementedError(f"op {t}")


def run(model, feeds):
    """Runs model (an onnx.ModelProto) on feeds {name: numpy}; returns the
    graph outputs as numpy arrays, in order."""
    env = {i.name: torch.from_numpy(np.array(numpy_helper.to_array(i)))
           for i in model.graph.initializer}
    env.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
    with torch.no_grad():
        for n in model.graph.node:
            x = [env[i] if i else None for i in n.input]
            env[n.output[0]] = _node(n.op_type, x, _attrs(n))
    return [env[o.name].numpy() for o in model.graph.output]


if __name__ == "__main__":
    import sys
    m = onnx.load(sys.argv[1])
    print(sorted({n.op_type for n in m.graph.node}))
