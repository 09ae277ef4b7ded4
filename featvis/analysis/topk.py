"""Dataset examples: the images of a folder that excite each channel most, cropped to the unit.

Human studies found that natural top-activating examples help people understand a unit more than
visualizations alone (Borowski et al., ICLR 2021); OpenAI Microscope shows both side by side.
``topk`` streams a folder of images through the model once, keeps for every channel the ``k``
images with the largest activation (the maximum over positions) and where that maximum is, and
writes the crop of each image around the maximum (the unit's receptive field) into a render
directory, next to the visualizations, with the records under the ``"topk"`` key of its
``manifest.json``.

Memory is bounded: per channel only a running top-k (``k`` values, image indices and positions) is
kept; each batch's activations are reduced to one maximum per image and channel and merged, never
stored. Only the list of file names grows with the folder.

>>> result = topk(model, "mixed4a", "imagenet_val/", channels=[476, 460], k=9)
>>> write_topk(result, "out/")          # out/mixed4a/topk/476/0.png ... and out/manifest.json
>>> examples_sheet("out/", "mixed4a", out="mixed4a_examples.png")
"""
from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm.std import tqdm  # tqdm.write only (bars: featvis.progress); tqdm.auto warns in a kernel without ipywidgets

from ..errors import UsageError
from ..hooks import capture
from ..io import PathLike
from ..jobs.folder import MAIN, MANIFEST, RenderFolder  # noqa: F401  (MANIFEST: re-exported)
from ..jobs.sheets import examples_sheet  # noqa: F401  (topk.examples_sheet: its owner is the folder's sheets)
from ..models import as_model, pick_device
from ..models.state import frozen
from ..progress import bar as progress_bar

#: Files ``topk`` reads (compared case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Largest ``size``: one 4096 px image is 200 MB as float32; beyond it is a typo.
MAX_SIZE = 4096
#: Largest ``k`` (images kept per channel).
MAX_K = 10_000
#: The decoded images of two batches (the one running and the one decoding) must fit in this many bytes.
MAX_BATCH_BYTES = 4 << 30


# --- the folder ----------------------------------------------------------------------------------

def find_images(root: PathLike) -> List[Path]:
    """Every ``.jpg``/``.jpeg``/``.png`` under ``root`` (any depth), sorted, so runs are repeatable."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--images {str(root)!r} is not a folder; give a folder of .jpg/.png images (any depth)")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UsageError(f"no .jpg, .jpeg or .png files under {str(root)!r}; give a folder of images")
    return paths


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, 8 bits per channel. 16-bit (and 32-bit integer) grayscale is scaled from its full
    range, not clipped at 255 as ``convert("RGB")`` would (which turns it white)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        top = 1.0 if im.mode == "F" else (65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0)
        gray = (np.clip(arr / top, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    return im.convert("RGB")


def load_image(path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: the image's shorter side resized to ``size``, then centre-cropped.

    Decoded through :func:`featvis.io.load_image` (a regular file; pixel count and aspect ratio
    bounded from the header, before decoding). ``path``: a file, or a PIL image already loaded
    that way. Only the centre square is resampled, at the scale that resizing the whole image
    would use (the pixels agree with resize-then-crop but for a few levels at the crop's border),
    so memory does not grow with the image's long side."""
    from ..io import load_image as load_bounded
    im = _to_rgb(path if isinstance(path, Image.Image) else load_bounded(path))
    w, h = im.size
    s = size / min(w, h)
    w2, h2 = max(size, round(w * s)), max(size, round(h * s))
    left, top = (w2 - size) // 2, (h2 - size) // 2
    sx, sy = w / w2, h / h2  # source pixels per output pixel, as resizing the whole image would use
    im = im.resize((size, size), Image.BICUBIC, box=(left * sx, top * sy, (left + size) * sx, (top + size) * sy),
                   reducing_gap=3.0)
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1).float() / 255


def _try_load(path: Path, size: int):
    try:
        return load_image(path, size), None
    except Exception as e:  # noqa: BLE001 - any decoding failure means "skip this file"
        return None, f"{type(e).__name__}: {e}"


Chunk = Tuple[List[int], Optional[torch.Tensor], List[Tuple[int, str]]]


