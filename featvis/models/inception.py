"""Lucid's InceptionV1: GoogLeNet as in TensorFlow's ``inception5h`` graph (1008 classes).

The model of the circuits work. Written from the architecture, with the graph's quirks kept:
TF "SAME" padding (asymmetric for the strided layers), local response normalization after the
first pool and after ``conv2d2``, and input pixels in [-117, 138] (``255 * x - 117``). Module names
equal the keys of the public PyTorch state dict (``conv2d0_pre_relu_conv.weight``,
``mixed3a_1x1_pre_relu_conv.weight``, ..., ``softmax2_pre_activation_matmul.weight``), so it loads
strictly. Hookable names follow Lucid: ``conv2d0``..``conv2d2`` and ``mixed3a``..``mixed5b`` after
ReLU, ``mixed4a_pre_relu`` etc. before it, ``conv2d0_pre_relu`` etc. for each conv's output, and the
logits ``softmax2_pre_activation_matmul``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import weights as W
from .redirect import ReLU
from .wrap import FeatvisModel

#: Inception blocks: (name, input channels, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool
#: reduce). Channel counts of the inception5h graph's weights (the same as Lucent's InceptionV1).
MIXED = (
    ("mixed3a", 192, 64, 96, 128, 16, 32, 32),
    ("mixed3b", 256, 128, 128, 192, 32, 96, 64),
    ("mixed4a", 480, 192, 96, 204, 16, 48, 64),
    ("mixed4b", 508, 160, 112, 224, 24, 64, 64),
    ("mixed4c", 512, 128, 128, 256, 24, 64, 64),
    ("mixed4d", 512, 112, 144, 288, 32, 64, 64),
    ("mixed4e", 528, 256, 160, 320, 32, 128, 128),
    ("mixed5a", 832, 256, 160, 320, 48, 128, 128),
    ("mixed5b", 832, 384, 192, 384, 48, 128, 128),
)
#: Stride-2 max pools between stages, after the named block (graph names ``maxpool4``, ``maxpool10``).
POOL_AFTER = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}

#: LRN of the graph as PyTorch's ``local_response_norm`` arguments (size 9, i.e. depth radius 4;
#: beta 0.5; k 1; alpha the float32 1e-4). Source: Lucent 0.1.8's InceptionV1, ProGamerGov's conversion.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 9, 9.99999974738e-05, 0.5, 1.0

#: Lucid's InceptionV1 reads pixels in [0, 255] shifted by -117 (Lucid modelzoo: image_value_range
#: = (-117, 255 - 117)).
PIXEL_SCALE, PIXEL_SHIFT = 255.0, 117.0


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis: the output has ``ceil(size / stride)``
    positions and an odd total puts the extra pixel after (bottom / right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel: Tuple[int, int], stride: Tuple[int, int]) -> Tuple[int, int, int, int]:
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1])
    return left, right, top, bottom  # F.pad's order


class SameConv2d(nn.Conv2d):
    """A strided convolution with TF "SAME" zero padding, worked out for each input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, _pads(x, self.kernel_size, self.stride)))


