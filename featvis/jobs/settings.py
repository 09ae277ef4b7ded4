"""What decides a render job's pixels: its :class:`Settings`, and for each batch its param, transforms,
learning-rate schedule (:func:`recipe`) and objective (:func:`batch_objective`).

The job (:mod:`featvis.jobs.job`) checks the user's options into a ``Settings``, records it in the
render folder, and asks this module for each batch's :func:`featvis.render` arguments.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .. import param as params
from ..errors import UsageError
from ..objectives import Objective, channel, diversity, neuron, scaled
from ..render import CPU_BATCH
from ..render import auto_batch as render_auto_batch

#: Weight of the diversity term, relative to the objective (see :func:`featvis.objectives.scaled`):
#: each channel's K images maximize ``channel + w * |channel| * diversity`` with ``|channel|`` the
#: group's mean value at that step, held constant. Lucid's notebook used a fixed
#: ``channel - 1e2 * diversity``, tuned to InceptionV1's activation sizes; a fixed 100 washes the
#: images out on a model whose units reach 0.3 (the hand-coded one). Relative, one weight fits all.
DIVERSITY_WEIGHT = 0.5
#: ``batch="auto"`` on the CPU: ``featvis.render.CPU_BATCH`` (a CPU gains little from larger
#: batches, and a small batch loses little to a kill and shows progress, and a sheet, early).
CPU_AUTO_BATCH = CPU_BATCH
PARAMS = ("fourier", "pixel", "cppn")
FORMATS = ("png",)
#: Largest --size: a 4096 px Fourier image batch already needs GBs; beyond it is a typo.
MAX_SIZE = 4096
#: Seeds are 63-bit (featvis.rng.derive_seed) and non-negative.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Settings:
    """Everything that decides the pixels. One output folder holds renders of one Settings."""

    neurons: bool = False
    size: int = 128
    steps: int = 512
    lr: float = 0.05
    param: str = "fourier"
    diversity: int = 1
    diversity_weight: float = DIVERSITY_WEIGHT
    seed: int = 0
    format: str = "png"
    device: str = "cpu"  # the device type that ran ("cpu", "cuda"): the two round differently
    deterministic: bool = True  # deterministic kernels (on CUDA: the same bytes from a resumed run)
    preset: Optional[str] = None  # a featvis.presets recipe (its param, transforms, lr schedule), or None
    # CPU threads that ran (featvis.threads): on the CPU oneDNN sums some convolutions differently for
    # different counts, so the count changes pixels; None on CUDA (it changes none there) and in
    # folders written before it was recorded
    threads: Optional[int] = None
    # the preset's revision (featvis.presets.Preset.revision) when above 1: a recipe that changed
    # since a folder was rendered changes its pixels, so the folder does not resume under it
    preset_revision: Optional[int] = None


def batch_objective(layer: str, chans: Sequence[int], neurons: bool = False, k: int = 1,
                    weight: float = DIVERSITY_WEIGHT, negative: bool = False) -> Objective:
    """One objective for a batch: image ``i*k + j`` maximizes channel ``chans[i]`` (its centre
    neuron with ``neurons``; ``negative``: minimizes it, maximizing its negation); with ``k > 1``
    each channel's ``k`` images also push apart with ``weight * |objective| * diversity(layer)``
    over their own group (see :func:`featvis.objectives.scaled`; ``Result.terms`` then holds the
    two parts)."""
    units = [c for c in chans for _ in range(k)]
    obj = (neuron if neurons else channel)(layer, units)
    if negative:
        obj = -obj
    if k > 1:
        div = sum(diversity(layer, batch=list(range(i * k, i * k + k))) for i in range(len(chans)))
        obj = scaled(obj, div, weight, group=k, label="diversity")
    return obj


def objective_template(layer: str, neurons: bool, k: int, weight: float, negative: bool = False) -> str:
    """How the manifest describes each image's objective, with ``c`` the channel (``negative``: of
    the minimizing images, whose 'value' is the unit's, not its negation)."""
    base = f"{'-' if negative else ''}{'neuron' if neurons else 'channel'}({layer}:c)"
    return base if k == 1 else (f"{base} + {weight:g} * |{base}| * diversity({layer}) over the channel's {k} images "
                                "(|...| the group's mean objective, held constant); 'value' is the first term, "
                                "'diversity' the second")


def make_param(name: str, size: int, batch: int, channels: int = 3):
    """The image param by name: ``fourier``, ``pixel`` or ``cppn``, ``batch`` images of ``size``²
    with ``channels`` colour channels (the model's input: 1 for a grayscale model)."""
    factory = getattr(params, name, None) if name in PARAMS else None
    if factory is None:
        have = [p for p in PARAMS if hasattr(params, p)]
        raise UsageError(f"--param {name} is not available in this featvis; use one of: {', '.join(have)}")
    if channels == 3:
        return factory(size, batch=batch)
    if name == "cppn":
        raise UsageError(f"--param cppn makes RGB images, but the model takes {channels} channel(s); use --param fourier "
                         "or pixel")
    return factory(size, batch=batch, channels=channels)


def recipe(settings: Settings, batch: int, channels: int = 3) -> dict:
    """:func:`featvis.render` keyword arguments for ``batch`` images of ``settings``: ``param``,
    ``steps``, ``lr``, and with a preset its ``transforms`` and ``optimizer`` (lr schedule) too.
    ``channels``: the model's input channels (the Fourier presets follow them; maco is RGB only)."""
    if settings.preset:
        from ..presets import resolve
        return resolve(settings.preset, batch=batch, steps=settings.steps, lr=settings.lr, size=settings.size,
                       channels=channels)
    return dict(param=make_param(settings.param, settings.size, batch, channels), steps=settings.steps, lr=settings.lr)


def auto_batch(model, layer: str, settings: Settings, device: torch.device, channels: Optional[int] = None) -> int:
    """Channels per batch for ``batch="auto"``: :data:`CPU_AUTO_BATCH` on the CPU; on CUDA as many
    as :func:`featvis.render.auto_batch` finds fit in free memory (two 1-step probe renders with
    this job's param), divided among ``--diversity``: all ``channels`` in one batch when they fit
    (a GPU keeps gaining from larger batches until its memory is full)."""
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    cap = None if channels is None else channels * settings.diversity
    images = render_auto_batch(model, layer, settings.size, device, max_batch=cap,
                               param=lambda n: recipe(settings, n, getattr(model, "in_channels", 3))["param"],
                               objective=lambda n: batch_objective(layer, [0] * n))
    torch.cuda.empty_cache()
    return max(1, images // settings.diversity)


def device_label(device: torch.device) -> str:
    """The device as the manifest records it: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
