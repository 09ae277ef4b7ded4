"""Random geometric transforms that fuse into one affine warp per image.

Each transform contributes, for every image, a 3x3 matrix mapping its input pixel coordinates to
its output pixel coordinates (pixel centres at integer positions), and a new canvas size. A run of
them multiplies into a single matrix per image, sampled once with ``kornia``'s ``warp_affine``:
one bilinear resample per step instead of one per transform.

The matrices are tiny, so they are built on the CPU with NumPy (in float64), where the random
draws already live (see :mod:`featvis.rng`): a step costs one upload of a (B, 2, 3) matrix and one warp on the
image's device, not dozens of small kernels, and the host never waits for the device.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..rng import as_source, to_device

Size = Tuple[int, int]  # (H, W)

_PAD_MODES = {"constant": "zeros", "reflect": "reflection", "edge": "border", "replicate": "border"}
_CPU = torch.device("cpu")
_EYE3 = np.eye(3)[None]


def _eye(B: int) -> np.ndarray:
    return np.repeat(_EYE3, B, axis=0)  # (B, 3, 3) float64


def _translate(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    M = _eye(len(tx))
    M[:, 0, 2] = tx
    M[:, 1, 2] = ty
    return M


def _about_centre(A: np.ndarray, size: Size) -> np.ndarray:
    """Conjugate the linear maps ``A`` (B,2,2) by a translation to the canvas centre."""
    H, W = size
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    M = _eye(len(A))
    M[:, :2, :2] = A
    M[:, :2, 2] = c - A @ c
    return M


def _choice(values: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Pick values[k] with k uniform, from float32 draws u in [0, 1)."""
    k = np.minimum((u * np.float32(len(values))).astype(np.int64), len(values) - 1)
    return values[k]


class _Block:
    """A chain's uniform draws, drawn as one (B, n) block and handed out in order.

    The same numbers as one ``uniform`` call per transform (see :meth:`RandomSource.uniform`),
    with one pass over the per-image generators per step instead of one per transform.
    """

    def __init__(self, draws: torch.Tensor):
        self.draws, self.used = draws, 0

    def uniform(self, n: int, device=None) -> torch.Tensor:
        out = self.draws[:, self.used:self.used + n]
        assert out.shape[1] == n, "a transform drew more than its declared `draws`"
        self.used += n
        return out


class _OnCpu:
    """A random source that hands out its draws on the CPU, whatever its own device."""

    def __init__(self, rng):
        self.rng = rng

    def uniform(self, n: int, device=None) -> torch.Tensor:
        return self.rng.uniform(n, device=_CPU)


class Geometric:
    """A transform described by per-image affine matrices; see :func:`compose` for fusion."""

    #: padding mode of the warp, for transforms that reveal area outside the image.
    mode = "constant"
    value = 0.5
    #: how many uniform numbers per image :meth:`matrices` draws (``None``: unknown), so that a
    #: chain can draw them all at once.
    draws = None

    def matrices(self, rng, B: int, size: Size, device=_CPU) -> Tuple[np.ndarray, Size]:
        """(B, 3, 3) input->output pixel maps and the output size (H, W).

        ``rng.uniform(n)`` gives (B, n) float32 draws as a CPU tensor, row i from image i's
        stream. The maps may be a float64 NumPy array (as the built-in transforms return: for
        3x3 matrices NumPy's per-call cost is a fraction of torch's) or a tensor.
        """
        raise NotImplementedError

    def __call__(self, image: torch.Tensor, rng=None) -> torch.Tensor:
        return warp_chain([self], image, rng)

    def __repr__(self):
        return self.label


def _as_array(M) -> np.ndarray:
    if isinstance(M, torch.Tensor):
        return M.detach().to(_CPU, torch.float64).numpy()
    return np.asarray(M, dtype=np.float64)


def chain_matrix(chain: Sequence[Geometric], rng, B: int, size: Size) -> Tuple[np.ndarray, Size]:
    """The (B, 3, 3) float64 matrix of a run of geometric transforms, and its output size."""
    counts = [t.draws for t in chain]
    source = _Block(rng.uniform(sum(counts), device=_CPU)) if None not in counts else _OnCpu(rng)
    M = _eye(B)
    for t in chain:
        Mi, size = t.matrices(source, B, size, _CPU)
        M = _as_array(Mi) @ M
    return M, size


#: How a warp samples the image: ``"kornia"`` (``kornia``'s ``warp_affine``, the default),
#: ``"grid"`` (``grid_sample`` on a grid from a host-inverted matrix: no device-side inverse, so it
#: can be captured in a CUDA graph) or ``"gather"`` (bilinear sampling by ``gather``, whose
#: backward is deterministic on CUDA where ``grid_sample``'s is not). All three give the same
#: images up to float rounding. Set for a block with :func:`sampling`.
SAMPLERS = ("kornia", "grid", "gather")
_SAMPLER = ["kornia"]


