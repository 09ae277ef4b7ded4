"""``featvis atlas MODEL LAYER --images PHOTOS --out atlas.png|pdf|svg``: an activation atlas.

After Carter et al., "Activation Atlas" (Distill, 2019):

1. **Points** (:func:`collect_points`): each photo (resized and centre-cropped to ``photo_size``)
   goes through the model once; at ``per_image`` random positions of ``layer``'s map the
   activation vector (C,) is kept, with its photo and position. With ``classes`` the same pass
   also keeps each point's attribution to those class logits: activation x gradient of the logit
   at that position, summed over channels (the linear estimate of what the vector adds to the
   logit, the article's "focusing on a single classification").
2. **Layout** (:func:`layout`): the vectors reduced to 2-D with UMAP (cosine metric, as the article;
   ``pip install featvis[atlas]``), or with PCA (no extra; quick, for tests and previews), scaled to
   the unit square (the 0.5th and 99.5th percentiles of each axis to 0 and 1, outliers clipped).
3. **Cells** (:func:`grid_cells`): a ``grid`` x ``grid`` grid over the square; every cell with at
   least ``min_points`` points gets their mean vector (weighted by attribution in a class atlas,
   where only points that add to the class count) and a weight (the count, or the summed
   attribution).
4. **Renders** (:func:`render_cells`): each cell's mean vector rendered with the direction objective
   (:func:`featvis.objectives.direction`, cosine-weighted), all cells as one list of batches
   (``batch`` images each; a cell's seed derives from ``seed`` and its position, so the pictures
   do not depend on ``batch``).
5. **Assembly** (:mod:`featvis.figures.atlas`): the renders on the grid, opacity by weight; the
   figure through matplotlib.

Points and layout are cached (``cache=FILE.npz``, numpy arrays only, read with
``allow_pickle=False`` and checked): another ``grid``, ``size``, ``steps`` or class reuses them, and
only a missing class's attributions cost one more pass over the photos.

``--record DIR`` puts the atlas into a render folder (``DIR/<layer>/atlas/``: the cells' renders,
the assembled atlas, the cache) with an ``atlas`` record per layer, which ``featvis site`` shows
as an atlas page whose cells link to the pages of the units nearest each cell's direction.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UsageError, device_argument, weights_argument

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from PIL import Image

INSTALL = "pip install featvis[atlas]"
#: Largest grid side: 64 x 64 = 4,096 renders, already hours of CPU at the default steps.
MAX_GRID = 64
#: UMAP needs more points than its neighbourhood (15 by default).
MIN_POINTS_TOTAL = 16
#: Largest atlas image side in pixels (grid x cell size).
MAX_ATLAS_PX = 16384
#: Largest cache file read back (bytes): 1,000,000 points of 512 floats are 2 GB.
MAX_CACHE_BYTES = 4 << 30
CACHE_VERSION = 1
METHODS = ("umap", "pca")


# --- 1. points -----------------------------------------------------------------------------------------

@dataclass
class Points:
    """Activation vectors at random positions of many photos (see the module doc, step 1)."""

    key: dict  # what they were made from: model, weights, layer, photo_size, per_image, seed, photos digest
    photos: List[str]  # the photos' names (relative to the folder given)
    acts: np.ndarray  # (N, C) float32
    photo: np.ndarray  # (N,) int32: index into photos
    position: np.ndarray  # (N, 2) int32: (row, column) on the layer's map
    attributions: Dict[int, np.ndarray] = field(default_factory=dict)  # class -> (N,) float32
    coords: Optional[np.ndarray] = None  # (N, 2) float32 in [0, 1]: x, y of the layout
    layout_key: Optional[dict] = None  # method and parameters of coords

    def __len__(self):
        return len(self.acts)


def _photos_digest(paths: Sequence[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{_name(p, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _name(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.name


def points_key(model, layer: str, paths: Sequence[Path], root: Path, photo_size: int, per_image: int,
               seed: int) -> dict:
    """What a cache must match to be reused for these points."""
    from ..models.weights import weights_digest
    return {"model": str(getattr(model, "name", type(model).__name__)), "weights": weights_digest(model),
            "layer": layer, "photo_size": int(photo_size), "per_image": int(per_image), "seed": int(seed),
            "photos": _photos_digest(paths, root), "n_photos": len(paths)}


def _positions(seed: int, index: int, h: int, w: int, k: int) -> np.ndarray:
    """``k`` distinct (row, col) of an h x w map for photo ``index``: its own generator, so a photo's
    positions do not depend on the others."""
    from ..rng import derive_seed
    rng = np.random.default_rng(derive_seed(seed, index))
    flat = rng.choice(h * w, size=min(k, h * w), replace=False)
    return np.stack([flat // w, flat % w], 1).astype(np.int32)


def _load_batches(paths: Sequence[Path], size: int, batch: int, progress: bool, what: str):
    from tqdm.auto import tqdm

    from .topk import _batches
    with tqdm(total=len(paths), unit="photo", desc=what, disable=not progress, leave=False) as bar:
        for indices, images, errors in _batches(paths, size, batch, workers=2):
            for i, err in errors:
                tqdm.write(f"featvis atlas: {paths[i]} skipped ({err})", file=sys.stderr)
            if images is not None:
                yield indices, images
            bar.update(len(indices) + len(errors))


def layer_gradients(model, layer: str, images, classes: Sequence[int]):
    """``layer``'s activations (B, C, H, W) for ``images`` and, per class c, the gradient of logit c
    with respect to them, ``{c: (B, C, H, W)}``: one forward, one backward per class. (A zero
    tensor added to the layer's output is the handle: its gradient is the output's.)"""
    import torch

    from ..hooks import _first_tensor, resolve
    module = resolve(model, [layer])[layer]
    seen = {}

    def hook(mod, inputs, output):
        if "a" in seen:  # a module called twice per forward: its first call, as capture() takes it
            return None
        out = _first_tensor(output, layer)
        seen["a"] = out.detach().clone()
        seen["probe"] = torch.zeros_like(out, requires_grad=True)
        plus = out + seen["probe"]
        return plus if isinstance(output, torch.Tensor) else type(output)([plus, *output[1:]])

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(images)
            grads = {}
            for j, c in enumerate(classes):
                (g,) = torch.autograd.grad(logits[:, c].sum(), seen["probe"], retain_graph=j + 1 < len(classes))
                grads[c] = g.detach()
    finally:
        handle.remove()
    return seen["a"], grads


def _attribution_pass(model, layer: str, images, classes: Sequence[int]):
    """Activations (B, C, H, W) of ``layer`` and, per class, activation x d logit / d activation,
    summed over channels: (B, H, W)."""
    a, grads = layer_gradients(model, layer, images, classes)
    return a, {c: (a * g).sum(1) for c, g in grads.items()}


def collect_points(model, layer: str, images, photo_size: int = 224, per_image: int = 8, classes: Sequence[int] = (),
                   seed: int = 0, batch: int = 32, device=None, progress: bool = True,
                   only_attributions: Optional[Points] = None) -> Points:
    """Activation vectors of ``layer`` at ``per_image`` random positions of every photo under
    ``images`` (a folder, any depth; unreadable files are reported and skipped), and their
    attributions to ``classes``. ``only_attributions``: points made before from the same photos,
    to which the attributions to ``classes`` are added (their vectors are kept)."""
    import torch

    from ..models import pick_device
    from ..models.state import frozen
    from ..models.wrap import as_model
    from .topk import find_images

    root = Path(images)
    paths = find_images(root)
    model = as_model(model)
    device = pick_device(device)
    key = points_key(model, layer, paths, root, photo_size, per_image, seed)
    classes = [int(c) for c in classes]
    acts_rows, photo_rows, pos_rows = [], [], []
    attr_rows: Dict[int, list] = {c: [] for c in classes}
    base = only_attributions
    where = {}
    if base is not None:
        for n, (i, (r, c)) in enumerate(zip(base.photo.tolist(), base.position.tolist())):
            where.setdefault(i, []).append((n, r, c))
    with frozen(model, device), torch.no_grad():
        what = "atlas: attributions" if base is not None else "atlas: activations"
        for indices, x in _load_batches(paths, photo_size, batch, progress, what):
            x = x.to(device)
            if classes:
                a, attr = _attribution_pass(model, layer, x, classes)
            else:
                from ..hooks import capture
                with capture(model, [layer]) as run:
                    a, attr = run(x)[layer], {}
            if a.dim() != 4:
                raise UsageError(f"layer {layer!r} gives shape {tuple(a.shape[1:])}, no spatial map; an atlas needs "
                                 "a convolutional layer (C, H, W) (see: featvis layers MODEL)")
            H, W = a.shape[2:]
            for j, i in enumerate(indices):
                if base is not None:
                    got = where.get(i, [])
                    pos = np.array([(r, c) for _, r, c in got], np.int32).reshape(-1, 2)
                else:
                    pos = _positions(seed, i, H, W, per_image)
                rows, cols = torch.as_tensor(pos[:, 0], dtype=torch.long), torch.as_tensor(pos[:, 1], dtype=torch.long)
                if base is None:
                    acts_rows.append(a[j][:, rows, cols].T.float().cpu().numpy())  # (k, C)
                    photo_rows.append(np.full(len(pos), i, np.int32))
                    pos_rows.append(pos)
                else:
                    photo_rows.append(np.array([n for n, _, _ in got], np.int64))
                for c in classes:
                    attr_rows[c].append(attr[c][j][rows, cols].float().cpu().numpy())
    if base is not None:
        order = np.concatenate(photo_rows) if photo_rows else np.zeros(0, np.int64)
        for c in classes:
            values = np.zeros(len(base), np.float32)
            if order.size:
                values[order] = np.concatenate(attr_rows[c])
            base.attributions[c] = values
        return base
    if not acts_rows:
        raise UsageError(f"--images {images}: none of its photos could be read; give a folder of .jpg/.png photos")
    pts = Points(key, [_name(p, root) for p in paths], np.concatenate(acts_rows).astype(np.float32),
                 np.concatenate(photo_rows), np.concatenate(pos_rows))
    for c in classes:
        pts.attributions[c] = np.concatenate(attr_rows[c]).astype(np.float32)
    return pts


# --- the cache -----------------------------------------------------------------------------------------

def save_points(points: Points, path, write=None) -> Path:
    """Write ``points`` (with their layout, if any) to ``path`` (.npz of plain arrays, atomically).
    ``write``: a function ``(path, writer)`` that writes a file atomically (a render folder's
    ``write_file``); default :func:`featvis.io.atomic_write`."""
    from ..io import atomic_write
    meta = {"version": CACHE_VERSION, "key": points.key, "photos": points.photos, "layout": points.layout_key,
            "classes": sorted(points.attributions)}
    arrays = {"meta": np.array(json.dumps(meta)), "acts": points.acts, "photo": points.photo,
              "position": points.position}
    if points.coords is not None:
        arrays["coords"] = points.coords.astype(np.float32)
    for c, v in points.attributions.items():
        arrays[f"attr_{c}"] = v.astype(np.float32)

    def writer(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return (write or atomic_write)(path, writer)


def load_points(path) -> Optional[Points]:
    """The points cached in ``path``, checked (shapes, types, finite values, bounded size), or
    ``None`` if there is no such file. A file that is not a featvis atlas cache is a
    :class:`UsageError` naming it."""
    path = Path(path)
    if not path.exists():
        return None
    bad = f"--cache {path} is not a featvis atlas cache"
    fix = "; remove it or give another --cache"
    if not path.is_file() or path.stat().st_size > MAX_CACHE_BYTES:
        raise UsageError(f"{bad} (not a regular file of at most {MAX_CACHE_BYTES >> 30} GB){fix}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data["meta"]))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"version {meta.get('version')!r}")
        acts, photo, position = data["acts"], data["photo"], data["position"]
        n = len(acts)
        photos = [str(p) for p in meta["photos"]]
        ok = (acts.ndim == 2 and acts.dtype == np.float32 and photo.shape == (n,) and position.shape == (n, 2)
              and np.issubdtype(photo.dtype, np.integer) and np.issubdtype(position.dtype, np.integer)
              and np.isfinite(acts).all() and (n == 0 or (photo.min() >= 0 and photo.max() < len(photos))))
        if not ok:
            raise ValueError("arrays of the wrong shape, type or range")
        attributions = {}
        for c in meta.get("classes", []):
            v = data[f"attr_{int(c)}"]
            if v.shape != (n,) or not np.isfinite(v).all():
                raise ValueError(f"attributions to class {c}")
            attributions[int(c)] = v.astype(np.float32)
        coords = data.get("coords")
        if coords is not None and (coords.shape != (n, 2) or not np.isfinite(coords).all()):
            raise ValueError("coords")
        return Points(dict(meta["key"]), photos, acts, photo.astype(np.int32), position.astype(np.int32), attributions,
                      None if coords is None else coords.astype(np.float32),
                      dict(meta["layout"]) if meta.get("layout") else None)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever is wrong with an untrusted file, say so in one line
        raise UsageError(f"{bad} ({type(e).__name__}: {str(e)[:120]}){fix}") from None


# --- 2. layout -----------------------------------------------------------------------------------------

def layout(points: Points, method: str = "umap", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> Points:
    """Give ``points`` 2-D coordinates in [0, 1] (``points.coords``), by UMAP (cosine metric) or PCA;
    reuses coordinates already there when they were made the same way. Returns ``points``."""
    if method not in METHODS:
        raise UsageError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    key = {"method": method, "seed": int(seed)}
    if method == "umap":
        key.update(n_neighbors=int(n_neighbors), min_dist=float(min_dist))
    if points.coords is not None and points.layout_key == key:
        return points
    x = points.acts.astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UsageError(f"the atlas layout needs umap-learn, which is not installed; {INSTALL} "
                             "(or --method pca for a quick PCA layout)") from None
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": the seed wins, as asked
            xy = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist,
                           metric="cosine", random_state=int(seed), transform_seed=int(seed)).fit_transform(x)
    else:
        centred = x - x.mean(0, keepdims=True)
        _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        xy = centred @ vt[:2].T.astype(np.float32)
        xy *= np.where(np.sign(vt[:2].sum(1)) < 0, -1, 1)  # a fixed orientation, whatever the SVD's signs
    xy = np.asarray(xy, np.float64)
    lo, hi = np.percentile(xy, 0.5, axis=0), np.percentile(xy, 99.5, axis=0)
    points.coords = np.clip((xy - lo) / np.maximum(hi - lo, 1e-12), 0, 1).astype(np.float32)
    points.layout_key = key
    return points


# --- 3. cells ------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One grid cell: column ``x``, row ``y`` (0 at the top), its points' (weighted) mean vector."""

    x: int
    y: int
    n: int  # points in the cell (in a class atlas: points that add to the class)
    weight: float  # n, or the summed positive attribution to the class
    vector: np.ndarray  # (C,)
    members: np.ndarray  # indices into the points

    def nearest_units(self, k: int = 3, scale: Optional[np.ndarray] = None) -> List[int]:
        """The ``k`` channels with the largest entries of the cell's direction (the units whose
        one-hot direction is closest to it in cosine); with ``scale`` (C,), e.g. each channel's
        mean over all points, the entries are divided by it first: the channels this cell has most
        of, compared with the photos at large (else the loudest channels win every cell)."""
        v = self.vector if scale is None else self.vector / np.maximum(scale, 1e-8)
        return [int(c) for c in np.argsort(-v, kind="stable")[:k]]


