"""``toy``: a tiny random-weight convnet, for smoke tests, examples and trying the CLI in seconds.

It has no pretrained weights and recognizes nothing; its images are not meaningful features. It
exists so that ``featvis render toy conv2 --steps 8 --size 32`` runs anywhere, with no download.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from . import weights as W
from .wrap import FeatvisModel

#: The seed of the fixed random initialization that ``weights="default"`` means for ``toy``.
DEFAULT_SEED = 0


def toy_net() -> nn.Sequential:
    """conv1 (8) -> conv2 (16, /2) -> conv3 (32, /2) -> global pool -> fc (10 logits)."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(16, 32, 3, stride=2, padding=1)), ("relu3", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("fc", nn.Linear(32, 10)),
    ]))


def build(weights="default") -> FeatvisModel:
    """``weights``: ``"default"`` (PyTorch's init drawn from seed ``DEFAULT_SEED``, the same on every
    machine), ``None`` (PyTorch's init from the global RNG), or a state dict: a file (``.pth`` or
    ``.safetensors``), ``hf-hub:ORG/REPO``, or a dict."""
    if weights == "default":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DEFAULT_SEED)
            net = toy_net()
    else:
        net = toy_net()
        state_dict, _ = W.resolve(weights, "toy", None)  # a .pth/.safetensors path, hf-hub:, a dict
        if state_dict is not None:
            net.load_state_dict(state_dict)
    # Mean/std 0.5: maps [0, 1] images to [-1, 1], a symmetric input for random filters.
    return FeatvisModel(net, normalize=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), name="toy")
