"""Presets: a whole recipe (parameterization, size, transforms, learning rate and its schedule) by name.

``render(model, objective, preset="maco")`` (or ``featvis.presets.resolve``) fills in what the
caller left out; anything given explicitly wins. The recipes were chosen with
``benchmarks/preset_sweep.py`` and ``benchmarks/quality_imagenet.py`` (class visualizations of the
fixed ImageNet classes, rendered on ResNet-50 and on MobileNetV2 of ../shared/models, each read by
the networks other than itself, SqueezeNet always), by their WORSE model, not by looking at
hand-picked classes:

- ``lucid``: Lucid's recipe (Fourier 1/f image, decorrelated colour, standard transforms, Adam
  0.05, 128 px) - the one to use on InceptionV1, where it was tuned.
- ``fourier-crops``: the Fourier image with a steeper 1/f^1.5 scaling at 224 px through random
  crops (30-100% of the side), flips, a small rotation and pixel noise, Adam 0.05 with a warm-up
  and a cosine decay - the best on modern networks. Chosen on ResNet-50 and MobileNetV2 (8
  classes, 128 steps, 128 px screen; ``benchmarks/results/preset_sweep.md``): of one change at a
  time from the earlier 1/f^1.25 (which a MobileNetV2-only sweep had chosen: ResNet-50's pictures
  read at 0.41, MobileNetV2's at 0.60), decay 1.5 lifted the worse model most (ResNet-50 0.62,
  MobileNetV2 0.64), ahead of lr 0.1 (0.55) and a wider transform ensemble (0.53); lr 0.1 with
  decay 1.5 read a little better (0.64) but pinned 15% of the pixels (the photos: 2-4%). On the 20
  classes at 256 steps, 128 px: ResNet-50's pictures read at 0.68, MobileNetV2's at 0.73 (the
  photos: 0.74, 0.76), slopes -2.24 / -2.35, 3% of pixels pinned (README, "On two networks").
  At 512 steps that recipe pinned 5-6% of the values (photos: 2.6%); a third round (8 classes, 512
  steps, 160 px) chose AdamW's weight decay 0.03 by the worse model (ResNet-50 0.92, MobileNetV2
  0.93; before 0.93 / 0.91), which pins a third as many (revision 3).
- ``maco``: MACO (:func:`featvis.param.maco`, phase only under a fixed natural spectrum) with the
  transforms and schedule of ``fourier-crops``: a natural spectrum by construction, but a busy,
  full-contrast background; show it with its transparency map (not re-swept on ResNet-50).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

# No torch at import: the CLI reads the preset names (``featvis render --preset``) from here.


def constant(t: float) -> float:
    """The learning-rate factor at fraction ``t`` of the run: 1 throughout."""
    return 1.0


def warmup_cosine(t: float, warmup: float = 0.05, floor: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then a cosine decay to ``floor``."""
    if t < warmup:
        return (t + 1e-3) / warmup
    u = (t - warmup) / max(1 - warmup, 1e-9)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(u, 1.0)))


@dataclass(frozen=True)
class Preset:
    """A named recipe: ``param(size, batch)`` makes the image, ``transforms()`` the augmentations,
    ``lr`` and ``schedule(t)`` (t = step / steps) the learning rate, ``size`` and ``steps`` the
    defaults."""

    name: str
    description: str
    param: Callable[[int, int], "ImageParam"]
    transforms: Callable[[], Callable]
    lr: float
    size: int
    steps: int = 512
    schedule: Callable[[float], float] = field(default=constant)
    param_name: str = "fourier"  # what ``param`` makes, as a render folder's settings record it
    weight_decay: float = 0.0  # AdamW's decoupled decay when > 0 (pulls back what no gradient holds)
    #: Bumped whenever the recipe's pixels change; a render folder records it (from 2 on: folders of
    #: revision 1 predate the record), so that it never resumes under another revision.
    revision: int = 1

    def recorded_revision(self) -> Optional[int]:
        """What a render folder's settings record as ``preset_revision``: None for revision 1 (as
        folders written before revisions were recorded), else the revision."""
        return self.revision if self.revision > 1 else None

    def optimizer(self, steps: int, lr: Optional[float] = None) -> Callable:
        """A factory ``params -> Adam`` (AdamW with ``weight_decay``) whose learning rate follows
        ``schedule`` over ``steps``."""
        base = self.lr if lr is None else float(lr)
        schedule, decay = self.schedule, self.weight_decay

        def make(params):
            import torch
            if decay:
                opt = torch.optim.AdamW(params, lr=base * schedule(0.0), weight_decay=decay)
            else:
                opt = torch.optim.Adam(params, lr=base * schedule(0.0))
            count = [0]

            def before_step(optimizer, args, kwargs):
                factor = schedule(min(count[0] / max(steps, 1), 1.0))
                for group in optimizer.param_groups:
                    group["lr"] = base * factor
                count[0] += 1

            opt.register_step_pre_hook(before_step)
            return opt

        return make