def cell_index(coords: np.ndarray, grid: int) -> Tuple[np.ndarray, np.ndarray]:
    """(column, row) of each point's cell; row 0 at the top (large y)."""
    col = np.minimum((coords[:, 0] * grid).astype(np.int64), grid - 1)
    row = np.minimum(((1 - coords[:, 1]) * grid).astype(np.int64), grid - 1)
    return col, row


def grid_cells(points: Points, grid: int, min_points: int = 3, cls: Optional[int] = None,
               min_share: float = 0.01) -> List[Cell]:
    """The cells of a ``grid`` x ``grid`` grid over ``points.coords`` that hold at least
    ``min_points`` points, in row-major order. With ``cls``, points are weighted by their positive
    attribution to class ``cls`` (those that do not add to it are left out), and cells lighter than
    ``min_share`` of the heaviest are dropped."""
    if points.coords is None:
        raise ValueError("grid_cells needs points with a layout; call layout(points) first")
    col, row = cell_index(points.coords, grid)
    if cls is None:
        w = np.ones(len(points), np.float64)
    else:
        if cls not in points.attributions:
            raise ValueError(f"the points hold no attributions to class {cls}; collect them with classes=[{cls}]")
        w = np.clip(points.attributions[cls].astype(np.float64), 0, None)
    flat = row * grid + col
    cells = []
    for f in np.unique(flat[w > 0]):
        members = np.nonzero((flat == f) & (w > 0))[0]
        if len(members) < min_points:
            continue
        ww = w[members]
        vector = (points.acts[members].astype(np.float64) * ww[:, None]).sum(0) / ww.sum()
        cells.append(Cell(int(f % grid), int(f // grid), len(members), float(ww.sum()), vector.astype(np.float32),
                          members))
    if cls is not None and cells:
        top = max(c.weight for c in cells)
        cells = [c for c in cells if c.weight >= min_share * top]
    return cells


# --- 4. renders ----------------------------------------------------------------------------------------

def cell_seed(seed: int, grid: int, cell: Cell) -> int:
    """A cell's render seed: from the run's seed, the grid and the cell's place (not the batch)."""
    from ..rng import derive_seed
    return derive_seed(seed, grid, cell.y, cell.x)


def render_cells(model, layer: str, cells: Sequence[Cell], grid: int, size: int = 128, steps: int = 256,
                 cossim_pow: float = 2.0, seed: int = 0, batch: int = 32, device=None, progress: bool = True,
                 lr: Optional[float] = None) -> "torch.Tensor":
    """Each cell's mean vector rendered with the direction objective (image i follows cell i), in
    batches of ``batch``; (n, 3, size, size) in [0, 1]."""
    import torch
    from tqdm.auto import tqdm

    from ..objectives import direction
    from ..param import fourier
    from ..render import render

    out = []
    with tqdm(total=len(cells), unit="cell", desc="atlas: rendering", disable=not progress, leave=False) as bar:
        for start in range(0, len(cells), batch):
            chunk = cells[start:start + batch]
            vectors = torch.as_tensor(np.stack([c.vector for c in chunk]))
            obj = direction(layer, vectors, cossim_pow=cossim_pow)
            result = render(model, obj, param=fourier(size, batch=len(chunk)), steps=steps, lr=lr,
                            seed=[cell_seed(seed, grid, c) for c in chunk], device=device, progress=False)
            out.append(result.images)
            bar.update(len(chunk))
    return torch.cat(out) if out else torch.zeros(0, 3, size, size)


def direction_scores(model, layer: str, images: "torch.Tensor", vectors: np.ndarray, device=None,
                     centre: Optional[np.ndarray] = None) -> np.ndarray:
    """``M[i, j]``: the cosine between render i's spatially averaged activation of ``layer`` and
    direction j (the rows of ``vectors``), both measured from ``centre`` (C,) if given (e.g. the
    mean of all points: neighbouring cells' raw means point almost the same way, and what tells
    them apart is how they differ from the average). An atlas is faithful cell by cell when each
    render points more to its own cell's direction than to its neighbours' (a strong diagonal)."""
    import torch

    from ..models import pick_device
    from ..models.listing import activations
    from ..models.state import frozen
    device = pick_device(device)
    with frozen(model, device):
        a = activations(model, images.to(device), [layer])[layer].float().flatten(2).mean(2).cpu()  # (n, C)
    v = torch.as_tensor(vectors, dtype=torch.float32)
    if centre is not None:
        c = torch.as_tensor(centre, dtype=torch.float32)
        a, v = a - c, v - c
    a = a / a.norm(dim=1, keepdim=True).clamp(min=1e-8)
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)
    return (a @ v.T).numpy()