class SameMaxPool2d(nn.Module):
    """Max pooling with TF "SAME" padding (padded positions never win)."""

    def __init__(self, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = _pads(x, (self.kernel,) * 2, (self.stride,) * 2)
        if left == right and top == bottom:  # max_pool2d's own padding counts as -inf
            return F.max_pool2d(x, self.kernel, self.stride, padding=(top, left))
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding=SAME"


class LRN(nn.Module):
    """Local response normalization across channels, with the graph's constants."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.local_response_norm's arithmetic, with its window sum over channels done by a 2-d
        # average pool on (B, 1, C, H*W) instead of its 3-d one: avg_pool3d has no deterministic
        # CUDA backward (torch.use_deterministic_algorithms raises), avg_pool2d has.
        B, C, H, W = x.shape
        div = (x * x).reshape(B, 1, C, H * W)
        div = F.pad(div, (0, 0, LRN_SIZE // 2, (LRN_SIZE - 1) // 2))
        div = F.avg_pool2d(div, (LRN_SIZE, 1), stride=1).reshape(B, C, H, W)
        return x / div.mul(LRN_ALPHA).add(LRN_K).pow(LRN_BETA)


class Concat(nn.Module):
    """Channel concatenation of an inception block's branches (hookable: the block before ReLU)."""

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:
        return torch.cat(branches, 1)


class GlobalAvgPool(nn.Module):
    """Mean over positions, (B, C, H, W) -> (B, C). The graph's 7x7 average pool at 224 x 224
    (where mixed5b is 7 x 7); other sizes pool the whole map instead of failing or tiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class InceptionV1(nn.Module):
    """The network itself, taking pixels in [-117, 138] as the TF graph does; returns the 1008 logits.

    Modules are registered in forward order, named as the graph (and the state dict) names them.
    """

    def __init__(self, num_classes: int = 1008):
        super().__init__()
        self.conv2d0_pre_relu_conv = SameConv2d(3, 64, 7, stride=2)
        self.conv2d0 = ReLU()
        self.maxpool0 = SameMaxPool2d(3, 2)
        self.localresponsenorm0 = LRN()
        self.conv2d1_pre_relu_conv = nn.Conv2d(64, 64, 1)
        self.conv2d1 = ReLU()
        self.conv2d2_pre_relu_conv = nn.Conv2d(64, 192, 3, padding=1)  # stride 1, odd kernel: SAME is symmetric
        self.conv2d2 = ReLU()
        self.localresponsenorm1 = LRN()
        self.maxpool1 = SameMaxPool2d(3, 2)
        for spec in MIXED:
            self._add_mixed(*spec)
            if spec[0] in POOL_AFTER:
                self.add_module(POOL_AFTER[spec[0]], SameMaxPool2d(3, 2))
        self.avgpool0 = GlobalAvgPool()
        self.softmax2_pre_activation_matmul = nn.Linear(1024, num_classes)

    def _add_mixed(self, name, cin, c1, c3r, c3, c5r, c5, cp):
        add = self.add_module
        add(f"{name}_1x1_pre_relu_conv", nn.Conv2d(cin, c1, 1))
        add(f"{name}_3x3_bottleneck_pre_relu_conv", nn.Conv2d(cin, c3r, 1))
        add(f"{name}_3x3_bottleneck", ReLU())
        add(f"{name}_3x3_pre_relu_conv", nn.Conv2d(c3r, c3, 3, padding=1))
        add(f"{name}_5x5_bottleneck_pre_relu_conv", nn.Conv2d(cin, c5r, 1))
        add(f"{name}_5x5_bottleneck", ReLU())
        add(f"{name}_5x5_pre_relu_conv", nn.Conv2d(c5r, c5, 5, padding=2))
        add(f"{name}_pool", SameMaxPool2d(3, 1))
        add(f"{name}_pool_reduce_pre_relu_conv", nn.Conv2d(cin, cp, 1))
        add(f"{name}_pre_relu", Concat())
        # One ReLU on the concatenation equals the graph's four branch ReLUs; ``splits`` keeps
        # their per-branch behaviour when the gradient is redirected.
        add(name, ReLU(splits=(c1, c3, c5, cp)))

    def _mixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        m = lambda part: getattr(self, f"{name}_{part}")  # noqa: E731
        b1 = m("1x1_pre_relu_conv")(x)
        b3 = m("3x3_pre_relu_conv")(m("3x3_bottleneck")(m("3x3_bottleneck_pre_relu_conv")(x)))
        b5 = m("5x5_pre_relu_conv")(m("5x5_bottleneck")(m("5x5_bottleneck_pre_relu_conv")(x)))
        bp = m("pool_reduce_pre_relu_conv")(m("pool")(x))
        return getattr(self, name)(m("pre_relu")(b1, b3, b5, bp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool0(self.conv2d0(self.conv2d0_pre_relu_conv(x)))
        x = self.conv2d1(self.conv2d1_pre_relu_conv(self.localresponsenorm0(x)))
        x = self.maxpool1(self.localresponsenorm1(self.conv2d2(self.conv2d2_pre_relu_conv(x))))
        for spec in MIXED:
            x = self._mixed(spec[0], x)
            if spec[0] in POOL_AFTER:
                x = getattr(self, POOL_AFTER[spec[0]])(x)
        return self.softmax2_pre_activation_matmul(self.avgpool0(x))  # (B, 1008) logits


class InceptionV1Model(FeatvisModel):
    """:class:`InceptionV1` as a featvis model: [0, 1] images in, ``255 * x - 117`` fed to the net.

    ``redirect_steps``: how many first steps of :func:`featvis.render` use redirected ReLU
    gradients (Lucid's default, 16); set it to 0 to turn redirection off.
    """

    redirect_steps = 16

    def __init__(self, net: Optional[InceptionV1] = None):
        super().__init__(InceptionV1() if net is None else net, normalize=None, name="inceptionv1")

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images * PIXEL_SCALE - PIXEL_SHIFT

    def named_layers(self) -> Dict[str, nn.Module]:
        """The net's modules, plus Lucid's ``<conv>_pre_relu`` for each ``<conv>_pre_relu_conv``."""
        out = {}
        for name, module in super().named_layers().items():
            out[name] = module
            if name.endswith("_pre_relu_conv"):
                out.setdefault(name[: -len("_conv")], module)
        return out

    def block_layers(self) -> List[str]:
        return [spec[0] for spec in MIXED]


def _fetch_default():
    path = W.fetch(W.INCEPTION5H, "inceptionv1")
    return W.read_state_dict(path, "inceptionv1", cached=True), W.INCEPTION5H.url


def build_inceptionv1(weights="default") -> InceptionV1Model:
    """Lucid's InceptionV1 with ``weights`` ("default", a path, a state dict, or None)."""
    state_dict, source = W.resolve(weights, "inceptionv1", _fetch_default)
    return InceptionV1Model(W.build(InceptionV1, state_dict, source, "inceptionv1"))
