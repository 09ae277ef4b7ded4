"""torchvision's GoogLeNet, ResNets and ConvNeXts as featvis models.

Layer names are torchvision's module paths (``layer3.1``, ``features.5.2``, ``inception4a``);
``featvis.layers(model)`` flags the block outputs. The names and descriptions are declared in
:mod:`featvis.models.registry` (``TORCHVISION``), so that listing them does not import torchvision. ``weights="default"`` is torchvision's
``DEFAULT`` weights enum member, fetched by torchvision's own machinery into the torch hub cache;
the name of another member (``weights="IMAGENET1K_V1"``) picks that one.
"""
from __future__ import annotations

import functools

import torchvision
from torchvision.models import get_model_builder, get_model_weights

from . import weights as W
from .wrap import IMAGENET_MEAN, IMAGENET_STD, FeatvisModel


def _member(name: str, weights):
    """The weights enum member that ``weights`` names ("default" or a member name), else None."""
    enum = get_model_weights(name)
    if weights == "default":
        return enum.DEFAULT
    if isinstance(weights, str) and weights in enum.__members__:
        return enum[weights]
    return None


def _googlenet(**kwargs):
    # transform_input=True in every case, as torchvision sets it for its pretrained weights: the net
    # then sees (x - 0.5) / 0.5, so random, pretrained and local weights share one input convention.
    return torchvision.models.googlenet(weights=None, transform_input=True, **kwargs)


def build_torchvision(name: str, weights="default") -> FeatvisModel:
    """torchvision's ``name`` with ``weights`` ("default", an enum member name, a path, a state dict
    or None), wrapped with ImageNet normalization."""
    member = _member(name, weights)
    if member is not None:
        state_dict, source = W.fetch_torchvision(member, name)
    else:
        state_dict, source = W.resolve(weights, name, None)
    if name == "googlenet":
        # torchvision's pretrained GoogLeNet carries auxiliary heads (untrained, used only in
        # training); build them if the state dict has them, then drop them so forward returns logits.
        aux = state_dict is not None and any(k.startswith("aux1.") for k in state_dict)
        net = W.build(functools.partial(_googlenet, aux_logits=aux, init_weights=state_dict is None),
                      state_dict, source, name)
        net.aux_logits, net.aux1, net.aux2 = False, None, None
    else:
        net = W.build(functools.partial(get_model_builder(name), weights=None), state_dict, source, name)
    return FeatvisModel(net, normalize=(IMAGENET_MEAN, IMAGENET_STD), name=name)