def neighbour_diagonal(cells: Sequence[Cell], scores: np.ndarray, by: str = "direction") -> Tuple[float, float]:
    """The diagonal of ``scores`` (:func:`direction_scores`) against the grid neighbours
    (8-neighbourhood) of each cell that has rendered ones. ``by="direction"``: does cell j's
    render score direction j higher than the neighbours' renders do (``M[j, j]`` against
    ``M[i, j]``)? ``by="render"``: does render i score its own direction higher than the
    neighbours' directions (``M[i, i]`` against ``M[i, j]``)? Returns ``(share, margin)``: how
    often the own score beats the neighbours' mean, and the mean of own minus that mean."""
    where = {(c.x, c.y): i for i, c in enumerate(cells)}
    wins, margins = [], []
    for i, c in enumerate(cells):
        nb = [where[(c.x + dx, c.y + dy)] for dx in (-1, 0, 1) for dy in (-1, 0, 1)
              if (dx or dy) and (c.x + dx, c.y + dy) in where]
        if nb:
            others = np.mean([scores[j, i] if by == "direction" else scores[i, j] for j in nb])
            wins.append(scores[i, i] > others)
            margins.append(scores[i, i] - others)
    if not wins:
        return float("nan"), float("nan")
    return float(np.mean(wins)), float(np.mean(margins))


