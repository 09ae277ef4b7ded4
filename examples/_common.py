"""What every example script shares: arguments, default units per model, loading, saving.

Each script makes one classic figure into ``examples/out/``. The defaults are the pretrained
InceptionV1 units of the Distill articles (Olah et al., "Feature Visualization", 2017; the Lucid
tutorials): mixed4a:476, its pair with 465, mixed4a:97 for diversity, 476 -> 460 for
interpolation. Offline, give ``--weights PATH`` (a local InceptionV1 state dict), or use the
hand-coded model (``--model handcoded``), whose units have a known preferred stimulus. Any other
zoo model works with ``--unit LAYER:CHANNEL``, and so does your own: ``--model path/to/file.py:build``
(see README, "Your own model"), or a model a ``FEATVIS_PLUGINS`` module registers.
``--preset fourier-crops`` (or ``maco``) renders with that whole recipe, as ``featvis render
--preset`` does: the one that reads best on modern ImageNet networks; ``--threads N`` as the
command line's.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

import featvis

#: Where the figures go (ignored by git).
OUT = Path(__file__).resolve().parent / "out"

#: Per model: the unit of most figures, its partner (channel pair, interpolation), the diversity
#: unit, the layer of the contact sheet, the channels beside their dataset examples, the image size.
DEFAULTS = {
    "inceptionv1": dict(unit="mixed4a:476", partner="mixed4a:465", interpolate=("mixed4a:476", "mixed4a:460"),
                        diverse="mixed4a:97", sheet_layer="mixed3a", examples="mixed4a:476,460,465", size=128),
    # handcoded (featvis.models.handcoded): curves bend towards 45*c degrees, edges are 22.5-degree
    # steps of line orientation (channels 8-11 red-green).
    "handcoded": dict(unit="curves:2", partner="curves:0", interpolate=("edges:0", "edges:4"),
                      diverse="curves:2", sheet_layer="edges", examples="curves:0,2,4,6", size=64),
}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="inceptionv1",
                   help="zoo model name, a FEATVIS_PLUGINS model, or path/to/file.py:build (default: inceptionv1; "
                        "offline: handcoded)")
    p.add_argument("--weights", default="default",
                   help="'default' (pretrained, downloaded once), 'none' (random) or a local state-dict path")
    p.add_argument("--steps", type=int, default=512, help="optimization steps per image (default: 512)")
    p.add_argument("--size", type=int, default=None, help="image size in px (default: 128; 64 for handcoded)")
    p.add_argument("--unit", default=None, help="LAYER:CHANNEL to use instead of the model's default unit")
    p.add_argument("--partner", default=None, help="LAYER:CHANNEL paired with the unit (channel pair, interpolation)")
    p.add_argument("--seed", type=int, default=0)
    from featvis.presets import PRESETS
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="a whole recipe (param, transforms, lr schedule; its size unless --size): fourier-crops "
                        "reads best on modern ImageNet nets (default: a plain Fourier image, Lucid's)")
    from featvis.threads import arg as threads_arg
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N|auto",
                   help="CPU threads (default: $FEATVIS_THREADS, else the idle physical cores)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    p.add_argument("--format", choices=("png", "pdf"), default="png", help="figure file type (default: png)")
    p.add_argument("--dpi", type=float, default=150, help="resolution stored in the file (default: 150)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse_unit(text: str) -> Tuple[str, int]:
    """``(layer, channel)`` of ``"layer:channel"``, read by featvis's one parser (featvis.units)."""
    from featvis.errors import UsageError
    from featvis.units import Unit
    try:
        unit = Unit.parse(text)
    except UsageError as e:
        raise SystemExit(str(e)) from None
    return unit.layer, unit.channel


def default(args, key: str):
    """The model's default for ``key`` (see ``DEFAULTS``); ``--unit`` / ``--partner`` replace the units."""
    table = DEFAULTS.get(args.model)
    if key == "size":
        return table["size"] if table else 128
    if args.unit is not None:
        layer, n = parse_unit(args.unit)
        partner = args.partner or f"{layer}:{n + 1}"
        return dict(unit=args.unit, partner=partner, interpolate=(args.unit, partner), diverse=args.unit,
                    sheet_layer=layer, examples=args.unit)[key]
    if table is None:
        raise SystemExit(f"no default units for model {args.model!r}; give --unit LAYER:CHANNEL "
                         f"(see: featvis layers {args.model})")
    if key in ("partner", "interpolate") and args.partner:
        return args.partner if key == "partner" else (table["unit"], args.partner)
    return table[key]