@contextmanager
def sampling(sampler: str):
    """Warps in the block sample with ``sampler`` (one of :data:`SAMPLERS`); restored after."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    before, _SAMPLER[0] = _SAMPLER[0], sampler
    try:
        yield
    finally:
        _SAMPLER[0] = before


def chain_inputs(chain: Sequence[Geometric], rng, B: int, size: Size, dtype=torch.float32):
    """The host half of a warp: this step's (B, 2, 3) matrix as a CPU tensor, and the output size.
    For ``kornia`` it maps input to output pixels; for the other samplers output to input
    (inverted here, in float64, rather than on the device)."""
    M, size = chain_matrix(chain, rng, B, size)
    if _SAMPLER[0] != "kornia":
        M = np.linalg.inv(M)
    return torch.from_numpy(np.ascontiguousarray(M[:, :2])).to(dtype), size


class _NoDraws:
    """Zeros for every draw: for sizes, which never depend on the draws."""

    def __init__(self, B: int):
        self.B = B

    def uniform(self, n: int, device=None) -> torch.Tensor:
        return torch.zeros(self.B, n)


def chain_size(chain: Sequence[Geometric], B: int, size: Size) -> Size:
    """The output size of a run of geometric transforms, without drawing (a feed that replays
    buffers does not call the host half that would say it)."""
    return chain_matrix(chain, _NoDraws(B), B, size)[1]


def apply_warp(chain: Sequence[Geometric], image: torch.Tensor, M: torch.Tensor, size: Size) -> torch.Tensor:
    """The device half of a warp: ``image`` resampled with :func:`chain_inputs`'s matrix ``M`` (on
    the image's device) to ``size``."""
    first_pad = next((t for t in chain if isinstance(t, Pad)), None)
    pm = _PAD_MODES[first_pad.mode if first_pad else "constant"]
    # The samplers fill with zeros: shift so that the fill is `value` in image units.
    shift = (first_pad.value if first_pad else 0.5) if pm == "zeros" else 0.0
    x = image - shift if shift else image
    if _SAMPLER[0] == "kornia":
        from kornia.geometry.transform import warp_affine  # here, not at import: kornia takes ~1 s to import

        out = warp_affine(x, M, dsize=size, mode="bilinear", padding_mode=pm, align_corners=True)
    else:
        out = sample(x, M, size, pm, gather=_SAMPLER[0] == "gather")
    return out + shift if shift else out


def warp_chain(chain: Sequence[Geometric], image: torch.Tensor, rng=None) -> torch.Tensor:
    """Apply a run of geometric transforms as one warp per image."""
    if not chain:
        return image
    B = image.shape[0]
    rng = as_source(rng, B, image.device)
    M, size = chain_inputs(chain, rng, B, tuple(image.shape[-2:]), image.dtype)
    return apply_warp(chain, image, to_device(M, image.device), size)


def sample(image: torch.Tensor, A: torch.Tensor, size: Size, padding: str = "zeros", gather: bool = False) -> torch.Tensor:
    """Bilinear resampling of ``image`` (B, C, H, W) to ``size`` (Ho, Wo): output pixel (x, y) takes
    the input at ``A @ (x, y, 1)`` ((B, 2, 3), pixel centres at integers, i.e. ``align_corners``).
    ``padding``: "zeros", "border" or "reflection", as ``grid_sample``. ``gather=True`` samples with
    ``gather`` (deterministic backward on CUDA) instead of ``grid_sample``."""
    B, C, H, W = image.shape
    Ho, Wo = size
    ys, xs = torch.meshgrid(torch.arange(Ho, device=image.device, dtype=A.dtype),
                            torch.arange(Wo, device=image.device, dtype=A.dtype), indexing="ij")
    xs, ys = xs.reshape(1, -1), ys.reshape(1, -1)  # (1, Ho*Wo)
    sx = A[:, 0, :1] * xs + A[:, 0, 1:2] * ys + A[:, 0, 2:]  # (B, Ho*Wo) input pixel coordinates
    sy = A[:, 1, :1] * xs + A[:, 1, 1:2] * ys + A[:, 1, 2:]
    if not gather:
        grid = torch.stack([sx * (2 / max(W - 1, 1)) - 1, sy * (2 / max(H - 1, 1)) - 1], -1)
        return F.grid_sample(image, grid.view(B, Ho, Wo, 2).to(image.dtype), mode="bilinear",
                             padding_mode=padding, align_corners=True)
    if padding == "border":
        sx, sy = sx.clamp(0, W - 1), sy.clamp(0, H - 1)
    elif padding == "reflection":
        sx, sy = _reflect(sx, W), _reflect(sy, H)
    x0, y0 = sx.floor(), sy.floor()
    wx, wy = (sx - x0).to(image.dtype), (sy - y0).to(image.dtype)
    flat = image.reshape(B, C, H * W)
    out = None
    for dy, dx, w in ((0, 0, (1 - wx) * (1 - wy)), (0, 1, wx * (1 - wy)), (1, 0, (1 - wx) * wy), (1, 1, wx * wy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)  # zeros outside
        idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).long()  # (B, Ho*Wo)
        v = flat.gather(2, idx.unsqueeze(1).expand(B, C, -1)) * (w * inside).unsqueeze(1)  # (B, C, Ho*Wo)
        out = v if out is None else out + v
    return out.view(B, C, Ho, Wo)


