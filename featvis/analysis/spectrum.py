"""The mean amplitude spectrum of a folder of natural images, for :func:`featvis.param.maco`
(``featvis spectrum --images DIR --out spectrum.pt``).

Each image is resized (shorter side to ``size``, antialiased) and centre-cropped to ``size`` x
``size``, its colour means removed, taken into the decorrelated colour basis of
:mod:`featvis.param.color` (the basis maco's spectrum lives in), and Fourier transformed; the
amplitudes |F| are averaged over the images (MACO, Fel et al. 2023, averages magnitudes). No
window is applied, as in MACO: the image border's discontinuity is part of what a picture of
that size has. The result is a (3, size, size) tensor in ``torch.fft`` order (f = 0 at [0, 0]).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Tuple

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..param.color import COLOR_CORRELATION
from ..progress import bar as progress_bar

#: Suffixes read as images (what Pillow opens without plugins).
DEFAULT_SIZE = 224


def _square(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: shorter side resized to ``size``, centre crop (decoded through the
    bounded loader :func:`featvis.io.load_image`)."""
    from ..io import load_image
    from ..param import image_tensor
    t = image_tensor(load_image(path).convert("RGB"))  # (1, 3, H, W)
    h, w = t.shape[-2:]
    k = size / min(h, w)
    nh, nw = max(size, round(h * k)), max(size, round(w * k))
    if (nh, nw) != (h, w):
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return t[0, :, top:top + size, left:left + size]


def compute_spectrum(folder, size: int = DEFAULT_SIZE, progress: bool = False) -> Tuple[torch.Tensor, int]:
    """(the mean amplitude spectrum (3, size, size) in the decorrelated basis, number of images)."""
    if size < 2:
        raise UsageError(f"--size must be at least 2 px, got {size}")
    from .topk import find_images  # the one reader of a folder of images
    files = find_images(folder)
    inverse = torch.linalg.inv(COLOR_CORRELATION.double())
    total = torch.zeros(3, size, size, dtype=torch.float64)
    for path in progress_bar(files, disable=not progress, desc="spectrum", leave=False):
        try:
            img = _square(path, size).double()
        except UsageError:  # the loader's message names the file and the fix
            raise
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read image {str(path)!r} ({e}); remove it or convert it to PNG/JPEG") from None
        img = img - img.mean((-2, -1), keepdim=True)
        t = torch.einsum("ij,jhw->ihw", inverse, img)  # decorrelated basis
        total += torch.fft.fft2(t).abs()
    return (total / len(files)).float(), len(files)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="a folder of natural images (searched recursively)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the spectrum (a torch file, e.g. spectrum.pt)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"square size images are brought to (default: {DEFAULT_SIZE})")


def run(args) -> int:
    """``featvis spectrum``: compute and write the spectrum (atomically)."""
    import sys

    from ..io import atomic_write
    amp, n = compute_spectrum(args.images, args.size, progress=sys.stderr.isatty())
    atomic_write(args.out, lambda tmp: torch.save({"amplitude": amp, "images": n, "size": args.size}, tmp))
    print(f"mean amplitude spectrum of {n} images at {args.size} px -> {args.out} "
          f"(use: featvis.param.maco(224, spectrum={str(args.out)!r}))")
    return 0