# --- the whole atlas -----------------------------------------------------------------------------------

@dataclass
class Atlas:
    """An activation atlas: its points (with layout), cells, the cells' renders, and the
    assembled image (see :func:`atlas`)."""

    model: str
    layer: str
    grid: int
    points: Points
    cells: List[Cell]
    renders: "torch.Tensor"  # (len(cells), 3, S, S)
    cls: Optional[int] = None
    class_name: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)  # seconds: activations, layout, rendering
    settings: dict = field(default_factory=dict)

    def image(self, cell_px: Optional[int] = None) -> "Image.Image":
        """The atlas as one RGB image: renders on the grid, opacity by weight."""
        from ..figures.atlas import compose
        px = cell_px or int(self.renders.shape[-1])
        return compose(list(self.renders), [(c.x, c.y) for c in self.cells], [c.weight for c in self.cells],
                       self.grid, px)

    @property
    def title(self) -> str:
        what = f"class {self.cls}" + (f" ({self.class_name})" if self.class_name else "") if self.cls is not None else None
        photos = len(self.points.photos)
        return (f"{self.model} {self.layer}: activation atlas" + (f" for {what}" if what else "")
                + f"\n{len(self.points)} positions of {photos} photos, {len(self.cells)} cells")

    def figure(self, title: Optional[str] = None, size_in: float = 7.0) -> "Figure":
        """The atlas as a matplotlib ``Figure`` (title, opacity colour bar), for the author to adjust."""
        from ..figures.atlas import atlas_figure
        label = "positive attribution to the class" if self.cls is not None else "photo positions per cell"
        return atlas_figure(self.image(), [c.weight for c in self.cells], self.grid,
                            title=self.title if title is None else title, weight_label=label, size_in=size_in,
                            method=str(self.settings.get("method", "umap")).upper())

    def save(self, out, dpi: Optional[float] = None) -> Path:
        """Write the atlas figure as .png, .pdf or .svg."""
        from ..figures.mpl import save
        return save(self.figure(), out, dpi=dpi)