def _reflect(c: torch.Tensor, n: int) -> torch.Tensor:
    """Coordinates reflected into [0, n-1] (``grid_sample``'s reflection with align_corners)."""
    if n == 1:
        return torch.zeros_like(c)
    span = n - 1
    c = torch.remainder(c.abs(), 2 * span)
    return torch.where(c > span, 2 * span - c, c).clamp(0, span)


class Pad(Geometric):
    """Pad every side by ``w`` pixels (see :func:`pad`)."""

    def __init__(self, w: int, mode: str = "constant", value: float = 0.5):
        if mode not in _PAD_MODES:
            raise ValueError(f"pad mode {mode!r} is not one of {', '.join(_PAD_MODES)}")
        if w < 0:
            raise ValueError(f"pad width must be >= 0, got {w}")
        self.w, self.mode, self.value = int(w), mode, float(value)
        self.label = f"pad({w})"

    draws = 0

    def matrices(self, rng, B, size, device=_CPU):
        H, W = size
        w = np.full(B, float(self.w))
        return _translate(w, w), (H + 2 * self.w, W + 2 * self.w)

    def __call__(self, image, rng=None):
        # Exact, and no warp needed on its own.
        mode = {"edge": "replicate"}.get(self.mode, self.mode)
        if mode == "constant":
            return F.pad(image, [self.w] * 4, mode="constant", value=self.value)
        return F.pad(image, [self.w] * 4, mode=mode)


class Jitter(Geometric):
    """Random crop: the canvas shrinks by ``d`` and moves by an integer offset 0..d in x and y."""

    def __init__(self, d: int):
        if d < 0:
            raise ValueError(f"jitter distance must be >= 0, got {d}")
        self.d = int(d)
        self.label = f"jitter({d})"

    draws = 2

    def matrices(self, rng, B, size, device=_CPU):
        H, W = size
        if H <= self.d or W <= self.d:
            raise ValueError(f"jitter({self.d}) needs an image larger than {self.d} px, got {W}x{H}")
        u = np.asarray(rng.uniform(2))  # (B, 2) float32
        o = np.minimum(np.floor(u * np.float32(self.d + 1)), self.d).astype(np.float64)  # integer offsets 0..d
        return _translate(-o[:, 0], -o[:, 1]), (H - self.d, W - self.d)


class RandomScale(Geometric):
    """Zoom about the centre by a factor chosen uniformly from ``scales``; the canvas keeps its size."""

    def __init__(self, scales: Sequence[float]):
        self.scales = np.array([float(s) for s in scales])
        if len(self.scales) == 0 or (self.scales <= 0).any():
            raise ValueError(f"random_scale needs a non-empty list of positive factors, got {list(scales)}")
        self.label = f"random_scale({len(self.scales)} values)"

    draws = 1

    def matrices(self, rng, B, size, device=_CPU):
        s = _choice(self.scales, np.asarray(rng.uniform(1))[:, 0])
        A = np.eye(2) * s.reshape(B, 1, 1)
        return _about_centre(A, size), size


class RandomRotate(Geometric):
    """Rotate about the centre by an angle (degrees) chosen uniformly from ``angles``."""

    def __init__(self, angles: Sequence[float]):
        self.angles = np.array([float(a) for a in angles])
        if len(self.angles) == 0:
            raise ValueError("random_rotate needs a non-empty list of angles (degrees)")
        self.label = f"random_rotate({len(self.angles)} values)"

    draws = 1

    def matrices(self, rng, B, size, device=_CPU):
        theta = _choice(self.angles, np.asarray(rng.uniform(1))[:, 0]) * (math.pi / 180)
        c, s = np.cos(theta), np.sin(theta)
        # Counter-clockwise on screen (y points down), as tf.contrib.image.rotate.
        A = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # (B, 2, 2)
        return _about_centre(A, size), size


def pad(w: int, mode: str = "constant", value: float = 0.5) -> Pad:
    """Pad every side by ``w`` pixels: ``mode`` "constant" (with ``value``), "reflect" or "edge"."""
    return Pad(w, mode, value)


def jitter(d: int) -> Jitter:
    """Random translation: crop ``d`` pixels less than the image at a random offset 0..d per image."""
    return Jitter(d)


def random_scale(scales: Sequence[float]) -> RandomScale:
    """Zoom each image about its centre by a factor drawn uniformly from ``scales``."""
    return RandomScale(scales)


def random_rotate(angles: Sequence[float]) -> RandomRotate:
    """Rotate each image about its centre by an angle in degrees drawn uniformly from ``angles``."""
    return RandomRotate(angles)


__all__: List[str] = ["pad", "jitter", "random_scale", "random_rotate", "Geometric", "warp_chain", "sampling", "SAMPLERS"]
