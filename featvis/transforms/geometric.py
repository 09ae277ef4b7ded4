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


def warp_chain(chain: Sequence[Geometric], image: torch.Tensor, rng=None) -> torch.Tensor:
    """Apply a run of geometric transforms as one warp per image."""
    if not chain:
        return image
    B = image.shape[0]
    rng = as_source(rng, B, image.device)
    M, size = chain_matrix(chain, rng, B, tuple(image.shape[-2:]))
    first_pad = next((t for t in chain if isinstance(t, Pad)), None)
    pm = _PAD_MODES[first_pad.mode if first_pad else "constant"]
    # kornia fills with zeros: shift so that the fill is `value` in image units.
    shift = (first_pad.value if first_pad else 0.5) if pm == "zeros" else 0.0
    M = to_device(torch.from_numpy(M[:, :2]).to(image.dtype), image.device)  # (B, 2, 3)
    from kornia.geometry.transform import warp_affine  # here, not at import: kornia takes ~1 s to import

    out = warp_affine(image - shift if shift else image, M, dsize=size, mode="bilinear",
                      padding_mode=pm, align_corners=True)
    return out + shift if shift else out


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


__all__: List[str] = ["pad", "jitter", "random_scale", "random_rotate", "Geometric", "warp_chain"]