def size(args) -> int:
    """``--size``, else the preset's size, else the model's default."""
    if args.size:
        return args.size
    if args.preset:
        return featvis.presets.get(args.preset).size
    return default(args, "size")


def image_param(args, batch: int):
    """The image param of ``batch`` images: the preset's (``--preset``), else a Fourier image."""
    if args.preset:
        return featvis.presets.get(args.preset).param(size(args), batch)
    return featvis.param.fourier(size(args), batch=batch)


def load(args):
    """The model (through the command line's opener: zoo names, FEATVIS_PLUGINS models and
    path/to/file.py:build alike), with the thread count set, or a clear exit."""
    from featvis.errors import UsageError
    from featvis.models.open import load_plugins, open_model
    from featvis.models.registry import pick_device
    from featvis.threads import apply, choose, passive_wait
    passive_wait()  # (only where torch has not started OpenMP yet)
    apply(choose(args.threads)[0])
    try:
        load_plugins()
        return open_model(args.model, args.weights, pick_device(args.device), args.seed)
    except UsageError as e:
        raise SystemExit(f"{e}\noffline, pass --weights PATH (a local state dict), --weights none (random), "
                         "or --model handcoded") from None


def n_channels(model, layer: str, size: int) -> int:
    """How many channels ``layer`` has (one forward pass on a gray image, stopping at the layer)."""
    gray = torch.full((1, 3, size, size), 0.5)
    return featvis.activations(model, gray, layer)[layer].shape[1]


def render_kwargs(args) -> dict:
    """``steps``, ``seed``, ``device``, ``progress`` and ``preset`` for :func:`featvis.render` (a param
    given beside it wins over the preset's: use :func:`image_param` for the preset's own)."""
    return dict(steps=args.steps, seed=args.seed, device=args.device, progress=not args.quiet, preset=args.preset)


def output(args, name: str) -> Path:
    return Path(args.out) / f"{name}.{args.format}"


def done(path: Path) -> Path:
    print(f"wrote {path}")
    return path


def synthetic_images(folder: Path, n: int = 96, size: int = 96, seed: int = 0) -> Path:
    """``n`` images of lines, arcs, gratings and blobs on noise, in nested folders, for when no
    image folder is given: enough for line and curve detectors to have clear favourites."""
    folder = Path(folder)
    if folder.is_dir() and len(list(folder.rglob("*.png"))) >= n:
        return folder
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.uniform(90, 160, (size, size, 3)).astype(np.uint8)
        im = Image.fromarray(base)
        draw = ImageDraw.Draw(im)
        kind = i % 4
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if kind == 0:  # straight lines
            for _ in range(int(rng.integers(1, 4))):
                a = rng.uniform(0, math.pi)
                cx, cy = rng.uniform(0.2, 0.8, 2) * size
                dx, dy = math.cos(a) * size, -math.sin(a) * size
                draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=int(rng.integers(2, 5)))
        elif kind == 1:  # arcs
            for _ in range(int(rng.integers(1, 3))):
                r = rng.uniform(6, size / 3)
                cx, cy = rng.uniform(0.2, 0.8, 2) * size
                start = rng.uniform(0, 360)
                draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(90, 200), fill=colour,
                         width=int(rng.integers(2, 4)))
        elif kind == 2:  # a grating
            a, wavelength = rng.uniform(0, math.pi), rng.uniform(4, 12)
            y, x = np.mgrid[0:size, 0:size]
            wave = 0.5 + 0.5 * np.cos(2 * math.pi * (x * math.sin(a) + y * math.cos(a)) / wavelength)
            im = Image.fromarray((wave[..., None] * np.array(colour) + (1 - wave[..., None]) * 40).astype(np.uint8))
        else:  # blobs
            for _ in range(int(rng.integers(1, 4))):
                r = rng.uniform(4, size / 4)
                cx, cy = rng.uniform(0.1, 0.9, 2) * size
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        sub = folder / ("lines", "arcs", "gratings", "blobs")[kind]
        sub.mkdir(parents=True, exist_ok=True)
        featvis.io.save_image(im, sub / f"{i:03d}.png")
    return folder


def unit_list(spec: str) -> Tuple[str, List[int]]:
    """``"mixed4a:476,460"`` -> ("mixed4a", [476, 460])."""
    layer, _, chans = spec.rpartition(":")
    return layer, [int(c) for c in chans.split(",")]


__all__ = ["parser", "default", "size", "image_param", "load", "render_kwargs", "output", "done", "synthetic_images",
           "parse_unit", "unit_list", "n_channels", "OUT", "DEFAULTS"]
