"""Test-only model for the interpretability score, loaded with ``FEATVIS_PLUGINS=tests.score_plugin``.

``planted``: units whose response is known. ``colour`` is a 1x1 convolution of the RGB input:
channel 0 answers red (R - (G + B) / 2), channel 1 green, channel 2 blue; then a ReLU and a pooled
linear read-out (so that it is a whole classifier, as featvis expects). Its weights are fixed.
"""
from collections import OrderedDict

import torch
from torch import nn

from featvis.models import register, wrap

#: channel -> the colour it answers
COLOURS = {0: "red", 1: "green", 2: "blue"}


def planted_net() -> nn.Sequential:
    net = nn.Sequential(OrderedDict([
        ("colour", nn.Conv2d(3, 3, 1)), ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(3, 2)),
    ]))
    with torch.no_grad():
        net.colour.weight.copy_((torch.eye(3) * 1.5 - 0.5).view(3, 3, 1, 1))  # c - mean of the other two
        net.colour.bias.zero_()
        net.fc.weight.fill_(1.0)
        net.fc.bias.zero_()
    return net


@register("planted", "a colour-answering 1x1 conv (channel 0 red, 1 green, 2 blue); tests of featvis score only")
def build(weights="default"):
    return wrap(planted_net(), normalize=None, name="planted")
