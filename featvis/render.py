"""The optimization loop: param -> transforms -> model (hooked) -> objective -> Adam step."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Union

import torch
from tqdm.auto import tqdm

from .accel import check_precision, model_runner
from .hooks import INPUT
from .io import save_image, to_pil
from .models import as_model, pick_device
from .models.redirect import relu_redirection
from .objectives import Objective, as_objective
from .param import fourier
from .rng import RandomSource, image_seeds
from .transforms import compose, standard

#: Loss values are read back (a host-device sync on CUDA) only this often.
CHECK_EVERY = 16


@dataclass
class Result:
    """What :func:`render` returns. ``images``: float32 (B,3,H,W) in [0,1] on the CPU; ``values``:
    (B,) the objective of each final image (untransformed); ``snapshots``: {step: images}."""

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


def render(model, objective, param=None, transforms=None, steps: int = 512, lr: float = 0.05,
           optimizer=None, seed=None, device=None, progress: bool = True,
           snapshots: Iterable[int] = (), precision: str = "fp32", compile: Union[bool, str] = False) -> Result:
    """Optimize images so that ``objective`` is as large as possible; returns a :class:`Result`.

    ``objective``: an :class:`~featvis.objectives.Objective` or ``"layer:channel"`` /
    ``"layer:channel@x,y"``. ``param`` defaults to ``param.fourier(128)`` with one image per
    ``batch=i`` the objective names; ``transforms`` to ``transforms.standard()``; the optimizer to
    Adam with ``lr`` (or pass a class, or a factory ``params -> Optimizer``). ``seed``: an int or
    one int per image; the same seed on the same device gives the same images. ``device=None``
    picks CUDA when present. ``precision`` ("fp32", "bf16", "fp16") autocasts the model only.
    ``compile=True`` runs the model through ``torch.compile`` (or name a backend), falling back to
    the plain model with a warning if compilation fails (see :mod:`featvis.accel`): on 2 CPU cores
    InceptionV1 steps take 0.55-0.7x the time, after about a minute of compiling per layer and
    batch size (kept for later renders in the process), so it pays off over whole layers.

    >>> result = featvis.render(model, "mixed4a:476", steps=256, seed=0)
    >>> result.save("mixed4a_476.png")
    """
    objective, device = as_objective(objective), pick_device(device)
    check_precision(precision)
    model = as_model(model).to(device)
    param = (fourier(128, batch=objective.batch_size or 1) if param is None else param).to(device)
    rng = RandomSource(image_seeds(seed, param.batch), device)
    if seed is not None:
        param.reset(rng)
    transforms = standard() if transforms is None else (compose(transforms) if isinstance(transforms, (list, tuple)) else transforms)
    opt = _optimizer(optimizer, param.parameters(), lr)
    wanted, snaps, flags = set(snapshots), {}, []

    with frozen(model), relu_redirection(model) as redirect, \
            model_runner(model, objective.layers, device, precision, compile) as run, \
            tqdm(total=steps, disable=not progress, desc=objective.name[:40], leave=False) as bar:
        for step in range(steps):
            redirect(step)  # Lucid's redirected ReLU for the model's first `redirect_steps` steps
            image = param()
            if step in wanted:
                snaps[step] = image.detach().float().cpu()
            values = objective({**run(transforms(image, rng)), INPUT: image})  # (B,)
            opt.zero_grad(set_to_none=True)
            (-values.sum()).backward()
            opt.step()
            flags.append(~torch.isfinite(values).all())  # stays on the device until checked
            bar.update()
            if len(flags) == CHECK_EVERY or step == steps - 1:
                _nonfinite_error(objective, flags, step + 1 - len(flags), values)
                flags.clear()
                bar.set_postfix(objective=f"{values.detach().mean().item():.4g}")
        with torch.no_grad():
            image = param()
            values = objective({**run.plain(image), INPUT: image})
            _nonfinite_error(objective, [~torch.isfinite(values).all()], steps, values)
    if steps in wanted:
        snaps[steps] = image.detach().float().cpu()
    return Result(image.detach().float().cpu(), values.detach().float().cpu(), objective.name, rng.seeds, steps, snaps)


#: ``auto_batch`` on the CPU: the time per image falls little with the batch (InceptionV1 mixed4a at
#: 224 px on 2 cores: a batch of 16 takes about 0.8x the time of 16 single renders) while memory
#: grows linearly (about 1 GB above the loaded model at batch 16), so a fixed moderate batch.
CPU_BATCH = 16
#: ``auto_batch`` on CUDA: the share of the free memory to fill, leaving room for the allocator's
#: fragmentation and for other tensors.
CUDA_HEADROOM = 0.8


def auto_batch(model, layer: str, size: int = 128, device=None, max_batch: int = 256) -> int:
    """How many images to render as one batch for ``--batch auto``: ``layer``'s channels at
    ``size`` px with the default Fourier image and transforms.

    On CUDA, from memory: one trial step at batch 1 and one at batch 2 give the fixed and the
    per-image peak memory (peak memory grows linearly in the batch), and the batch fills
    ``CUDA_HEADROOM`` of the memory free at that moment. On the CPU, where the time per image
    barely falls beyond a few images, :data:`CPU_BATCH`. Always between 1 and ``max_batch``.
    """
    device = pick_device(device)
    if device.type != "cuda":
        return max(1, min(CPU_BATCH, max_batch))
    from .objectives import channel
    model = as_model(model).to(device)
    peaks = {}
    for b in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        render(model, channel(layer, [0] * b), param=fourier(size, batch=b), steps=1, seed=0,
               device=device, progress=False)
        peaks[b] = torch.cuda.max_memory_allocated(device) - start
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by torch, reusable
    return batch_for_memory(free * CUDA_HEADROOM, peaks[1], peaks[2], max_batch)


def batch_for_memory(budget: float, peak1: float, peak2: float, max_batch: int) -> int:
    """The largest batch whose peak memory, linear through ``peak1`` (batch 1) and ``peak2``
    (batch 2), fits in ``budget`` bytes; between 1 and ``max_batch``."""
    per_image = max(peak2 - peak1, 1.0)
    fixed = max(peak1 - per_image, 0.0)
    return int(max(1, min(max_batch, (budget - fixed) // per_image)))