def check_grid(grid: int, n_points: int, min_points: int, size: int = 128, cell_px: Optional[int] = None) -> None:
    """The usage errors of a grid: too fine, or too fine for the points there are."""
    if not 2 <= grid <= MAX_GRID:
        raise UsageError(f"--grid {grid}: too {'fine' if grid > MAX_GRID else 'coarse'}; give 2 to {MAX_GRID} cells a side "
                         f"({MAX_GRID}x{MAX_GRID} is {MAX_GRID ** 2} renders)")
    if (cell_px or size) * grid > MAX_ATLAS_PX:
        raise UsageError(f"--grid {grid} at {cell_px or size} px a cell is a {grid * (cell_px or size)} px image; "
                         f"keep it under {MAX_ATLAS_PX} px (a coarser --grid or a smaller --size)")
    if min_points < 1:
        raise UsageError(f"--min-points {min_points}: must be at least 1")
    need = max(grid * grid, MIN_POINTS_TOTAL)
    if n_points < need:
        raise UsageError(f"too few photos for a {grid}x{grid} grid: {n_points} positions, at least {need} needed "
                         "(one per cell on average); give more photos, more --per-image positions, or a coarser --grid")


def _cached_points(model, layer, images, photo_size, per_image, classes, seed, batch, device, progress, cache,
                   write=None) -> Points:
    from .topk import find_images
    root = Path(images)
    paths = find_images(root)
    key = points_key(model, layer, paths, root, photo_size, per_image, seed)
    pts = load_points(cache) if cache is not None else None
    if pts is not None and pts.key != key:
        print(f"featvis atlas: {cache} was made from other photos or settings; computing the points again",
              file=sys.stderr)
        pts = None
    dirty = False
    if pts is None:
        pts = collect_points(model, layer, images, photo_size, per_image, classes, seed, batch, device, progress)
        dirty = True
    missing = [c for c in classes if c not in pts.attributions]
    if missing:
        collect_points(model, layer, images, photo_size, per_image, missing, seed, batch, device, progress,
                       only_attributions=pts)
        dirty = True
    pts._dirty = dirty
    return pts