def _batches(paths: Sequence[Path], size: int, batch: int, workers: int) -> Iterator[Chunk]:
    """Yield ``(indices, images (n,3,S,S) or None, [(index, error), ...])`` per chunk of ``batch``
    files. Decoding runs in threads, one chunk ahead: at most two chunks are in memory."""
    def collect(start, futures):
        ids, images, bad = [], [], []
        for i, fut in enumerate(futures, start):
            image, error = fut.result()
            if image is None:
                bad.append((i, error))
            else:
                ids.append(i)
                images.append(image)
        return ids, (torch.stack(images) if images else None), bad

    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = None
        for start in range(0, len(paths), batch):
            futures = [pool.submit(_try_load, p, size) for p in paths[start:start + batch]]
            if pending is not None:
                yield collect(*pending)
            pending = (start, futures)
        if pending is not None:
            yield collect(*pending)


# --- the running top-k -----------------------------------------------------------------------------

class RunningTopK:
    """The ``k`` largest scores per channel seen so far, with the image and position of each.

    It holds ``channels * k`` entries of each kind whatever the number of images; :meth:`update`
    merges a batch by sorting the ``k + B`` candidates per channel. Ties keep the earlier image
    (a stable sort), so the result does not depend on the batch size.
    """

    def __init__(self, channels: int, k: int):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.values = torch.full((channels, k), -math.inf)  # (C, k), best first
        self.images = torch.full((channels, k), -1, dtype=torch.long)  # (C, k) image index, -1: none yet
        self.positions = torch.full((channels, k), -1, dtype=torch.long)  # (C, k) flat index into the map
        self.peak_items = self.stored_items()

    def stored_items(self) -> int:
        """How many numbers the top-k holds now (``3 * channels * k``)."""
        return self.values.numel() + self.images.numel() + self.positions.numel()

    def update(self, scores: torch.Tensor, positions: torch.Tensor, image_ids: torch.Tensor) -> None:
        """Merge a batch: ``scores`` and ``positions`` (B, C), ``image_ids`` (B,)."""
        C, B = self.values.shape[0], scores.shape[0]
        values = torch.cat([self.values, scores.float().nan_to_num(nan=-math.inf).T.cpu()], 1)  # (C, k + B)
        images = torch.cat([self.images, image_ids.cpu().view(1, B).expand(C, B)], 1)
        where = torch.cat([self.positions, positions.T.cpu()], 1)
        self.peak_items = max(self.peak_items, values.numel() + images.numel() + where.numel())
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :self.k]
        self.values, self.images, self.positions = values.gather(1, order), images.gather(1, order), where.gather(1, order)