def _fourier(**options) -> Callable:
    def make(size, batch, channels=3):
        from .param import fourier
        return fourier(size, batch=batch, channels=channels, **options)
    return make


def _maco(**options) -> Callable:
    def make(size, batch, channels=3):
        if channels != 3:  # its fixed spectrum is one of RGB photos
            from .errors import UsageError
            raise UsageError(f"the maco preset makes RGB images, but the model takes {channels} channel(s); use "
                             "--preset fourier-crops (its Fourier image follows the model) or --preset none")
        from .param import maco
        return maco(size, batch=batch, **options)
    return make


def _standard():
    from .transforms import standard
    return standard()


def _crops(smallest: float) -> Callable:
    """Crops of ``smallest``-100% of the side resized to the canvas, a mirror, a small rotation and
    pixel noise; MACO optimizes through random crops (Fel et al. 2023, sec. 3)."""
    def make():
        from .transforms import compose, pad, random_rotate
        from .transforms.crops import noise, random_crop, random_flip
        return compose(pad(8, mode="reflect"), random_crop((smallest, 1.0)), random_flip(),
                       random_rotate([-5, -2, 0, 2, 5]), noise(0.02))
    return make


PRESETS: Dict[str, Preset] = {p.name: p for p in [
    Preset("lucid", "Lucid's recipe: Fourier 1/f image, decorrelated, standard transforms, Adam 0.05, 128 px",
           _fourier(), _standard, 0.05, 128),
    Preset("maco", "MACO phase-only image under a 1/f spectrum, 224 px, random crops/flips/noise, warm-up + cosine lr",
           _maco(), _crops(0.3), 1.0, 224, schedule=warmup_cosine, param_name="maco"),
    # decay 1.5 and crops down to 30% of the side: chosen by benchmarks/preset_sweep.py on ResNet-50 and
    # MobileNetV2, by the worse of the two (see the module docstring)
    # revision 1: decay 1.25 (a MobileNetV2-only sweep); 2: decay 1.5; 3: + weight decay 0.03, against the
    # pixels that 512 steps pinned at 0/1 (benchmarks/results/preset_sweep.md, third round)
    Preset("fourier-crops", "Fourier image (1/f^1.5), crops of 30-100%, flips, rotation, noise, warm-up + cosine lr, "
           "AdamW (decay 0.03), 224 px",
           _fourier(decay_power=1.5), _crops(0.3), 0.05, 224, schedule=warmup_cosine, weight_decay=0.03, revision=3),
]}


#: ``--preset auto``: the channel recipe per model, chosen by the machine interpretability score
#: (``benchmarks/interpretability.py``; README "Pictures that explain units"). InceptionV1 keeps
#: Lucid's recipe, tuned on it; every other model gets :data:`AUTO_DEFAULT`.
AUTO = {"inceptionv1": "lucid"}
AUTO_DEFAULT = "fourier-crops"


def auto(model: str) -> str:
    """The preset ``--preset auto`` means for the model called ``model`` (see :data:`AUTO`)."""
    return AUTO.get(model, AUTO_DEFAULT)


def get(name: str) -> Preset:
    """The preset called ``name`` (see :data:`PRESETS`)."""
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        from .errors import UsageError
        hint = " ('auto' is resolved per model: featvis.presets.auto(model_name))" if name == "auto" else ""
        raise UsageError(f"no preset {name!r}; choose one of {', '.join(PRESETS)}{hint} (see featvis.presets)")
    return PRESETS[name]


def resolve(preset, batch: int = 1, param=None, transforms=None, steps: Optional[int] = None,
            lr: Optional[float] = None, optimizer=None, size: Optional[int] = None, channels: int = 3) -> dict:
    """``render`` keyword arguments from ``preset``, with the given ones kept: ``param`` (the
    preset's, ``size`` px, ``batch`` images of ``channels`` colour channels: the model's input),
    ``transforms``, ``steps``, and an ``optimizer`` factory with the preset's schedule (unless an
    ``optimizer`` is given).

    >>> featvis.render(model, obj, **featvis.presets.resolve("maco", batch=obj.batch_size or 1))
    """
    p = get(preset)
    steps = p.steps if steps is None else int(steps)
    return dict(
        param=param if param is not None else (p.param(size or p.size, batch) if channels == 3
                                               else p.param(size or p.size, batch, channels=channels)),
        transforms=transforms if transforms is not None else p.transforms(),
        steps=steps,
        lr=lr,
        optimizer=optimizer if optimizer is not None else p.optimizer(steps, lr),
    )


__all__ = ["Preset", "PRESETS", "AUTO", "AUTO_DEFAULT", "auto", "get", "resolve", "constant", "warmup_cosine"]
