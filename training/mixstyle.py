"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021) for the L0 network.

A camera's look (colour, contrast, noise, JPEG) lives in the channel means and standard deviations
of a network's early feature maps. While training, at each chosen layer and with probability `p`
on each forward pass, every map has its instance statistics replaced by a random mix of its own
and those of another image in the batch (weights drawn from Beta(alpha, alpha)): the content stays,
the camera's style is scrambled, and a source that comes with one label only is harder to recognise
by its look. It adds no parameters and does nothing in eval mode, so checkpoints and voters are
unchanged.

Measured on the leave-one-source-out networks with two seeds (`--mixstyle 0.5`): lower than the
shipped recipe at every size, so no shipped recipe uses it (docs/new-camera-levers.md, "MixStyle, measured").
"""

from __future__ import annotations

from typing import Any

MOBILENETV2_STAGE_ENDS = (3, 6, 10)
"""Indices into MobileNetV2's `features` where the 24-, 32- and 64-channel stages end (strides 4,
8 and 16): the early layers, where style statistics dominate, as after ResNet's res1-res3 in the
paper."""


def mix_styles(x: Any, alpha: float, eps: float = 1e-6) -> Any:
    """`x` (N, C, H, W) with each image's channel mean and std mixed with another image's."""
    import torch

    n = x.shape[0]
    if n < 2:
        return x
    xf = x.float()
    mu = xf.mean(dim=(2, 3), keepdim=True).detach()
    sig = (xf.var(dim=(2, 3), keepdim=True) + eps).sqrt().detach()
    lam = torch.distributions.Beta(alpha, alpha).sample((n, 1, 1, 1)).to(x.device)
    perm = torch.randperm(n, device=x.device)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return ((xf - mu) / sig * sig_mix + mu_mix).to(x.dtype)


def attach_mixstyle(
    features: Any, p: float, alpha: float = 0.1, at: tuple[int, ...] = MOBILENETV2_STAGE_ENDS
) -> list[Any]:
    """Mix styles after `features[i]` for each i in `at`, in training mode only, on a share `p` of
    forward passes (one draw per layer and pass). Returns the hook handles (`.remove()` detaches)."""
    import torch

    if not 0.0 < p <= 1.0:
        raise ValueError(f"mixstyle probability must be in (0, 1], got {p}")
    if alpha <= 0:
        raise ValueError(f"mixstyle alpha must be > 0, got {alpha}")
    if bad := [i for i in at if not 0 <= i < len(features)]:
        raise ValueError(f"mixstyle layers {bad} are outside the {len(features)} feature blocks")

    def hook(module: Any, _inputs: Any, output: Any) -> Any:
        if not module.training or float(torch.rand(())) >= p:
            return None
        return mix_styles(output, alpha)

    return [features[i].register_forward_hook(hook) for i in at]
