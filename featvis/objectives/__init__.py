"""Objectives: per-image scores to maximize, composable with ``+ - * /``.

>>> from featvis.objectives import channel, total_variation
>>> obj = channel("mixed4a", 476) - 0.05 * total_variation()
"""
from .base import INPUT, Objective, as_objective, narrow, objective
from .batchwise import (activation_weighted, alignment, channel_interpolate, class_logit, direction_cossim,
                    neuron_interaction)
from .penalties import alpha_mean, blur_input_each_step, l1, l2, total_variation
from .channel import channel, deepdream, direction, direction_neuron, diversity, neuron

__all__ = [
    "Objective", "objective", "as_objective", "narrow", "INPUT",
    "neuron", "channel", "direction", "direction_neuron", "deepdream", "diversity",
    "channel_interpolate", "alignment", "class_logit", "neuron_interaction", "direction_cossim",
    "activation_weighted",
    "total_variation", "l1", "l2", "blur_input_each_step", "alpha_mean",
]