def atlas(model, layer: str, images, grid: int = 20, size: int = 128, steps: int = 256, per_image: int = 8,
          photo_size: int = 224, min_points: int = 3, cls: Optional[int] = None, method: str = "umap",
          cossim_pow: float = 2.0, cache=None, seed: int = 0, batch: int = 32, device=None, progress: bool = True,
          class_name: Optional[str] = None, write=None) -> Atlas:
    """The activation atlas of ``layer`` over the photos under ``images`` (see the module doc).

    ``grid`` cells a side; every cell with ``min_points`` points rendered at ``size`` px for
    ``steps`` steps. ``cls``: a class-filtered atlas (points weighted by their attribution to
    that logit). ``cache``: a ``.npz`` file for the points and their layout, read when it matches
    and (re)written when something was computed. Returns an :class:`Atlas`; ``.figure()`` is a
    matplotlib figure, ``.save("atlas.pdf")`` writes it.
    """
    import time

    from ..models import pick_device
    from ..models.wrap import as_model

    model = as_model(model)
    device = pick_device(device)
    t0 = time.perf_counter()
    pts = _cached_points(model, layer, images, photo_size, per_image, [cls] if cls is not None else [], seed, batch,
                         device, progress, cache, write)
    t1 = time.perf_counter()
    check_grid(grid, len(pts), min_points, size)
    before = pts.layout_key
    layout(pts, method, seed)
    t2 = time.perf_counter()
    if cache is not None and (pts._dirty or pts.layout_key != before):
        save_points(pts, cache, write)
    cells = grid_cells(pts, grid, min_points, cls)
    if not cells:
        raise UsageError(f"no cell of the {grid}x{grid} grid holds {min_points} points"
                         + (f" that add to class {cls}" if cls is not None else "")
                         + "; give a coarser --grid, a lower --min-points, or more photos")
    renders = render_cells(model, layer, cells, grid, size, steps, cossim_pow, seed, batch, device, progress)
    t3 = time.perf_counter()
    name = str(getattr(model, "name", type(model).__name__))
    settings = {"grid": grid, "size": size, "steps": steps, "per_image": per_image, "photo_size": photo_size,
                "min_points": min_points, "method": method, "cossim_pow": cossim_pow, "seed": seed}
    return Atlas(name, layer, grid, pts, cells, renders, cls, class_name,
                 {"activations": t1 - t0, "layout": t2 - t1, "rendering": t3 - t2}, settings)


