"""``featvis blocks MODEL IMAGE --layer L --groups 6 --out fig.pdf``: building blocks of one photo.

After Olah et al., "The Building Blocks of Interpretability" (Distill, 2018):

- **Neuron groups** (:func:`factorize`): the photo's activations at ``layer``, a (C, H, W) map, as
  an (H W, C) matrix factorized with non-negative matrix factorization (scikit-learn's NMF,
  ``pip install featvis[atlas]``): ``A ~ maps @ groups``, ``groups`` (k, C) channel mixtures (each of
  norm 1), ``maps`` (k, H, W) where each group is on the photo. The relative reconstruction error
  ``|A - maps @ groups| / |A|`` (Frobenius) is reported: how much of the layer the k groups say.
  NMF needs non-negative activations: a layer after a ReLU; negative values are clipped to 0 (and
  the share of the layer's norm that was clipped is reported).
- **Renders**: each group's channel mixture rendered with the direction objective, all in one batch.
- **Attribution** to the photo's top classes: gradient x activation, split over the groups:
  ``attr[g, c] = sum_p maps[g, p] * (groups[g] . d logit_c / d A[:, p])``, the linear estimate of
  what group g adds to logit c.
- **Figure** (:mod:`featvis.figures.blocks`, matplotlib): the photo, where each group is (in its
  colour), the groups' renders and spatial maps, and attribution bars per class.
- **Semantic dictionary** (:func:`semantic_dictionary`): for the photo's strongest positions, the
  channels that fire most there, rendered, with their activations.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np

from ..errors import UsageError, device_argument, weights_argument

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

INSTALL = "pip install featvis[atlas]"


@dataclass
class Factors:
    """An NMF of a (C, H, W) activation map (see :func:`factorize`)."""

    groups: np.ndarray  # (k, C), each of unit norm, largest contribution first
    maps: np.ndarray  # (k, H, W), non-negative
    error: float  # |A - maps groups| / |A| (Frobenius), of the clipped map
    clipped: float  # share of the map's norm that was negative (clipped to 0 first)


def factorize(acts, k: int, seed: int = 0, max_iter: int = 1000) -> Factors:
    """Non-negative matrix factorization of a (C, H, W) activation map into ``k`` groups of
    channels and their spatial maps (scikit-learn's NMF, nndsvda start, seeded). Groups come
    sorted by how much of the map they make (``|maps[g]|_1 * |groups[g]|``)."""
    try:
        from sklearn.decomposition import NMF
    except ImportError:
        raise UsageError(f"building blocks need scikit-learn, which is not installed; {INSTALL}") from None
    a = np.asarray(acts.detach().cpu().numpy() if hasattr(acts, "detach") else acts, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"factorize needs a (C, H, W) map, got shape {a.shape}")
    C, H, W = a.shape
    if not 1 <= k <= min(C, H * W):
        raise UsageError(f"--groups {k}: the layer's map is {C} channels at {H}x{W} positions; give 1 to {min(C, H * W)} groups")
    norm = np.linalg.norm(a)
    clipped = float(np.linalg.norm(np.minimum(a, 0)) / norm) if norm > 0 else 0.0
    x = np.maximum(a, 0).reshape(C, H * W).T  # (HW, C)
    if not x.any():
        raise UsageError("the layer is zero everywhere on this photo (after clipping negatives); pick another layer or photo")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: the error is reported instead
        nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=max_iter, tol=1e-6)
        w = nmf.fit_transform(x)  # (HW, k)
    h = nmf.components_  # (k, C)
    scale = np.linalg.norm(h, axis=1)
    scale[scale == 0] = 1
    h, w = h / scale[:, None], w * scale[None]
    error = float(np.linalg.norm(x - w @ h) / np.linalg.norm(x))
    order = np.argsort(-w.sum(0), kind="stable")
    return Factors(h[order].astype(np.float32), w[:, order].T.reshape(k, H, W).astype(np.float32), error, clipped)


@dataclass
class Blocks:
    """The building blocks of one photo at one layer (see :func:`blocks`)."""

    model: str
    layer: str
    image: "torch.Tensor"  # (3, S, S) in [0, 1]: the photo as the model saw it
    factors: Factors
    renders: "torch.Tensor"  # (k, 3, R, R)
    classes: List[int]  # the photo's top classes, best first
    class_names: List[str]
    logits: List[float]
    attribution: np.ndarray  # (k, len(classes))
    settings: dict = field(default_factory=dict)

    def figure(self, title: Optional[str] = None) -> "Figure":
        """The article-style figure as a matplotlib ``Figure`` (see :mod:`featvis.figures.blocks`)."""
        from ..figures.blocks import blocks_figure
        if title is None:
            title = (f"{self.model} {self.layer}: {len(self.factors.groups)} neuron groups (NMF, reconstruction "
                     f"error {self.factors.error:.2f})")
        return blocks_figure(self.image, self.factors.maps, self.renders, self.attribution,
                             [f"{n}" for n in self.class_names], title=title)

    def save(self, out, dpi: Optional[float] = None) -> Path:
        from ..figures.mpl import save
        return save(self.figure(), out, dpi=dpi)


def _photo(image, size: int) -> "torch.Tensor":
    import torch

    from .topk import load_image
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.dim() == 4:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"the photo must be a (3, H, W) tensor in [0, 1], got shape {tuple(t.shape)}")
        return torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    try:
        return load_image(image, size)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the photo {image} ({type(e).__name__}: {e}); give a .jpg or .png file") from None


def _layer_map(model, layer: str, x, device):
    from ..models.listing import activations
    a = activations(model, x.to(device)[None], [layer])[layer]
    if a.dim() != 4:
        raise UsageError(f"layer {layer!r} gives shape {tuple(a.shape[1:])}, no spatial map; building blocks need "
                         "a convolutional layer (C, H, W) (see: featvis layers MODEL)")
    return a[0]


def render_directions(model, layer: str, vectors: np.ndarray, size: int, steps: int, seed: int, device,
                      progress: bool, cossim_pow: float = 1.0) -> "torch.Tensor":
    """Each row of ``vectors`` rendered with the direction objective, one batch; (k, 3, size, size)."""
    import torch

    from ..objectives import direction
    from ..param import fourier
    from ..render import render
    from ..rng import derive_seed
    obj = direction(layer, torch.as_tensor(vectors, dtype=torch.float32), cossim_pow=cossim_pow)
    return render(model, obj, param=fourier(size, batch=len(vectors)), steps=steps,
                  seed=[derive_seed(seed, i) for i in range(len(vectors))], device=device, progress=progress).images


def blocks(model, image, layer: str, groups: int = 6, size: int = 224, render_size: int = 128, steps: int = 256,
           top_classes: int = 3, labels: Optional[Sequence[str]] = None, seed: int = 0, device=None,
           progress: bool = True, cossim_pow: float = 1.0) -> Blocks:
    """The building blocks of ``image`` (a path or a (3, H, W) tensor in [0, 1], resized to
    ``size``) at ``layer``: ``groups`` NMF neuron groups, their renders (``render_size`` px,
    ``steps`` steps), spatial maps, and attribution to the ``top_classes`` top classes
    (``labels``: the class names). Returns :class:`Blocks`; ``.figure()`` is a matplotlib figure."""
    import torch

    from ..models import pick_device
    from ..models.state import frozen
    from ..models.wrap import as_model
    from .atlas import layer_gradients

    model = as_model(model)
    device = pick_device(device)
    x = _photo(image, size)
    with frozen(model, device):
        with torch.no_grad():
            a = _layer_map(model, layer, x, device)
            logits = model(x.to(device)[None])[0].float().cpu()
        factors = factorize(a.float().cpu(), groups, seed)
        if factors.clipped > 0.05:
            print(f"featvis blocks: {100 * factors.clipped:.0f}% of {layer}'s norm is negative and was clipped for NMF; "
                  "a layer after a ReLU factorizes better", file=sys.stderr)
        n = min(top_classes, logits.numel())
        classes = [int(c) for c in torch.argsort(logits, descending=True)[:n]]
        _, grads = layer_gradients(model, layer, x.to(device)[None], classes)
    attribution = np.zeros((groups, n), np.float32)
    for j, c in enumerate(classes):
        g = grads[c][0].float().cpu().numpy()  # (C, H, W)
        C = g.shape[0]
        per_pos = factors.groups @ g.reshape(C, -1)  # (k, HW): group g's direction . gradient at each position
        attribution[:, j] = (factors.maps.reshape(groups, -1) * per_pos).sum(1)
    renders = render_directions(model, layer, factors.groups, render_size, steps, seed, device, progress, cossim_pow)
    names = [labels[c] if labels is not None and c < len(labels) else f"class {c}" for c in classes]
    return Blocks(str(getattr(model, "name", type(model).__name__)), layer, x, factors, renders, classes, names,
                  [float(logits[c]) for c in classes], attribution,
                  {"groups": groups, "size": size, "render_size": render_size, "steps": steps, "seed": seed})


# --- the semantic dictionary ---------------------------------------------------------------------------

@dataclass
class Dictionary:
    """For a few positions of the photo, the channels that fire most there (see
    :func:`semantic_dictionary`)."""

    model: str
    layer: str
    image: "torch.Tensor"  # (3, S, S)
    positions: List[tuple]  # (row, col) on the layer's map, strongest first
    map_size: tuple  # (H, W)
    channels: List[List[int]]  # per position, its top channels
    values: List[List[float]]  # their activations
    renders: dict  # channel -> (3, R, R)

    def figure(self, title: Optional[str] = None) -> "Figure":
        from ..figures.blocks import dictionary_figure
        return dictionary_figure(self.image, self.positions, self.map_size, self.channels, self.values, self.renders,
                                 self.layer, title=title or f"{self.model} {self.layer}: semantic dictionary "
                                 "(each position's strongest channels)")

    def save(self, out, dpi: Optional[float] = None) -> Path:
        from ..figures.mpl import save
        return save(self.figure(), out, dpi=dpi)


def semantic_dictionary(model, image, layer: str, positions: int = 4, top: int = 4, size: int = 224,
                        render_size: int = 96, steps: int = 256, seed: int = 0, device=None,
                        progress: bool = True) -> Dictionary:
    """The photo's ``positions`` strongest positions of ``layer`` (largest activation norm, at
    least two cells apart) and, for each, its ``top`` strongest channels, each channel rendered
    once (one batch for all of them)."""
    import torch

    from ..models import pick_device
    from ..models.state import frozen
    from ..models.wrap import as_model
    from ..objectives import channel
    from ..param import fourier
    from ..render import render
    from ..rng import derive_seed

    model = as_model(model)
    device = pick_device(device)
    x = _photo(image, size)
    with frozen(model, device), torch.no_grad():
        a = _layer_map(model, layer, x, device).float().cpu()  # (C, H, W)
    C, H, W = a.shape
    strength = a.clamp(min=0).norm(dim=0)  # (H, W)
    chosen: List[tuple] = []
    for flat in torch.argsort(strength.flatten(), descending=True).tolist():
        r, c = divmod(flat, W)
        if all(max(abs(r - r2), abs(c - c2)) >= 2 for r2, c2 in chosen):
            chosen.append((r, c))
        if len(chosen) == positions:
            break
    chans, vals = [], []
    for r, c in chosen:
        v = a[:, r, c]
        idx = torch.argsort(v, descending=True)[:top].tolist()
        chans.append([int(i) for i in idx])
        vals.append([float(v[i]) for i in idx])
    need = sorted({ch for cs in chans for ch in cs})
    result = render(model, channel(layer, need), param=fourier(render_size, batch=len(need)), steps=steps,
                    seed=[derive_seed(seed, ch) for ch in need], device=device, progress=progress)
    renders = {ch: result.images[i] for i, ch in enumerate(need)}
    return Dictionary(str(getattr(model, "name", type(model).__name__)), layer, x, chosen, (H, W), chans, vals, renders)


# --- the command line ----------------------------------------------------------------------------------

EPILOG = """\
The photo's activations at --layer are factorized with NMF into --groups neuron groups; each group
is rendered (direction objective), shown where it is on the photo, and attributed to the photo's top
classes (gradient x activation). --dictionary FILE adds the semantic dictionary: the photo's
strongest positions and the channels that fire most there, rendered.

