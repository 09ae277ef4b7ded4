"""The optimization loop: param -> transforms -> model (hooked) -> objective -> Adam step."""
from __future__ import annotations

import functools
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

import torch

from .accel import check_precision, deterministic_mode, model_runner
from .hooks import INPUT, capture
from .io import save_image, to_pil
from .models import as_model, pick_device
from .models.redirect import relu_redirection
from .models.state import frozen  # noqa: F401  (featvis.render.frozen: where topk and others import it)
from .objectives import as_objective
from .param import fit_images, fourier, image_tensor
from .progress import bar as progress_bar
from .rng import RandomSource, image_seeds
from .step import WARMUP, Stepper, upload
from .transforms import compose, run_transforms, standard, why_not_capturable
from .transforms.alpha import GRAY, collapse_alpha, composite
from .transforms.geometric import sampling

#: Loss values are read back (a host-device sync on CUDA) only this often.
CHECK_EVERY = 16
#: Adam's learning rate when neither ``lr`` nor the param's ``default_lr`` says otherwise.
DEFAULT_LR = 0.05


@dataclass
class Result:
    """What :func:`render` returns. ``images``: float32 (B,3,H,W) in [0,1] on the CPU ((B,4,H,W)
    RGBA for a param with alpha); ``values``: (B,) the objective of each final image (untransformed;
    RGBA over gray); ``snapshots``: {step: images}; ``terms``: the values of the objective's named
    parts (``{"objective": ..., "diversity": ...}`` for :func:`featvis.objectives.scaled`), which
    sum to ``values``; ``labels``: the unit(s) each image optimizes (``"mixed4a:476"``, "" where the
    objective names none). In Jupyter a Result shows itself: its images in a grid, each with its
    unit and value (``_repr_html_``; ``_repr_png_`` the images alone)."""

    images: torch.Tensor
    values: torch.Tensor
    objective: str
    seeds: List[int]
    steps: int
    snapshots: Dict[int, torch.Tensor] = field(default_factory=dict)
    terms: Dict[str, torch.Tensor] = field(default_factory=dict)
    labels: List[str] = field(default_factory=list)

    def to_pil(self):
        """The images as a list of PIL images."""
        return to_pil(self.images)

    def save(self, path) -> List[Path]:
        """Save as PNG (or any PIL format by suffix): ``path`` for one image, ``stem_i.ext`` for many."""
        path = Path(path)
        if len(self.images) == 1:
            return [save_image(self.images[0], path)]
        return [save_image(img, path.with_name(f"{path.stem}_{i}{path.suffix}")) for i, img in enumerate(self.images)]

    def captions(self) -> List[str]:
        """Per image: its value, and each named term's (``"0.52 (objective 0.61, diversity -0.09)"``)."""
        from .display import fmt
        out = []
        for i, v in enumerate(self.values.tolist()):
            parts = [f"{k} {fmt(float(t[i]))}" for k, t in self.terms.items() if t.dim() == 1 and len(t) > i]
            out.append(fmt(v) + (f" ({', '.join(parts)})" if parts else ""))
        return out

    def _repr_html_(self) -> str:
        from .display import html_grid
        n = len(self.images)
        labels = [self.labels[i] if i < len(self.labels) and self.labels[i] else f"image {i}" for i in range(n)]
        return html_grid(list(self.images), labels, self.captions(),
                         title=f"{self.objective}: {n} image{'s' if n != 1 else ''}, {self.steps} steps")

    def _repr_png_(self) -> bytes:
        from .display import png_bytes, tile
        return png_bytes(tile(list(self.images)))


def _optimizer(optimizer, params, lr, device, capture: bool):
    if optimizer is None and device.type == "cuda":
        # One fused kernel for the whole update instead of a few per tensor; capturable (its step
        # count on the GPU) when the step is replayed from a CUDA graph.
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capture)
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
    seen = composite(images, GRAY) if has_alpha(images, model) else images  # RGBA: over gray
    with torch.no_grad(), frozen(model, device), capture(model, objective.layers) as run:
        acts = run(seen)
        objective.bind({k: tuple(v.shape[1:]) for k, v in acts.items()})  # @x,y index these maps
        acts[INPUT] = images
        return objective(acts).float().cpu()


