"""Objectives: per-image scores to maximize, composable with ``+ - * /``.

Grouped by what they read: :mod:`.channels` (units of one layer: neuron, channel, direction,
class logit; and ``as_objective`` for ``"layer:channel@x,y"``), :mod:`.batchwise` (the whole batch:
diversity, interpolation, alignment), :mod:`.penalties` (the image: total variation, L1, L2, blur,
alpha); :mod:`.base` holds ``Objective`` and its algebra.

>>> from featvis.objectives import channel, total_variation
>>> obj = channel("mixed4a", 476) - 0.05 * total_variation()
"""
from .base import INPUT, Objective, narrow, objective, scaled
from .batchwise import alignment, channel_interpolate, diversity
from .channels import (activation_weighted, as_objective, channel, class_logit, deepdream, direction,
                      direction_cossim, direction_neuron, neuron, neuron_interaction)
from .penalties import alpha_mean, blur_input_each_step, l1, l2, total_variation

__all__ = [
    "Objective", "objective", "as_objective", "narrow", "scaled", "INPUT",
    "neuron", "channel", "direction", "direction_neuron", "deepdream", "diversity",
    "channel_interpolate", "alignment", "class_logit", "neuron_interaction", "direction_cossim",
    "activation_weighted",
    "total_variation", "l1", "l2", "blur_input_each_step", "alpha_mean",
]