# --- into a render folder ------------------------------------------------------------------------------

def atlas_dir(layer: str) -> str:
    """Where an atlas's files go in a render folder, relative to it."""
    return f"{layer}/atlas"


def record_atlas(folder, result: Atlas, images_given: str, weights: Optional[dict] = None) -> dict:
    """Write the atlas's cell renders and assembled image into ``folder`` (a RenderFolder whose
    writer lock the caller holds) under ``<layer>/atlas/``, and its ``atlas`` record; returns the
    record."""
    base = atlas_dir(result.layer)
    scale = np.abs(result.points.acts).mean(0)
    cells = []
    for c, im in zip(result.cells, result.renders):
        rel = f"{base}/cells/{c.y}_{c.x}.png"
        folder.save_image(rel, im)
        cells.append({"x": c.x, "y": c.y, "n": c.n, "weight": c.weight, "units": c.nearest_units(3, scale), "file": rel})
    image_rel = f"{base}/atlas.png"
    folder.save_image(image_rel, result.image())
    record = {"model": result.model, "weights": weights, "images": images_given, "photos": len(result.points.photos),
              "points": len(result.points), "class": result.cls, "class_name": result.class_name,
              "image": image_rel, "cells": cells, **result.settings}
    folder.record_atlas(result.layer, record)
    return record


# --- the command line ----------------------------------------------------------------------------------

EPILOG = """\
The photos' activations at --per-image random positions each are laid out in 2-D by UMAP, a grid
goes over the layout, and each cell with --min-points points is rendered from its mean activation
vector (direction objective, all cells in batches). Opacity shows how many points fell into a cell
(with --class: their summed attribution to the class logit, activation x gradient).
--cache FILE.npz keeps the points and their layout: another --grid, --size, --steps or --class
reuses them (a new --class costs one more pass over the photos, for its attributions).

examples:
  featvis atlas inceptionv1 mixed4c --images ~/imagenet/val --out atlas.pdf --cache mixed4c.npz
  featvis atlas inceptionv1 mixed4c --images ~/imagenet/val --class 5 --out atlas_5.png --cache mixed4c.npz
  featvis atlas toy conv2 --images photos --grid 4 --steps 32 --size 32 --method pca --out toy_atlas.svg
"""