def _check_arguments(model, param, steps, lr):
    """render()'s arguments that would otherwise fail deep in the loop, or not at all."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps={steps!r}: expected a whole number of optimization steps (0 returns the start image)")
    if lr is not None and not (isinstance(lr, numbers.Real) and 0 < lr < float("inf")):
        raise ValueError(f"lr={lr!r}: expected a positive finite learning rate, e.g. 0.05")
    inference = [name for name, t in list(getattr(model, "named_parameters", lambda: [])()) if t.is_inference()]
    if inference:
        raise ValueError(f"the model's {inference[0]} was created under torch.inference_mode(), so no gradient can "
                         "flow through it; build the model outside inference_mode (render itself may run inside it)")
    if isinstance(param, torch.nn.Module):  # a param made under inference_mode: ordinary copies of its tensors
        for module in param.modules():
            for table in (module._parameters, module._buffers):
                for name, t in list(table.items()):
                    if t is not None and t.is_inference():
                        copy = t.detach().clone()
                        table[name] = torch.nn.Parameter(copy, t.requires_grad) if isinstance(t, torch.nn.Parameter) else copy


def has_alpha(images: torch.Tensor, model) -> bool:
    """Whether ``images`` carry transparency: one channel more than ``model`` takes (RGBA for RGB)."""
    return images.shape[1] == getattr(model, "in_channels", 3) + 1


def _check_channels(param, model) -> None:
    """The param must make what the model takes: its input channels, or one more for alpha."""
    have, want = getattr(param, "channels", 3), getattr(model, "in_channels", 3)
    if have not in (want, want + 1):
        raise ValueError(f"the param makes {have}-channel images but {getattr(model, 'name', 'the model')} takes "
                         f"{want} channel(s); make it with channels={want} (e.g. featvis.param.fourier(128, "
                         f"channels={want})), or leave param out to get one")


def _prepare_param(param, objective, init, seed, device, channels: int = 3):
    """The param on ``device`` (a Fourier image of the model's ``channels`` by default), seeded per
    image, started from ``init``."""
    init = None if init is None else image_tensor(init)
    if param is None and init is None:
        param = fourier(128, batch=objective.batch_size or 1, channels=channels)
    elif param is None:
        param = fourier(init.shape[-1], init.shape[-2], batch=max(objective.batch_size or 1, len(init)),
                        channels=channels)
    param = param.to(device)
    rng = RandomSource(image_seeds(seed, param.batch), device)
    if seed is not None:
        param.reset(rng)
    if init is not None:  # after the reset, which would overwrite it
        param.set_image(fit_images(init.to(device), param))
    return param, rng


def _with_grad(fn):
    """Run ``fn`` with autograd on, also when called inside ``torch.no_grad()`` or
    ``torch.inference_mode()`` (optimizing an image needs gradients; the caller's mode is back after)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)
    return wrapper


@_with_grad
def render(model, objective, param=None, transforms=None, steps: int = 512, lr: Optional[float] = None,
           optimizer=None, seed=None, device=None, progress: Union[bool, Callable[[int], None]] = True,
           snapshots: Iterable[int] = (), precision: str = "fp32", init=None,
           compile: Union[bool, str] = False, deterministic: Union[bool, str] = True,
           graph: Union[bool, str] = False, preset: Optional[str] = None) -> Result:
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
    ``progress``: a bar over the steps (True), none (False), or a function called with 1 after each
    step (a caller's own bar over many renders). ``compile=True`` runs the model through ``torch.compile`` (or name a backend), falling back to
    the plain model with a warning if compilation fails (see :mod:`featvis.accel`): on 2 CPU cores
    InceptionV1 steps take 0.55-0.7x the time, after about a minute of compiling per layer and
    batch size (kept for later renders in the process), so it pays off over whole layers.
    ``deterministic`` (default True): deterministic kernels only, so that the same seed on the
    same device gives the same bytes (on CUDA also cuDNN's fixed algorithms and a gather-based
    warp; an op without a deterministic kernel raises, naming it; ``"warn"`` warns instead).
    ``graph``: ``True`` captures the whole step in a CUDA graph after a few eager steps and replays
    it (one launch per step; off CUDA the same static-buffer step runs eagerly), ``"auto"`` does
    so on CUDA where the transforms allow; a failed capture warns and runs eagerly (:mod:`featvis.step`).


    ``preset`` (``"lucid"``, ``"maco"``, ``"fourier-crops"``, see :mod:`featvis.presets`) fills in
    the param, transforms, steps and optimizer (with its learning-rate schedule) that the caller
    left out; anything given explicitly wins.

    >>> result = featvis.render(model, "mixed4a:476", steps=256, seed=0)
    >>> result.save("mixed4a_476.png")
    """
    _check_arguments(model, param, steps, lr)
    objective, device = as_objective(objective), pick_device(device)
    if preset is not None:  # resolved into plain arguments before anything else
        from .presets import resolve
        kw = resolve(preset, objective.batch_size or 1, param, transforms, steps, lr, optimizer)
        param, transforms, steps, optimizer = kw["param"], kw["transforms"], kw["steps"], kw["optimizer"]
    check_precision(precision)
    model = as_model(model)
    param, rng = _prepare_param(param, objective, init, seed, device, model.in_channels)
    _check_channels(param, model)
    transforms = standard() if transforms is None else (compose(transforms) if isinstance(transforms, (list, tuple)) else transforms)
    lr = lr if lr is not None else (getattr(param, "default_lr", None) or DEFAULT_LR)
    mode = _step_mode(graph, device, transforms)
    opt = _optimizer(optimizer, param.parameters(), lr, device, mode == "graph")
    over_background = collapse_alpha()
    wanted, snaps, flags = set(snapshots), {}, []

    def bare(image):  # the layers' maps for the untransformed image (RGBA over gray), and the image
        return {**run.plain(composite(image, GRAY) if has_alpha(image, model) else image), INPUT: image}

    def score(image, transform, feed=upload):
        if not transform:  # an empty pipeline: the bare image, as at the end
            return objective(bare(image))
        seen = over_background.run(image, rng, feed) if has_alpha(image, model) else image  # RGBA: RGB over a background
        acts = run(run_transforms(transform, seen, rng, feed, getattr(feed, "capturing", False)))
        return objective({**acts, INPUT: image})  # (B,)

    first_step = [True]  # the dead-unit check reads the first (always eager) step's input gradient

    def step(feed):  # param -> transforms -> model -> objective -> backward -> Adam
        image = param()
        check, first_step[0] = first_step[0], False
        if check and image.requires_grad and not image.is_leaf:
            image.retain_grad()
        values = score(image, transforms, feed)
        opt.zero_grad(set_to_none=True)
        (-values.sum()).backward()
        if check:
            _warn_dead(objective, values, image.grad)
        opt.step()
        return image, values

    with frozen(model, device), deterministic_mode(device, deterministic), \
            sampling(_sampler(device, deterministic, mode)), relu_redirection(model) as redirect, \
            model_runner(model, objective.layers, device, precision, compile, autotune=not deterministic) as run, \
            progress_bar(total=steps, disable=progress is not True, desc=objective.name[:40], leave=False) as bar:
        with torch.no_grad():  # the bare image's maps: where @x,y point; a bad position fails here, not at the end
            acts = bare(param())
            objective.bind({k: tuple(v.shape[1:]) for k, v in acts.items() if k != INPUT})
            objective(acts)
        stepper = Stepper(step, device, mode, max(WARMUP, getattr(model, "redirect_steps", 0)))
        for i in range(steps):
            redirect(i)  # Lucid's redirected ReLU for the model's first `redirect_steps` steps
            image, values = stepper(i)
            if i in wanted:
                snaps[i] = image.detach().float().cpu()
            flags.append(~torch.isfinite(values).all())  # stays on the device until checked
            bar.update()
            if callable(progress):
                progress(1)
            if len(flags) == CHECK_EVERY or i == steps - 1:
                _nonfinite_error(objective, flags, i + 1 - len(flags), values)
                flags.clear()
                bar.set_postfix(objective=f"{values.detach().mean().item():.4g}")
        with torch.no_grad():
            image = param()
            acts = bare(image)  # one forward for the final values and every named term
            values = objective(acts)
            _nonfinite_error(objective, [~torch.isfinite(values).all()], steps, values)
            terms = {k: part(acts).float().cpu() for k, part in objective.terms.items()}
    if steps in wanted:
        snaps[steps] = image.detach().float().cpu()
    return Result(image.detach().float().cpu(), values.detach().float().cpu(), objective.name, rng.seeds, steps, snaps,
                  terms, objective.image_labels(image.shape[0]))


def _warn_dead(objective, values: torch.Tensor, grad: Optional[torch.Tensor]) -> None:
    """Warn when the objective is 0 with no gradient for every image at the first step: a unit that
    does not fire for these inputs (a ReLU below zero everywhere) stays at 0 however long it runs.
    (Per image it would be noise: ``batch=i`` terms and caricature targets are 0 by design; the
    render job warns per channel from the final values.)"""
    if grad is None or bool(values.detach().any()) or bool(grad.any()):
        return
    warnings.warn(f"objective {objective.name[:80]} is 0 with a zero gradient at the first step: the unit does not "
                  "fire for these images, so optimizing cannot move it; try another seed or unit, or a layer before "
                  "the ReLU", RuntimeWarning, stacklevel=3)


def _step_mode(graph, device, transforms):
    """The :class:`~featvis.step.Stepper` mode for ``render(graph=...)``: eager, with a warning
    for ``graph=True``, where the transforms cannot be captured."""
    if graph not in (True, False, "auto"):
        raise ValueError(f"graph={graph!r}: expected True, False or 'auto'")
    why_not = why_not_capturable(transforms) if graph else None
    if graph == "auto":
        return "graph" if device.type == "cuda" and why_not is None else "eager"
    if graph and why_not:  # decided before the optimizer is made: an eager loop gets eager Adam
        warnings.warn(f"cannot capture the render step ({why_not}); running it eagerly", RuntimeWarning, stacklevel=3)
        return "eager"
    return "graph" if graph else "eager"


def _sampler(device, deterministic, mode) -> str:
    """How warps sample: by gather where grid_sample's backward would not be deterministic (CUDA),
    by a host-inverted grid where a CUDA graph must not invert on the device, else kornia."""
    if device.type == "cuda" and deterministic:
        return "gather"
    return "grid" if mode == "graph" and device.type == "cuda" else "kornia"


#: ``auto_batch`` on the CPU: the time per image falls little with the batch (InceptionV1 mixed4a at
#: 224 px on 2 cores: 0.091 s per step for one image, 1.24 s for 16, i.e. 0.85x per image) while
#: memory grows linearly (about 1 GB above the loaded model at batch 16), so a small batch (the
#: CLI's choice too).
CPU_BATCH = 8
#: ``auto_batch`` on CUDA: the share of the free memory to fill, leaving room for the allocator's
#: fragmentation and for other tensors.
CUDA_HEADROOM = 0.8


def auto_batch(model, layer: str, size: int = 128, device=None, max_batch: Optional[int] = None,
               param=None, objective=None) -> int:
    """How many images to render as one batch (``--batch auto``): ``layer``'s channels at ``size``
    px with the default transforms.

    On CUDA, from memory: one trial step at batch 1 and one at batch 2 give the fixed and the
    per-image peak memory (peak memory grows linearly in the batch), and the batch fills
    :data:`CUDA_HEADROOM` of the memory free at that moment. On the CPU, where the time per image
    barely falls with the batch, :data:`CPU_BATCH`. Always between 1 and ``max_batch`` (``None``:
    no cap on CUDA).
    ``param(n)`` and ``objective(n)`` make the trial's param and objective for n images (default:
    a Fourier image of ``size`` px, channel 0 of ``layer``).
    """
    device = pick_device(device)
    if device.type != "cuda":
        return max(1, min(CPU_BATCH, max_batch or CPU_BATCH))
    from .objectives import channel
    channels = getattr(as_model(model), "in_channels", 3)
    param = param or (lambda n: fourier(size, batch=n, channels=channels))
    objective = objective or (lambda n: channel(layer, [0] * n))
    model = as_model(model).to(device)
    peaks = {}
    for n in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        render(model, objective(n), param=param(n), steps=1, seed=0, device=device, progress=False)
        peaks[n] = torch.cuda.max_memory_allocated(device) - start
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by torch, reusable
    return batch_for_memory(free * CUDA_HEADROOM, peaks[1], peaks[2], max_batch)


def batch_for_memory(budget: float, peak1: float, peak2: float, max_batch: Optional[int] = None) -> int:
    """The largest batch whose peak memory, linear through ``peak1`` (batch 1) and ``peak2``
    (batch 2), fits in ``budget`` bytes; between 1 and ``max_batch`` (``None``: no cap)."""
    per_image = max(peak2 - peak1, 1.0)
    fixed = max(peak1 - per_image, 0.0)
    fits = int((budget - fixed) // per_image)
    return max(1, fits if max_batch is None else min(max_batch, fits))
