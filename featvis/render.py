"""The optimization loop: param -> transforms -> model (hooked) -> objective -> Adam step."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import torch
from tqdm.auto import tqdm

from .hooks import INPUT, capture
from .io import save_image, to_pil
from .models import as_model, pick_device
from .models.redirect import relu_redirection
from .objectives import Objective, as_objective
from .param import fit_images, fourier, image_tensor
from .rng import RandomSource, image_seeds
from .transforms import compose, standard
from .transforms.alpha import GRAY, collapse_alpha, composite

#: Loss values are read back (a host-device sync on CUDA) only this often.
CHECK_EVERY = 16
#: Adam's learning rate when neither ``lr`` nor the param's ``default_lr`` says otherwise.
DEFAULT_LR = 0.05
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Result:
    """What :func:`render` returns. ``images``: float32 (B,3,H,W) in [0,1] on the CPU ((B,4,H,W)
    RGBA for a param with alpha); ``values``: (B,) the objective of each final image (untransformed;
    RGBA over gray); ``snapshots``: {step: images}."""

    images: torch.Tensor
    values: torch.Tensor
    objective: str
    seeds: List[int]
    steps: int
    snapshots: Dict[int, torch.Tensor] = field(default_factory=dict)

    def to_pil(self):
        """The images as a list of PIL images."""
        return to_pil(self.images)

    def save(self, path) -> List[Path]:
        """Save as PNG (or any PIL format by suffix): ``path`` for one image, ``stem_i.ext`` for many."""
        path = Path(path)
        if len(self.images) == 1:
            return [save_image(self.images[0], path)]
        return [save_image(img, path.with_name(f"{path.stem}_{i}{path.suffix}")) for i, img in enumerate(self.images)]


@contextmanager
def frozen(model: torch.nn.Module):
    """Eval mode and no weight gradients for the block; both restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _optimizer(optimizer, params, lr):
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    return optimizer(params)  # a factory: params -> Optimizer


def _nonfinite_error(objective, flags, first_step, values):
    bad = torch.stack(flags).cpu()
    if bad.any():
        step = first_step + int(bad.nonzero()[0, 0])
        raise FloatingPointError(
            f"objective {objective.name} became non-finite (nan/inf) at step {step}; no image was "
            "returned. Lower the learning rate, or add a penalty that keeps the image bounded.")


def evaluate(model, objective, images: torch.Tensor) -> torch.Tensor:
    """The objective's value (B,) for [0,1] ``images``, without transforms or gradients."""
    objective, model = as_objective(objective), as_model(model)
    device = next(iter(model.parameters()), images).device
    images = images.to(device)
    seen = composite(images, GRAY) if images.shape[1] == 4 else images  # RGBA: over gray
    with torch.no_grad(), frozen(model), capture(model, objective.layers) as run:
        acts = run(seen)
        acts[INPUT] = images
        return objective(acts).float().cpu()


def render(model, objective, param=None, transforms=None, steps: int = 512, lr: Optional[float] = None,
           optimizer=None, seed=None, device=None, progress: bool = True,
           snapshots: Iterable[int] = (), precision: str = "fp32", init=None) -> Result:
    """Optimize images so that ``objective`` is as large as possible; returns a :class:`Result`.

    ``objective``: an :class:`~featvis.objectives.Objective` or ``"layer:channel"`` /
    ``"layer:channel@x,y"``. ``param`` defaults to ``param.fourier(128)`` with one image per
    ``batch=i`` the objective names; ``transforms`` to ``transforms.standard()``; the optimizer to
    Adam with ``lr`` (or pass a class, or a factory ``params -> Optimizer``); ``lr=None`` takes the
    param's ``default_lr`` (0.005 for a CPPN) or 0.05. ``seed``: an int or one int per image; the
    same seed on the same device gives the same images. ``device=None`` picks CUDA when present.
    ``precision`` ("fp32", "bf16", "fp16") autocasts the model only. ``init``: start from this
    image (tensor, PIL image or array; resized to the param) instead of noise, for feature
    accentuation; the param defaults to a Fourier image of its size. An RGBA param (``alpha=True``)
    is seen by the model over a random background each step (over gray for the final values).

    >>> result = featvis.render(model, "mixed4a:476", steps=256, seed=0)
    >>> result.save("mixed4a_476.png")
    """
    objective, device = as_objective(objective), pick_device(device)
    if precision not in _DTYPES:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(_DTYPES)}")
    model = as_model(model).to(device)
    init = None if init is None else image_tensor(init)
    if param is None and init is None:
        param = fourier(128, batch=objective.batch_size or 1)
    elif param is None:
        param = fourier(init.shape[-1], init.shape[-2], batch=max(objective.batch_size or 1, len(init)))
    param = param.to(device)
    rng = RandomSource(image_seeds(seed, param.batch), device)
    if seed is not None:
        param.reset(rng)
    if init is not None:  # after the reset, which would overwrite it
        param.set_image(fit_images(init.to(device), param))
    transforms = standard() if transforms is None else (compose(transforms) if isinstance(transforms, (list, tuple)) else transforms)
    lr = lr if lr is not None else (getattr(param, "default_lr", None) or DEFAULT_LR)
    opt = _optimizer(optimizer, param.parameters(), lr)
    over_background = collapse_alpha()
    wanted, snaps, flags = set(snapshots), {}, []
    autocast = torch.autocast(device.type, dtype=_DTYPES[precision], enabled=precision != "fp32")

    def score(run, image, transform):
        seen = image
        if image.shape[1] == 4:  # RGBA: the model sees RGB over a background
            seen = over_background(image, rng) if transform else composite(image, GRAY)
        with autocast:
            acts = run(transform(seen, rng) if transform else seen)
        acts = {k: v.float() for k, v in acts.items()}
        acts[INPUT] = image
        return objective(acts)  # (B,)

    with frozen(model), relu_redirection(model) as redirect, capture(model, objective.layers) as run, \
            tqdm(total=steps, disable=not progress, desc=objective.name[:40], leave=False) as bar:
        for step in range(steps):
            redirect(step)  # Lucid's redirected ReLU for the model's first `redirect_steps` steps
            image = param()
            if step in wanted:
                snaps[step] = image.detach().float().cpu()
            values = score(run, image, transforms)
            opt.zero_grad(set_to_none=True)
            (-values.sum()).backward()
            opt.step()
            flags.append(~torch.isfinite(values).all())
            bar.update()
            if len(flags) == CHECK_EVERY or step == steps - 1:
                _nonfinite_error(objective, flags, step + 1 - len(flags), values)
                flags.clear()
                bar.set_postfix(objective=f"{values.detach().mean().item():.4g}")
        with torch.no_grad():
            image = param()
            values = score(run, image, None)
            _nonfinite_error(objective, [~torch.isfinite(values).all()], steps, values)
    if steps in wanted:
        snaps[steps] = image.detach().float().cpu()
    return Result(image.detach().float().cpu(), values.detach().float().cpu(), objective.name, rng.seeds, steps, snaps)