def add_arguments(parser) -> None:
    """Arguments of ``featvis atlas``."""
    parser.epilog = EPILOG
    parser.add_argument("model", help="a model name (see: featvis models)")
    parser.add_argument("layer", help="a convolutional layer (see: featvis layers MODEL)")
    parser.add_argument("--images", required=True, metavar="DIR", help="a folder of photos (.jpg/.png, any depth)")
    parser.add_argument("--out", metavar="FILE", help="the atlas figure: FILE.png, FILE.pdf or FILE.svg")
    parser.add_argument("--record", metavar="DIR",
                        help="also write the atlas into a render folder (for featvis site); its cache goes there too")
    parser.add_argument("--grid", type=int, default=20, help="cells a side (default: 20)")
    parser.add_argument("--size", type=int, default=128, help="render size of a cell in pixels (default: 128)")
    parser.add_argument("--steps", type=int, default=256, help="optimization steps per cell (default: 256)")
    parser.add_argument("--per-image", type=int, default=8, metavar="K",
                        help="random positions of the layer's map taken from each photo (default: 8)")
    parser.add_argument("--photo-size", type=int, default=224, metavar="PX",
                        help="photos are resized and centre-cropped to PX (default: 224)")
    parser.add_argument("--min-points", type=int, default=3, help="points a cell needs to be drawn (default: 3)")
    parser.add_argument("--class", dest="cls", type=int, default=None, metavar="N",
                        help="a class-filtered atlas: points weighted by their attribution to logit N")
    parser.add_argument("--method", choices=METHODS, default="umap",
                        help="the 2-D layout: umap (default; pip install featvis[atlas]) or pca (quick preview)")
    parser.add_argument("--cossim-pow", type=float, default=2.0,
                        help="cosine weight of the direction objective (default: 2)")
    parser.add_argument("--cache", metavar="FILE.npz",
                        help="keep the points and layout here and reuse them (default with --record: in DIR)")
    parser.add_argument("--batch", type=int, default=32, help="cells per batched render, and photos per forward (default: 32)")
    weights_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="positions, layout and render seeds derive from it (default: 0)")
    parser.add_argument("--dpi", type=float, default=150, help="resolution of a PNG, and of the raster in a PDF/SVG (default: 150)")
    device_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _check(args):
    from ..figures.mpl import check_out
    if args.out is None and args.record is None:
        raise UsageError("nothing to write: give --out FILE.png|FILE.pdf|FILE.svg, --record DIR, or both")
    if args.out is not None:
        check_out(args.out)
    for name, value, low in (("--size", args.size, 8), ("--steps", args.steps, 1), ("--per-image", args.per_image, 1),
                             ("--photo-size", args.photo_size, 8), ("--batch", args.batch, 1)):
        if value < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if args.cache is not None and Path(args.cache).suffix != ".npz":
        raise UsageError(f"--cache {args.cache}: the cache is a .npz file; end the name with .npz")
    if args.record is not None and Path(args.record).exists() and not Path(args.record).is_dir():
        raise UsageError(f"--record {args.record}: exists and is not a folder; give a render folder")
    if args.method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise UsageError(f"the atlas layout needs umap-learn, which is not installed; {INSTALL} "
                             "(or --method pca)") from None
    if args.out is not None:
        from ..figures.mpl import pyplot_free
        pyplot_free()


def run(args) -> int:
    """Run ``featvis atlas`` from parsed arguments; 0 on success (usage errors raise UsageError)."""
    from ..models import pick_device
    from ..models.listing import probe_layer, probe_spatial
    from ..models.open import open_model
    from .topk import find_images

    _check(args)
    paths = find_images(args.images)
    # a first check of the grid before any work, from the number of photos (what a cell can hold)
    check_grid(args.grid, len(paths) * args.per_image, args.min_points, args.size)
    device = pick_device(None if args.device == "auto" else args.device)
    model = open_model(args.model, args.weights, device, seed=args.seed)
    shape = probe_spatial(model, args.layer, args.photo_size, device, "an atlas needs", args.model)
    H, W = shape[1:]
    check_grid(args.grid, len(paths) * min(args.per_image, H * W), args.min_points, args.size)
    if args.cls is not None:
        n_logits = probe_layer(model, "logits", args.photo_size, device)[0]
        if not 0 <= args.cls < n_logits:
            raise UsageError(f"--class {args.cls}: {args.model} has logits 0..{n_logits - 1}")
    folder = None
    cache = args.cache
    if args.record is not None:
        from ..jobs.folder import RenderFolder
        folder = RenderFolder(args.record)
        folder.check_writable([args.layer])
    progress = not args.quiet

    def go(write=None):
        return atlas(model, args.layer, args.images, grid=args.grid, size=args.size, steps=args.steps,
                     per_image=args.per_image, photo_size=args.photo_size, min_points=args.min_points, cls=args.cls,
                     method=args.method, cossim_pow=args.cossim_pow, cache=cache, seed=args.seed, batch=args.batch,
                     device=device, progress=progress, write=write)

    if folder is not None:
        from ..jobs.folder import MAIN
        from ..models.weights import weights_digest
        with folder.lock(MAIN):
            if cache is None:
                rel = f"{atlas_dir(args.layer)}/points.npz"
                cache = folder.path(rel)
                result = go(write=lambda path, w: folder.write_file(rel, w))
            else:
                result = go()
            record_atlas(folder, result, str(args.images), {"spec": args.weights, "sha256": weights_digest(model)})
        print(f"recorded the atlas of {args.layer} ({len(result.cells)} cells) in {folder.root}")
    else:
        result = go()
    if args.out is not None:
        result.save(args.out, dpi=args.dpi)
        print(f"wrote {args.out} ({len(result.cells)} cells of {args.grid}x{args.grid}; {len(result.points)} positions "
              f"of {len(result.points.photos)} photos)")
    t = result.timings
    print(f"seconds: activations {t['activations']:.1f}, layout {t['layout']:.1f}, rendering {t['rendering']:.1f}",
          file=sys.stderr)
    return 0
