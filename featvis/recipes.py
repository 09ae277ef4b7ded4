"""Recipes: the classic figures as one call each, built from render, params and objectives.

Each returns a :class:`~featvis.render.Result`; extra keyword arguments (``steps``, ``lr``,
``device``, ``progress``, ``precision``, ``snapshots``, ``optimizer``) go to :func:`featvis.render`.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .errors import UsageError
from .objectives import Objective, alignment, alpha_mean, as_objective, channel_interpolate, l2, scaled
from .objectives.channels import dot_cossim
from .param import ImageParam, fit_images, fourier, image_tensor
from .render import Result, render
from .rng import RandomSource, image_seeds
from .transforms import compose, jitter, pad, random_rotate, random_scale
from .units import Unit

#: Lucid's caricature recipe (lucid/recipes/caricature.py): gentler than the standard transforms.
CARICATURE_SCALES = [0.9, 0.95, 1.05, 1.1] + [1.0] * 4
CARICATURE_ANGLES = list(range(-5, 5)) + [0] * 5


def caricature_transforms():
    """Lucid's caricature transforms: pad 8 (gray), jitter 8, scale 0.9..1.1, rotate -5..4 degrees, jitter 2.

    >>> result = featvis.render(model, "layer3:7", transforms=caricature_transforms())
    """
    return compose(pad(8), jitter(8), random_scale(CARICATURE_SCALES), random_rotate(CARICATURE_ANGLES), jitter(2))


class _WithTarget(ImageParam):
    """The param's N images followed by N fixed target images: one batch, so that the targets go
    through the model (and, with the same seeds, the same random transforms) as the images."""

    def __init__(self, param: ImageParam, target: torch.Tensor):
        super().__init__()
        self.param = param
        self.register_buffer("target", target, persistent=False)  # (N, 3, H, W)
        self.batch, (self.height, self.width) = 2 * param.batch, param.size
        self.default_lr = getattr(param, "default_lr", None)

    def reset(self, rng: RandomSource) -> None:
        self.param.reset(RandomSource(rng.seeds[:self.param.batch], rng.device))

    def forward(self) -> torch.Tensor:
        return torch.cat([self.param(), self.target])


def _match(layer: str, n: int, cossim_pow: float) -> Objective:
    """Images 0..n-1 against images n..2n-1 at ``layer``: the dot product of their activations (per
    position) times their cosine similarity (floored at 0.1) to the power ``cossim_pow``."""
    def fn(acts):
        t = acts[layer]
        a, ref = t[:n].flatten(1), t[n:].detach().flatten(1)  # (n, C*H*W)
        positions = a.shape[1] // t.shape[1]
        value = dot_cossim(a, ref, cossim_pow) / positions
        return torch.cat([value, value.new_zeros(n)])

    return Objective(fn, [layer], f"caricature({layer})")


def caricature(model, image, layer: str, steps: int = 512, cossim_pow: float = 1.0,
               param: Optional[ImageParam] = None, transforms=None, seed=None, **render_kwargs) -> Result:
    """Feature inversion / caricature (Lucid's ``caricature`` recipe): an image, grown from noise,
    whose activations at ``layer`` point the same way as those of ``image``, exaggerating what the
    layer sees in it.

    The objective is the dot product of the two activations (per position) times their cosine
    similarity, floored at 0.1, to the power ``cossim_pow``; a larger ``cossim_pow`` matches the
    pattern more faithfully, a smaller one exaggerates it (Lucid's recipe defaults to 0, the bare
    dot product, which can grow activations past the target's; featvis defaults to 1, which on
    small test models brings the activations closer to the target's). ``image`` (tensor, PIL image or array;
    several as (N, 3, H, W)) is resized to ``param``, which defaults to a Fourier image of the
    image's size. The image and its target pass through the same random transforms each step
    (Lucid's caricature transforms by default, :func:`caricature_transforms`).

    >>> photo = PIL.Image.open("dog.png").resize((224, 224))
    >>> result = featvis.recipes.caricature(model, photo, "mixed4b", seed=0)
    >>> result.save("dog_mixed4b.png")
    """
    target = image_tensor(image)[:, :3]
    n = len(target)
    if param is None:
        param = fourier(target.shape[-1], target.shape[-2], batch=n)
    if param.batch != n or getattr(param, "channels", 3) != 3:
        raise ValueError(f"caricature needs an RGB param with batch={n} (one image per target), "
                         f"got batch={param.batch} and {getattr(param, 'channels', 3)} channels")
    pair = _WithTarget(param, fit_images(target, param).contiguous())
    seeds = image_seeds(seed, n)
    result = render(model, _match(layer, n, cossim_pow), param=pair, steps=steps, seed=seeds + seeds,
                    transforms=caricature_transforms() if transforms is None else transforms, **render_kwargs)
    return Result(result.images[:n], result.values[:n], result.objective, result.seeds[:n], result.steps,
                  {k: v[:n] for k, v in result.snapshots.items()}, labels=[f"caricature of {layer}"] * n)


#: ``transparent()``'s default alpha weight, relative to the objective: a fully opaque image costs
#: this share of the objective's value (so opaque pixels must earn their keep, but the feature can
#: afford them). An absolute weight (Lucid's ``- 1.0 * alpha_mean``) depends on the model's
#: activation sizes: 1.0 against a unit that reaches 0.3 leaves an almost empty image.
ALPHA_WEIGHT = 0.25


def transparent(model, objective: Union[str, Objective], size: int = 128, alpha_weight: float = ALPHA_WEIGHT,
                param: Optional[ImageParam] = None, steps: int = 512, seed=None, **render_kwargs) -> Result:
    """A visualization with transparency (Distill's "Differentiable Image Parameterizations"): an
    RGBA image, composited over a fresh random background each step (so opaque pixels must work on
    any background), maximizing ``objective - alpha_weight * |objective| * alpha_mean()`` (see
    :func:`featvis.objectives.scaled`). Returns (B, 4, H, W) images; ``result.save("x.png")``
    writes RGBA PNGs; ``result.terms`` holds the objective and the alpha penalty apart.

    ``alpha_weight`` is relative to the objective: the share of its value that a fully opaque image
    costs (default :data:`ALPHA_WEIGHT`; larger: sparser images, 0: no pressure to clear).
    ``param`` defaults to ``param.fourier(size, alpha=True)``.

    >>> result = featvis.recipes.transparent(model, "mixed4a:476", alpha_weight=0.5, seed=0)
    >>> result.save("mixed4a_476_rgba.png")
    """
    objective = as_objective(objective)
    if param is None:
        param = fourier(size, batch=objective.batch_size or 1, alpha=True)
    if getattr(param, "channels", 3) != 4:
        raise ValueError("transparent() needs an RGBA param: make it with alpha=True, e.g. param.fourier(128, alpha=True)")
    if not alpha_weight >= 0:
        raise ValueError(f"alpha_weight={alpha_weight}: must be 0 or more (the share of the objective that opacity costs)")
    full = scaled(objective, alpha_mean(), -float(alpha_weight), label="alpha")
    return render(model, full, param=param, steps=steps, seed=seed, **render_kwargs)


def _unit(u) -> Tuple[str, int]:
    unit = Unit.parse(u)
    if unit.is_neuron:
        raise UsageError(f"unit {u!r}: interpolate() morphs whole channels; drop the '@x,y'")
    return unit.layer, unit.channel


def interpolate(model, unit1, unit2, frames: int = 5, size: int = 128, alignment_weight: float = 0.1,
                alignment_layer: Optional[str] = None, shared=True, steps: int = 512, seed=None,
                **render_kwargs) -> Result:
    """Frames that morph from one unit to another (Feature Visualization, Distill 2017):
    :func:`~featvis.objectives.channel_interpolate` over ``frames`` images that share
    low-resolution structure (``param.fourier(shared=...)``), plus ``alignment_weight`` times
    :func:`~featvis.objectives.alignment` at ``alignment_layer`` (``unit1``'s layer by default) so
    that neighbouring frames draw things in the same place.

    >>> result = featvis.recipes.interpolate(model, "mixed4a:476", "mixed4a:460", frames=6, seed=0)
    """
    (l1, n1), (l2_, n2) = _unit(unit1), _unit(unit2)
    if frames < 2:
        raise ValueError(f"interpolate needs frames >= 2, got {frames}")
    obj = channel_interpolate(l1, n1, l2_, n2)
    if alignment_weight:
        obj = obj + alignment_weight * alignment(alignment_layer or l1)
    param = fourier(size, batch=frames, shared=shared)
    return render(model, obj, param=param, steps=steps, seed=seed, **render_kwargs)


def accentuate(model, objective: Union[str, Objective], image, weight: float = 1.0,
               param: Optional[ImageParam] = None, steps: int = 256, seed=None, **render_kwargs) -> Result:
    """Feature accentuation: start from ``image`` and make ``objective`` stronger while staying
    close to it, maximizing ``objective - weight * l2(image)`` from ``render(init=image)``.

    >>> result = featvis.recipes.accentuate(model, "layer3:7", PIL.Image.open("dog.png"), weight=2.0)
    """
    image = image_tensor(image)
    obj = as_objective(objective) - float(weight) * l2(image)
    return render(model, obj, param=param, init=image, steps=steps, seed=seed, **render_kwargs)


__all__ = ["caricature", "caricature_transforms", "transparent", "interpolate", "accentuate"]
