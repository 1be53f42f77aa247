"""The steps the PyTorch benchmarks time, on the CPU (torch_pspnet_bench.py)
and on a GPU (torch_pspnet_gpu.py): an SGD train step (momentum 0.9, wd
1e-4) on CE + 0.4 aux CE, plus, with fake teacher logits, KD (KL, T=1, on
the main logits) + SmoothL1 (aux vs the teacher's aux); or an eval forward
without autograd. bf16=True: the forward under autocast to bfloat16 on
the input's device (PyTorch's mixed precision: bf16 convolutions, fp32
master weights), the losses, backward and SGD step on the fp32 logits as in
pspkd's bf16."""
import contextlib

import torch
import torch.nn.functional as F


def forward_ctx(bf16, device_type):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def train_step(net, opt, x, y, t_main, t_aux, bf16=False):
    with forward_ctx(bf16, x.device.type):
        main, aux = net(x)
    main, aux = main.float(), aux.float()
    loss = F.cross_entropy(main, y, ignore_index=255) + \
        0.4 * F.cross_entropy(aux, y, ignore_index=255)
    if t_main is not None:
        kl = F.kl_div(F.log_softmax(main, 1), F.softmax(t_main, 1), reduction="none")
        loss = loss + kl.sum(1).mean() + F.smooth_l1_loss(aux, t_aux)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def make_step(net, x, y=None, t_main=None, t_aux=None, bf16=False):
    """The train step on (x, y) when y is given (net in training mode),
    else the eval forward on x."""
    if y is not None:
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        return lambda: train_step(net, opt, x, y, t_main, t_aux, bf16)
    net.eval()

    def step():
        with torch.no_grad(), forward_ctx(bf16, x.device.type):
            net(x)
    return step
