"""CPPN parameterization: a small network from pixel coordinates (x, y) to colour.

A compositional pattern-producing network (Stanley 2007) draws the image as a smooth function of
position, so it has no resolution of its own: optimize it at 128 px, then draw it at 1024 px
(``forward(size=1024)``). As in Lucid's ``param.cppn`` (and the "Differentiable Image
Parameterizations" article, Distill 2018): per-pixel 1x1 layers, each followed by instance
normalization and the composite activation [atan(x)/0.67, atan(x)^2/0.6], and a sigmoid output
layer whose weights start at zero (the image starts gray).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple, Union

import torch
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, size_hw, batch_size

#: Lucid's CPPN notebooks optimize with Adam at this rate; render() uses it when lr is not given.
CPPN_LR = 0.005
#: Coordinates run over [-sqrt(3), sqrt(3)] along the longer side: unit variance, as in Lucid.
COORD_RANGE = 3 ** 0.5
#: slim.instance_norm's epsilon (Lucid's CPPN is built with TF-slim).
NORM_EPS = 1e-6


def _composite(x: torch.Tensor) -> torch.Tensor:
    a = torch.atan(x)
    # RMS of atan(z) and atan(z)^2 for z ~ N(0, 1), from Lucid's cppn.py: unit-scale outputs.
    return torch.cat([a / 0.67, a * a / 0.6], 1)


def _composite_unbiased(x: torch.Tensor) -> torch.Tensor:
    a = torch.atan(x)
    # Lucid's "unbiased" coefficients: std of atan(z), mean and std of atan(z)^2, z ~ N(0, 1).
    return torch.cat([a / 0.67, (a * a - 0.45) / 0.396], 1)


def _relu_normalized(x: torch.Tensor) -> torch.Tensor:
    # Mean and std of max(z, 0) for z ~ N(0, 1), from Lucid's cppn.py.
    return (torch.relu(x) - 0.40) / 0.58


#: name -> (function on (B, C, N), output channels per input channel)
ACTIVATIONS = {
    "composite": (_composite, 2),
    "composite_unbiased": (_composite_unbiased, 2),
    "relu": (_relu_normalized, 1),
}


def coordinates(h: int, w: int, device=None) -> torch.Tensor:
    """(2, h*w) pixel-centre coordinates (x, y), the longer side spanning [-sqrt(3), sqrt(3)].

    Pixel centres rather than edge-to-edge samples, so that an image drawn at 3x the size averages
    (3x3 blocks) to the image drawn at 1x: both sample the same continuous picture.
    """
    step = 2 * COORD_RANGE / max(h, w)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5 - h / 2) * step
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5 - w / 2) * step
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)])


class CPPN(ImageParam):
    """The module :func:`cppn` returns (see there)."""

    default_lr = CPPN_LR

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, layers: int = 8, width: int = 24,
                 activation: Union[str, Callable] = "composite", normalize: bool = True, alpha: bool = False):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.hidden, self.normalize = batch_size(batch), int(width), normalize
        self.channels = 4 if alpha else 3
        if layers < 1 or width < 1:
            raise ValueError(f"cppn needs layers >= 1 and width >= 1, got layers={layers}, width={width}")
        if callable(activation):
            self.activation, mult = activation, 1
        elif activation in ACTIVATIONS:
            self.activation, mult = ACTIVATIONS[activation]
        else:
            raise ValueError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)} "
                             "or a function (B, C, N) -> (B, C, N)")
        sizes = [2] + [self.hidden * mult] * layers
        shapes = [(self.hidden, n_in) for n_in in sizes[:-1]] + [(self.channels, sizes[-1])]
        # One network per image: (B, out, in) weights, applied with a batched matmul.
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(self.batch, o, i)) for o, i in shapes)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(self.batch, o)) for o, _ in shapes)
        self.register_buffer("coords", coordinates(self.height, self.width), persistent=False)
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        # Lucid: variance-scaling (fan-in) weights, N(0, 0.1) biases, and zero output weights.
        last = len(self.weights) - 1
        with torch.no_grad():
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                fan_in = weight.shape[-1]
                weight.copy_(rng.normal(weight.shape[1:]) * (0.0 if i == last else math.sqrt(1.0 / fan_in)))
                bias.copy_(rng.normal(bias.shape[1:]) * 0.1)

    def _size(self, size) -> Tuple[int, int]:
        if size is None:
            return self.height, self.width
        if isinstance(size, int):
            s = size / max(self.height, self.width)  # the longer side becomes `size`, aspect kept
            return max(1, round(self.height * s)), max(1, round(self.width * s))
        h, w = size
        return size_hw(w, h)

    def forward(self, size: Union[None, int, Tuple[int, int]] = None) -> torch.Tensor:
        """The images (B, 3|4, H, W) in [0, 1]: at the param's size, or at ``size`` (an int for the
        longer side, aspect kept, or ``(h, w)``). Draw large sizes under ``torch.no_grad()``."""
        h, w = self._size(size)
        coords = self.coords if (h, w) == self.size else coordinates(h, w, self.coords.device)
        x = coords.expand(self.batch, -1, -1)  # (B, 2, N)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias.unsqueeze(-1), weight, x)  # (B, out, N)
            if i == last:
                break
            if self.normalize:  # instance norm: per image and channel, over positions
                var, mean = torch.var_mean(x, dim=-1, keepdim=True, unbiased=False)
                x = (x - mean) * torch.rsqrt(var + NORM_EPS)
            x = self.activation(x)
        return torch.sigmoid(x).view(self.batch, self.channels, h, w)

    def extra_repr(self):
        return f"{super().extra_repr()}, layers={len(self.weights) - 1}, width={self.hidden}"


def cppn(w: int, h: Optional[int] = None, batch: int = 1, layers: int = 8, width: int = 24,
         activation: Union[str, Callable] = "composite", normalize: bool = True, alpha: bool = False) -> CPPN:
    """CPPN parameterization: ``batch`` independent networks (x, y) -> RGB, drawn at ``w`` x ``h``.

    ``layers`` hidden 1x1 layers of ``width`` units, each with instance normalization (unless
    ``normalize=False``) and ``activation``: "composite" (Lucid's [atan/0.67, atan^2/0.6], which
    doubles the width), "composite_unbiased", "relu" (normalized ReLU) or a function. A sigmoid
    output layer gives RGB (RGBA with ``alpha=True``). Optimize it with a small learning rate:
    ``param.default_lr`` is 0.005 (Lucid's Adam rate for CPPNs), which ``render`` uses unless
    ``lr`` is given. After optimizing, ``param(size=1024)`` draws the same picture at any size.

    >>> p = featvis.param.cppn(128)
    >>> result = featvis.render(model, "mixed4a:476", param=p, steps=1024, seed=0)
    >>> with torch.no_grad():
    ...     big = p(size=1024)            # (1, 3, 1024, 1024)
    """
    return CPPN(w, h, batch, layers, width, activation, normalize, alpha)