# --- receptive fields ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of a layer look in a ``size`` x ``size`` input, in input pixels (a pixel i
    covers [i, i + 1), so the centre of pixels 0..4 is 2.5).

    Measured from gradients (see :func:`receptive_field`): ``extent`` (h, w) is the receptive
    field of one unit away from the border; ``stride`` (y, x) the input pixels between
    neighbouring units; ``origin`` (y, x) the centre of unit (0, 0). ``map_size`` is the layer's
    output size for a ``size`` px input.
    """

    size: int
    map_size: Tuple[int, int]
    extent: Tuple[int, int]
    stride: Tuple[float, float]
    origin: Tuple[float, float]
    method: str = "gradient"

    def unit_centre(self, y: int, x: int) -> Tuple[float, float]:
        """Input-pixel centre (y, x) of the unit at row ``y``, column ``x`` of the activation map."""
        return self.origin[0] + y * self.stride[0], self.origin[1] + x * self.stride[1]

    def box(self, y: int, x: int) -> Tuple[int, int, int, int]:
        """``(left, top, right, bottom)``: the receptive field of unit (y, x), clipped to the image
        size and moved inside it (so every crop of a layer has the same size)."""
        cy, cx = self.unit_centre(y, x)
        h, w = min(self.extent[0], self.size), min(self.extent[1], self.size)
        top = min(max(0, round(cy - h / 2)), self.size - h)
        left = min(max(0, round(cx - w / 2)), self.size - w)
        return left, top, left + w, top + h

    def to_json(self) -> dict:
        return {"size": self.size, "map_size": list(self.map_size), "extent": list(self.extent),
                "stride": list(self.stride), "origin": list(self.origin), "method": self.method}


def _whole_image(size: int, map_size=(1, 1)) -> ReceptiveField:
    return ReceptiveField(size, tuple(map_size), (size, size), (float(size), float(size)), (size / 2, size / 2),
                          "whole image")


def _bbox(support: torch.Tensor):
    """(top, bottom, left, right), inclusive, of the True pixels of a (H, W) mask."""
    rows, cols = support.any(1).nonzero()[:, 0], support.any(0).nonzero()[:, 0]
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def receptive_field(model, layer: str, size: int = 224, probes: int = 4, canvas: int = 3, seed: int = 0,
                    device=None) -> ReceptiveField:
    """Measure where ``layer``'s units look in a ``size`` px input (see :class:`ReceptiveField`).

    On a canvas ``canvas`` times larger than the input (so that deep layers' fields are not cut by
    the border), the gradients of two units, the centre one and one a few steps down and right
    (each summed over channels, so a dead channel hides nothing), with respect to ``probes`` random
    images: the union of the non-zero pixels is each unit's field. Its size is the extent; the
    shift between the two fields over the steps between the units is the stride. When a field
    still reaches the canvas border, the stride falls back to canvas size / map size. A layer
    without spatial dimensions (B, C) sees the whole image.
    """
    device = pick_device(device)
    model = as_model(model)
    gen = torch.Generator().manual_seed(seed)
    P = size * canvas
    with frozen(model, device), capture(model, [layer]) as run:
        with torch.no_grad():
            small = run(torch.full((1, 3, size, size), 0.5, device=device))[layer]
        if small.dim() != 4:
            return _whole_image(size)
        supports = None
        for _ in range(probes):
            x = torch.rand(1, 3, P, P, generator=gen).to(device).requires_grad_(True)
            with torch.enable_grad():
                out = run(x)[layer]  # (1, C, Hc, Wc)
                Hc, Wc = out.shape[2:]
                dy, dx = (max(1, Hc // 8) if Hc > 1 else 0), (max(1, Wc // 8) if Wc > 1 else 0)
                (g0,) = torch.autograd.grad(out[0, :, Hc // 2, Wc // 2].sum(), x, retain_graph=True)
                (g1,) = torch.autograd.grad(out[0, :, Hc // 2 + dy, Wc // 2 + dx].sum(), x)
            masks = [(g[0].abs().sum(0) > 0).cpu() for g in (g0, g1)]
            supports = masks if supports is None else [a | b for a, b in zip(supports, masks)]
    H, W = small.shape[2:]
    if not supports[0].any():  # a dead unit on every probe: nothing measured, use the map's grid
        print(f"featvis: no gradient reached the input from {layer!r}; cropping one stride around each unit",
              file=sys.stderr)
        stride = (size / H, size / W)
        return ReceptiveField(size, (H, W), (max(1, round(stride[0])), max(1, round(stride[1]))), stride,
                              (stride[0] / 2, stride[1] / 2), "map grid (no gradient)")
    (t0, b0, l0, r0), method = _bbox(supports[0]), "gradient"
    extent = (b0 - t0 + 1, r0 - l0 + 1)
    centre = ((t0 + b0 + 1) / 2, (l0 + r0 + 1) / 2)
    stride = [P / Hc, P / Wc]
    if supports[1].any():
        t1, b1, l1, r1 = _bbox(supports[1])
        inside = min(t0, l0, t1, l1) > 0 and max(b0, r0, b1, r1) < P - 1
        if inside:
            stride = [((t1 + b1 + 1) / 2 - centre[0]) / dy if dy else stride[0],
                      ((l1 + r1 + 1) / 2 - centre[1]) / dx if dx else stride[1]]
        else:
            method = "gradient extent; stride = canvas / map size (the field reaches the border)"
    origin = (centre[0] - (Hc // 2) * stride[0], centre[1] - (Wc // 2) * stride[1])
    return ReceptiveField(size, (H, W), extent, (float(stride[0]), float(stride[1])), origin, method)


# --- topk ------------------------------------------------------------------------------------------

@dataclass
class TopK:
    """What :func:`topk` found. ``values``, ``images``, ``positions`` are (len(channels), k), best
    first; ``images`` index ``paths`` (-1 where fewer than ``k`` images were read); ``positions``
    are (y, x) on the activation map, shape (len(channels), k, 2). ``skipped``: unreadable files
    with the reason."""

    layer: str
    channels: List[int]
    k: int
    size: int
    root: Path
    paths: List[Path]
    values: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor
    receptive_field: ReceptiveField
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    peak_items: int = 0  # the most numbers the running top-k held at once (bounded by 3*C*(k + batch))
    weights_sha256: Optional[str] = None  # the network's weights digest (featvis.models.weights.weights_digest)

    def entries(self, channel: int) -> List[dict]:
        """``[{"rank", "path", "value", "position": (y, x), "box": (left, top, right, bottom)}, ...]``."""
        i = self.channels.index(channel)
        out = []
        for rank in range(self.k):
            idx = int(self.images[i, rank])
            if idx < 0:
                break
            y, x = (int(v) for v in self.positions[i, rank])
            out.append({"rank": rank, "path": self.paths[idx], "value": float(self.values[i, rank]),
                        "position": (y, x), "box": self.receptive_field.box(y, x)})
        return out


def _channel_list(channels, n_channels: int) -> List[int]:
    """``None``/``"all"``, a SPEC string (``0:64``, ``3,17,476``; as ``featvis render``), or ints."""
    from ..units import parse_channels
    if channels is None or isinstance(channels, str):
        return parse_channels(channels or "all", n_channels)
    chosen = [int(channels)] if isinstance(channels, int) else [int(c) for c in channels]
    if not chosen:
        raise UsageError("channels is empty; give channel indices, a spec like '0:16,20', or None for all")
    return parse_channels(",".join(map(str, chosen)), n_channels)


def check_arguments(k: int = 9, size: int = 224, batch: int = 64, crop: Optional[int] = None,
                    workers: Optional[int] = None) -> None:
    """Refuse, before any work, arguments that cannot work or would exhaust memory."""
    def whole(name, value, low, high=None):
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            upto = f" and at most {high}" if high is not None else ""
            raise UsageError(f"{name} {value!r}: expected a whole number at least {low}{upto}")

    whole("--k", k, 1, MAX_K)
    whole("--size", size, 8, MAX_SIZE)
    whole("--batch", batch, 1)
    if crop is not None:
        whole("--crop", crop, 1, MAX_SIZE)
    if workers is not None:
        whole("--workers", workers, 1, 256)
    need = 2 * batch * 3 * size * size * 4  # two batches of float32 images in memory
    if need > MAX_BATCH_BYTES:
        raise UsageError(f"--batch {batch} at --size {size} would hold {need / 2**30:.1f} GiB of decoded images "
                         f"(limit {MAX_BATCH_BYTES / 2**30:.0f} GiB); lower --batch or --size")


def topk(model, layer: str, images, channels=None, k: int = 9, size: int = 224, batch: int = 64,
         device=None, progress: bool = True, workers: Optional[int] = None, crop: Optional[int] = None,
         report: Optional[Callable[[Path, str], None]] = None) -> TopK:
    """The ``k`` images of a folder that excite each channel of ``layer`` most.

    ``images``: a folder (searched at any depth for .jpg/.jpeg/.png) or a list of files; each is
    resized (shorter side) and centre-cropped to ``size`` px. ``channels``: a list of indices, a
    spec string (``"0:16,20"``, as featvis render) or None for all. A channel's score for an image is its largest
    activation over positions; the position is kept, and the crop is that unit's receptive field
    (:func:`receptive_field`), or ``crop`` px square around the unit's centre when given (the
    full field of a deep layer often covers the whole image). Unreadable files are reported
    (``report(path, reason)``, by default a line on stderr) and skipped. Runs under
    ``torch.no_grad``; the forward pass stops at ``layer``. ``workers``: threads that decode
    images (default: up to 4).
    """
    check_arguments(k=k, size=size, batch=batch, crop=crop, workers=workers)
    root = Path(images) if isinstance(images, (str, os.PathLike)) else None
    paths = find_images(root) if root is not None else [Path(p) for p in images]
    if not paths:
        raise UsageError("topk needs at least one image")
    device = pick_device(device)
    model = as_model(model)
    workers = workers or min(4, os.cpu_count() or 1)

    def default_report(path, reason):
        tqdm.write(f"featvis topk: skipping unreadable {path}: {reason}", file=sys.stderr)

    report = report or default_report
    tracker: Optional[RunningTopK] = None
    chosen: Optional[List[int]] = None
    skipped: List[Tuple[Path, str]] = []
    map_size = None
    with frozen(model, device), torch.no_grad(), capture(model, [layer]) as run, \
            progress_bar(total=len(paths), disable=not progress, desc=f"topk {layer}", unit="img", leave=False) as bar:
        for ids, batch_images, bad in _batches(paths, size, batch, workers):
            for i, reason in bad:
                skipped.append((paths[i], reason))
                report(paths[i], reason)
            if batch_images is not None:
                acts = run(batch_images.to(device))[layer]
                if acts.dim() not in (2, 4):
                    raise UsageError(f"layer {layer!r} gives outputs of shape {tuple(acts.shape)}; "
                                     "topk needs (B, C, H, W) or (B, C)")
                if tracker is None:
                    chosen = _channel_list(channels, acts.shape[1])
                    tracker = RunningTopK(len(chosen), k)
                    map_size = tuple(acts.shape[2:]) if acts.dim() == 4 else (1, 1)
                acts = acts[:, chosen].float()  # (B, C', ...)
                if acts.dim() == 4:
                    scores, where = acts.flatten(2).max(2)  # (B, C') each
                else:
                    scores, where = acts, torch.zeros_like(acts, dtype=torch.long)
                tracker.update(scores, where, torch.tensor(ids))
            bar.update(len(ids) + len(bad))
    if tracker is None:
        raise UsageError(f"none of the {len(paths)} image files could be read (first: {skipped[0][0]}: {skipped[0][1]})")
    rf = receptive_field(model, layer, size, device=device)
    if crop is not None:
        rf = replace(rf, extent=(int(crop), int(crop)), method=f"{rf.method}; crop {int(crop)} px as given")
    W = map_size[1]
    positions = torch.stack([tracker.positions // W, tracker.positions % W], -1)  # (C', k, 2) as (y, x)
    from ..models.weights import weights_digest
    return TopK(layer, list(chosen), k, size, root if root is not None else Path("."), paths, tracker.values,
                tracker.images, positions, rf, skipped, tracker.peak_items, weights_digest(model))


# --- writing into a render directory ---------------------------------------------------------------

def crop_path(layer: str, channel: int, rank: int) -> str:
    """Where a crop goes, relative to the render directory: ``<layer>/topk/<channel>/<rank>.png``."""
    return RenderFolder.crop_rel(layer, channel, rank)


def write_topk(result: TopK, out_dir, model_name: Optional[str] = None, weights: Optional[str] = None) -> Path:
    """Write each channel's crops as PNGs and record them under ``manifest["topk"][layer]``.

    Each image file is opened once (however many channels it serves) and prepared exactly as
    during the scan. The manifest entry per channel is a list, best first, of ``{"rank", "image"
    (path relative to the image folder), "value", "position" [y, x] on the activation map, "box"
    [left, top, right, bottom] in the ``size`` px input, "crop" (relative to ``out_dir``)}``.
    ``out_dir``: a path, or a :class:`~featvis.jobs.folder.RenderFolder` whose lock the caller holds
    (otherwise the folder's ``main`` writer lock is taken for the writing). The record carries the
    network that chose the examples (``made_by``: ``model_name``, ``weights`` as given on the command
    line, and the weights' digest); a folder whose renders or other records come from another
    network refuses it (:class:`UsageError`), before any crop is written. Returns the manifest's path.
    """
    from ..jobs.folder.records import made_by
    folder = out_dir if isinstance(out_dir, RenderFolder) else RenderFolder(out_dir)
    if folder.writer is None:
        with folder.lock(MAIN):
            return write_topk(result, folder, model_name, weights)
    made = made_by(model_name, result.weights_sha256, weights) if result.weights_sha256 else None
    if made is not None:
        folder.check_made_by(made, f"the top-k examples of {result.layer}")
    wanted: Dict[int, List[Tuple[int, dict]]] = {}
    for c in result.channels:
        for e in result.entries(c):
            idx = int(result.images[result.channels.index(c), e["rank"]])
            wanted.setdefault(idx, []).append((c, e))
    records: Dict[str, List[dict]] = {str(c): [] for c in result.channels}
    for idx in sorted(wanted):
        path = result.paths[idx]
        image, error = _try_load(path, result.size)
        if image is None:
            tqdm.write(f"featvis topk: {path} could not be read again ({error}); its crops are left out", file=sys.stderr)
            continue
        for c, e in wanted[idx]:
            left, top, right, bottom = e["box"]
            rel = crop_path(result.layer, c, e["rank"])
            folder.save_image(rel, image[:, top:bottom, left:right])
            records[str(c)].append({
                "rank": e["rank"], "image": _relative(path, result.root), "value": e["value"],
                "position": list(e["position"]), "box": [left, top, right, bottom], "crop": rel})
    for recs in records.values():
        recs.sort(key=lambda r: r["rank"])

    folder.record_topk(result.layer, {
        "model": model_name, **({"made_by": made} if made is not None else {}),
        "images": str(result.root), "k": result.k, "size": result.size,
        "score": "max over positions", "receptive_field": result.receptive_field.to_json(),
        "skipped": [{"path": str(p), "error": r} for p, r in result.skipped],
        "channels": records,
    })
    return folder.root / MANIFEST


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --- the Microscope-like sheet -----------------------------------------------------------------------

# --- the command line: `featvis topk MODEL LAYER --images DIR ...` -----------------------------------

def add_arguments(parser) -> None:
    """Arguments of ``featvis topk`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("model", help="model name (see: featvis models)")
    parser.add_argument("layer", help="layer name (see: featvis layers MODEL)")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of .jpg/.png images, searched at any depth")
    parser.add_argument("--channels", default="all", metavar="SPEC",
                        help="all (default), a range 0:64, a list 3,17,476, or a mix 0:8,476")
    parser.add_argument("--k", type=int, default=9, help="images kept per channel (default: 9)")
    parser.add_argument("--size", type=int, default=224,
                        help="images are resized and centre-cropped to SIZE px (default: 224)")
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--out", default="renders", metavar="DIR",
                        help="render directory to write crops and manifest.json into (default: renders, as featvis render)")
    parser.add_argument("--weights", default="default", metavar="default|none|PATH",
                        help="pretrained weights (default), random init (none), or a state dict file")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--crop", type=int, default=None, metavar="PX",
                        help="crop PX px around each maximum (default: the unit's measured receptive field)")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding images (default: up to 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``featvis topk`` from parsed arguments; 0 on success. A user error raises
    :class:`~featvis.errors.UsageError` (``featvis.cli.main`` prints it, status 2)."""
    from ..models import pick_device
    from ..models.listing import probe_layer
    from ..models.open import open_model

    check_arguments(k=args.k, size=args.size, batch=args.batch, crop=args.crop, workers=args.workers)
    find_images(args.images)
    folder = RenderFolder(args.out)
    folder.check_writable()
    device = pick_device(args.device or "auto")
    model = open_model(args.model, args.weights, device)
    shape = probe_layer(model, args.layer, args.size, device)
    _channel_list(args.channels, shape[0])
    folder.check_writable([args.layer])
    from ..jobs.folder.records import made_by_net
    folder.check_made_by(made_by_net(args.model, model, args.weights), f"the top-k examples of {args.layer}")
    with folder.lock(MAIN):
        result = topk(model, args.layer, args.images, channels=args.channels, k=args.k, size=args.size,
                      batch=args.batch, device=device, progress=not args.quiet, workers=args.workers,
                      crop=args.crop)
        manifest = write_topk(result, folder, model_name=args.model, weights=args.weights)
    n_read = len(result.paths) - len(result.skipped)
    print(f"{n_read} images read, {len(result.skipped)} skipped; top {args.k} of {len(result.channels)} channel(s) "
          f"of {args.layer} -> {manifest}")
    return 0