examples:
  featvis blocks inceptionv1 dog.jpg --layer mixed4d --groups 6 --out blocks.pdf
  featvis blocks resnet50 cat.png --layer layer3 --groups 4 --out blocks.svg --dictionary dictionary.svg
"""


def add_arguments(parser) -> None:
    """Arguments of ``featvis blocks``."""
    parser.epilog = EPILOG
    parser.add_argument("model", help="a model name (see: featvis models)")
    parser.add_argument("image", help="a photo (.jpg/.png)")
    parser.add_argument("--layer", required=True, help="a convolutional layer, best after a ReLU (see: featvis layers MODEL)")
    parser.add_argument("--groups", type=int, default=6, help="neuron groups (NMF components; default: 6)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the figure: FILE.png, FILE.pdf or FILE.svg")
    parser.add_argument("--dictionary", metavar="FILE", help="also the semantic dictionary figure (.png/.pdf/.svg)")
    parser.add_argument("--size", type=int, default=224, help="the photo is resized and centre-cropped to SIZE (default: 224)")
    parser.add_argument("--render-size", type=int, default=128, help="render size of a group in pixels (default: 128)")
    parser.add_argument("--steps", type=int, default=256, help="optimization steps (default: 256)")
    parser.add_argument("--top-classes", type=int, default=3, help="classes to attribute to (default: 3)")
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line (default: class numbers)")
    weights_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="render and NMF seed (default: 0)")
    parser.add_argument("--dpi", type=float, default=150, help="resolution of a PNG, and of the images in a PDF/SVG")
    device_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _labels(path) -> List[str]:
    p = Path(path)
    if not p.is_file() or p.stat().st_size > 10 << 20:
        raise UsageError(f"--labels {path}: not a text file (of at most 10 MB); give one class name per line")
    try:
        return [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--labels {path}: cannot read it as UTF-8 text ({e}); give one class name per line") from None


def run(args) -> int:
    """Run ``featvis blocks`` from parsed arguments; 0 on success (usage errors raise UsageError)."""
    from ..figures.mpl import check_out, pyplot_free
    from ..models import pick_device
    from ..models.listing import probe_spatial
    from ..models.open import open_model

    check_out(args.out)
    if args.dictionary is not None:
        check_out(args.dictionary, what="--dictionary")
    for name, value, low in (("--groups", args.groups, 1), ("--size", args.size, 8), ("--render-size", args.render_size, 8),
                             ("--steps", args.steps, 1), ("--top-classes", args.top_classes, 1)):
        if value < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file; give a photo (.jpg/.png)")
    labels = _labels(args.labels) if args.labels else None
    pyplot_free()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError(f"building blocks need scikit-learn, which is not installed; {INSTALL}") from None
    device = pick_device(None if args.device == "auto" else args.device)
    model = open_model(args.model, args.weights, device, seed=args.seed)
    shape = probe_spatial(model, args.layer, args.size, device, "building blocks need", args.model)
    if args.groups > min(shape[0], shape[1] * shape[2]):
        raise UsageError(f"--groups {args.groups}: {args.layer} has {shape[0]} channels at {shape[1]}x{shape[2]} "
                         f"positions; give at most {min(shape[0], shape[1] * shape[2])}")
    photo = _photo(args.image, args.size)
    res = blocks(model, photo, args.layer, groups=args.groups, size=args.size, render_size=args.render_size,
                 steps=args.steps, top_classes=args.top_classes, labels=labels, seed=args.seed, device=device,
                 progress=not args.quiet)
    res.save(args.out, dpi=args.dpi)
    print(f"wrote {args.out}: {args.groups} groups, NMF reconstruction error {res.factors.error:.3f}; top classes "
          + ", ".join(f"{n} ({v:.2f})" for n, v in zip(res.class_names, res.logits)))
    if args.dictionary is not None:
        d = semantic_dictionary(model, photo, args.layer, size=args.size, render_size=min(args.render_size, 96),
                                steps=args.steps, seed=args.seed, device=device, progress=not args.quiet)
        d.save(args.dictionary, dpi=args.dpi)
        print(f"wrote {args.dictionary}")
    return 0
