"""The machine interpretability score (MIS): does a unit's explanation let an observer tell which of
two photos excites the unit more?

The task is the two-choice psychophysics task of Borowski et al. (ICLR 2021), made automatic by
Zimmermann, Klindt and Brendel ("Measuring Per-Unit Interpretability at Scale Without Humans",
NeurIPS 2024). For one unit, a task shows

- ``K`` *positive* explanations (images that excite the unit most: its featvis renders, or its top
  natural photos) and ``K`` *negative* ones (images that excite it least: its minimizing renders,
  ``featvis render --negative``, or its bottom photos);
- two *query* photos, held out from the explanations: one that excites the unit strongly and one
  that excites it weakly.

The observer sees the explanations and the queries but not the network, and must say which query
goes with the positive explanations. Ours, like the paper's, answers by perceptual similarity: each
query's mean similarity to the positive explanations minus that to the negative ones, ``d(q)``; it
picks the query with the larger ``d`` with probability ``sigmoid(temperature * (d(q+) - d(q-)))``.
The score of a unit is that probability for the right answer, averaged over the tasks (chance 0.5,
a perfect explanation 1), with a 95% interval over the tasks.

Queries come at several difficulty levels (:data:`LEVELS`): from the extremes of the held-out photos
(the paper's choice; natural exemplars are at ceiling there, so it cannot rank recipes) down to
the 75-95th against the 5-25th percentile. Every level is reported.

The observer (:class:`Observer`) differs from the paper's: the paper uses DreamSim, whose weights
cannot be had here. Ours is an LPIPS-style similarity over a *different* trained network's features
(Zhang et al. 2018): at each of a few layers the feature vector at every position is normalized to
unit length, averaged over positions and normalized again, and the similarity of two images is
the mean over layers of the cosine of these vectors. Averaging over positions (LPIPS compares
position by position) makes it a global embedding like DreamSim's, so that a render and a photo
whose features sit in different places still compare, and a similarity is one matrix product.
An observer built on the studied network itself would be reading the answer off the unit's own
input features; :func:`score` warns (:class:`ObserverWarning`) when it is.

The photos are read once: one pass gives every unit's activation (the channel's mean over
positions, what ``channel(layer, c)`` maximizes) and the observer's embedding of every photo; a
seeded split gives the explanation pool (natural exemplars: its top and bottom ``K``) and the query
pool.

>>> obs = Observer(load_model("resnet50"))
>>> result = score(model, {"layer3": [0, 1, 2]}, "imagenet-sample/", observer=obs,
...                explanations={"featvis": {("layer3", 0): (renders, negatives), ...}})
>>> result.units[("layer3", 0)]["natural"]["hard"]      # Score(mean=0.78, low=0.71, high=0.85, tasks=20)
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import UsageError, device_argument

#: Query difficulty: ``name -> ((low, high) percentile band of the strong query, (low, high) of the
#: weak one)`` within the held-out photos, ranked by the unit's activation. ``extreme`` is the
#: paper's (its most and least activating queries); ``hard`` is the band of the issue's first
#: measurement (75-95th against 5-25th), where natural exemplars no longer sit at ceiling.
LEVELS: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    "extreme": ((98.0, 100.0), (0.0, 2.0)),
    "medium": ((90.0, 98.0), (2.0, 10.0)),
    "hard": ((75.0, 95.0), (5.0, 25.0)),
}
#: Explanations per side, as in the human studies (Borowski et al. 2021: 9 positive, 9 negative).
K = 9
#: Tasks (query pairs) per unit and level; 20 gives a per-unit interval of about +-0.1 at worst.
TASKS = 20
#: The observer's decision temperature: ``sigmoid(temperature * (d(q+) - d(q-)))``. The paper fits
#: its own to human choices with DreamSim; ours cannot be fit (no human data here) and only scales
#: the scores, not their order. 30 makes a difference of one explanation-to-query cosine of 0.1
#: (a clear match: a colour unit's renders against their photos) a 95% choice.
TEMPERATURE = 30.0
#: The observer's input size: 160 px costs half the CPU of 224 px (ResNet-50 observer: 0.15 against 0.26
#: CPU-seconds per photo, benchmarks/interpretability.py --speed), which keeps 64 channels against 1,000
#: photos within about 2 minutes on 2 cores; the pooled embedding needs no fine detail.
OBSERVER_SIZE = 160
#: Fewest photos: ``2 * K`` explanations plus a query pool where each level's 2% band holds a photo.
MIN_QUERIES = 50


class ObserverWarning(UserWarning):
    """The observer's network is the studied network: the score then reads the unit's own inputs."""


@dataclass(frozen=True)
class Score:
    """One unit's (or one layer's) score at one level: the mean probability of the right answer,
    its 95% interval, and over how many tasks (or units) it was taken."""

    mean: float
    low: float
    high: float
    n: int

    def to_json(self) -> list:
        return [round(self.mean, 4), round(self.low, 4), round(self.high, 4), self.n]

    @classmethod
    def from_json(cls, value) -> "Score":
        return cls(float(value[0]), float(value[1]), float(value[2]), int(value[3]))

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.2f}, {self.high:.2f}]"


def interval(values: torch.Tensor) -> Score:
    """Mean of ``values`` (1-D) with a normal-approximation 95% interval, clipped to [0, 1]."""
    v = values.double().flatten()
    n = v.numel()
    mean = float(v.mean())
    half = 1.96 * float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return Score(mean, max(0.0, mean - half), min(1.0, mean + half), n)


# --- the observer ----------------------------------------------------------------------------------

class Observer:
    """A perceptual similarity from a trained network's features (see the module docstring).

    ``model``: a featvis model (or any ``nn.Module`` taking [0, 1] RGB), *not* the studied one;
    ``layers``: the layers compared (default: four block outputs spread over its depth, or four
    conv layers where it marks no blocks); ``size``: images are resized to ``size`` px first
    (default :data:`OBSERVER_SIZE`).
    :meth:`embed` gives unit vectors per layer, concatenated and scaled so that the dot product of
    two embeddings is the mean over layers of their cosine similarity.
    """

    def __init__(self, model, layers: Optional[Sequence[str]] = None, size: int = OBSERVER_SIZE, batch: int = 32,
                 device=None, name: Optional[str] = None):
        from ..models import as_model, pick_device
        self.device = pick_device(device)
        self.model = as_model(model)
        self.name = name or getattr(self.model, "name", None) or type(self.model).__name__
        self.layers = list(layers) if layers else default_layers(self.model)
        if not self.layers:
            raise UsageError(f"observer {self.name} has no layer to compare; name its layers (observer layers=...)")
        self.size, self.batch = int(size), int(batch)

    def describe(self) -> dict:
        """What the record says of the observer."""
        from ..models.weights import weights_digest
        return {"model": self.name, "layers": list(self.layers), "size": self.size,
                "weights_sha256": weights_digest(self.model), "kind": "pooled normalized features (LPIPS-style)"}

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) embeddings of (N, 3, H, W) images in [0, 1]; ``a @ b.T`` is their similarity."""
        from ..hooks import capture
        from ..models.state import frozen
        out = []
        L = len(self.layers)
        with frozen(self.model, self.device), capture(self.model, self.layers) as run:
            for i in range(0, images.shape[0], self.batch):
                x = _resize(images[i:i + self.batch].float(), self.size).to(self.device)
                acts = run(x)
                parts = []
                for name in self.layers:
                    a = acts[name].float()
                    if a.dim() == 4:  # (B, C, H, W): unit length over channels at each position, then pooled
                        a = (a / (a.norm(dim=1, keepdim=True) + 1e-10)).mean((2, 3))
                    a = a.flatten(1)
                    parts.append(a / (a.norm(dim=1, keepdim=True) + 1e-10) / math.sqrt(L))
                out.append(torch.cat(parts, 1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def default_layers(model, n: int = 4) -> List[str]:
    """``n`` layers spread over the network's depth: its block outputs (``featvis layers`` marks
    them) where it has ``n`` or more, else its conv layers."""
    from torch import nn
    names = list(model.block_layers()) if hasattr(model, "block_layers") else []
    if len(names) < n:
        names = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if hasattr(model, "net"):  # a FeatvisModel: hook names are net's module paths
            names = [name[4:] if name.startswith("net.") else name for name in names]
    if len(names) <= n:
        return names
    return [names[round(i * (len(names) - 1) / (n - 1))] for i in range(n)]


def same_network(a, b) -> bool:
    """Whether two models are one network (the same object, or the same weights)."""
    from ..models import as_model
    from ..models.weights import weights_digest
    a, b = as_model(a), as_model(b)
    if a is b or getattr(a, "net", None) is getattr(b, "net", object()):
        return True
    return type(getattr(a, "net", a)) is type(getattr(b, "net", b)) and weights_digest(a) == weights_digest(b)


# --- the photos, read once ---------------------------------------------------------------------------

@dataclass
class Photos:
    """Every photo's activation of every unit and observer embedding, and the seeded split."""

    paths: List[Path]
    activations: Dict[str, torch.Tensor]  # layer -> (N, len(channels[layer])), the channel's mean over positions
    channels: Dict[str, List[int]]
    embeddings: torch.Tensor  # (N, D)
    explain: torch.Tensor  # indices of the explanation pool
    query: torch.Tensor  # indices of the query pool
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def acts(self, layer: str, channel: int) -> torch.Tensor:
        return self.activations[layer][:, self.channels[layer].index(channel)]


def check_counts(n_photos: int, k: int = K) -> None:
    """Raise :class:`UsageError` unless ``n_photos`` give ``2k`` explanations and a query pool."""
    need = 2 * k + MIN_QUERIES
    if n_photos < need:
        raise UsageError(f"{n_photos} photo(s) are too few for k={k} natural explanations per side and the queries: "
                         f"give at least {need} (2k for the explanations, {MIN_QUERIES} held out as queries), "
                         "or a smaller k")


def read_photos(model, units: Mapping[str, Sequence[int]], photos, observer: Observer, size: int = 224,
                k: int = K, seed: int = 0, batch: int = 32, device=None, progress: bool = True,
                workers: Optional[int] = None) -> Photos:
    """One pass over ``photos`` (a folder, or a list of image files): each unit's activation and
    each photo's observer embedding. Half the photos (a seeded split) are the explanation pool,
    at least ``2k``; the rest are the queries."""
    from tqdm.auto import tqdm

    from ..hooks import capture
    from ..models import as_model, pick_device
    from ..models.state import frozen
    from .topk import _batches, find_images
    paths = find_images(photos) if not isinstance(photos, (list, tuple)) else [Path(p) for p in photos]
    check_counts(len(paths), k)
    device = pick_device(device)
    model = as_model(model)
    layers = list(units)
    acts: Dict[str, List[torch.Tensor]] = {layer: [] for layer in layers}
    embeds, kept, skipped = [], [], []
    t0 = time.perf_counter()
    with frozen(model, device), torch.no_grad(), capture(model, layers) as run, \
            tqdm(total=len(paths), desc="photos", unit="img", disable=not progress, leave=False) as bar:
        for ids, images, bad in _batches(paths, size, batch, workers or 2):
            skipped += [(paths[i], why) for i, why in bad]
            if images is not None:
                out = run(images.to(device))
                for layer in layers:
                    a = out[layer].float()
                    if a.dim() == 4:
                        a = a.mean((2, 3))  # (B, C): what channel(layer, c) maximizes
                    acts[layer].append(a[:, list(units[layer])].cpu())
                embeds.append(observer.embed(images))
                kept += ids
            bar.update(len(ids) + len(bad))
    check_counts(len(kept), k)
    n = len(kept)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_explain = max(2 * k, n // 2)
    return Photos([paths[i] for i in kept], {layer: torch.cat(v) for layer, v in acts.items()},
                  {layer: list(c) for layer, c in units.items()}, torch.cat(embeds),
                  order[:n_explain].sort().values, order[n_explain:].sort().values, skipped,
                  time.perf_counter() - t0)


# --- tasks and the score ---------------------------------------------------------------------------

def _band(order: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The entries of ``order`` (ascending by activation) between percentiles ``low`` and ``high``
    (at least one)."""
    n = order.numel()
    a = min(int(math.floor(low * n / 100)), n - 1)
    b = max(int(math.ceil(high * n / 100)), a + 1)
    return order[a:b]


def tasks_for(activations: torch.Tensor, level: str, tasks: int, seed: int) -> torch.Tensor:
    """(tasks, 2) query pairs ``(strong, weak)``, indices into ``activations`` (the query pool's
    activations of one unit), drawn at random (seeded) from the level's two bands."""
    (hl, hh), (ll, lh) = LEVELS[level]
    order = torch.sort(activations, stable=True).indices
    strong, weak = _band(order, hl, hh), _band(order, ll, lh)
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(strong), (tasks,), generator=g)
    j = torch.randint(len(weak), (tasks,), generator=g)
    return torch.stack([strong[i], weak[j]], 1)


def task_probabilities(positive: torch.Tensor, negative: Optional[torch.Tensor], queries: torch.Tensor,
                       pairs: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """(T,) probability that the observer picks the strong query of each pair: ``positive`` (K, D)
    and ``negative`` (K', D) explanation embeddings, ``queries`` (Q, D), ``pairs`` (T, 2)."""
    direction = positive.mean(0) - (negative.mean(0) if negative is not None and len(negative) else 0)
    d = queries @ direction  # (Q,): mean similarity to the positives minus to the negatives
    return torch.sigmoid(temperature * (d[pairs[:, 0]] - d[pairs[:, 1]]))


Explanations = Mapping[Tuple[str, int], Tuple[torch.Tensor, Optional[torch.Tensor]]]


@dataclass
class Result:
    """Per unit ``(layer, channel)``: ``{explanation kind: {level: Score}}``; and the settings."""

    units: Dict[Tuple[str, int], Dict[str, Dict[str, Score]]]
    photos: Photos
    observer: dict
    k: int
    tasks: int
    temperature: float
    seed: int
    levels: Dict[str, tuple]
    seconds: float = 0.0

    def kinds(self) -> List[str]:
        seen: List[str] = []
        for per in self.units.values():
            seen += [k for k in per if k not in seen]
        return seen

    def summary(self, layer: Optional[str] = None, boot: int = 2000) -> Dict[str, Dict[str, Score]]:
        """``{kind: {level: Score}}`` over the units (of ``layer``): the mean of the unit scores
        with a 95% bootstrap interval over units (seeded)."""
        out: Dict[str, Dict[str, Score]] = {}
        g = torch.Generator().manual_seed(self.seed)
        for kind in self.kinds():
            for level in self.levels:
                v = torch.tensor([per[kind][level].mean for (la, _), per in self.units.items()
                                  if kind in per and (layer is None or la == layer)], dtype=torch.float64)
                if not len(v):
                    continue
                means = v[torch.randint(len(v), (boot, len(v)), generator=g)].mean(1)
                lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
                out.setdefault(kind, {})[level] = Score(float(v.mean()), float(lo), float(hi), len(v))
        return out


def score(model, units: Mapping[str, Sequence[int]], photos, observer: Observer,
          explanations: Optional[Mapping[str, Explanations]] = None, natural: bool = True, k: int = K,
          tasks: int = TASKS, temperature: float = TEMPERATURE, seed: int = 0, size: int = 224,
          device=None, progress: bool = True, read: Optional[Photos] = None) -> Result:
    """The machine interpretability score of ``units`` (``{layer: [channel, ...]}``) of ``model``.

    ``photos``: a folder of images (or a list of files), read once (:func:`read_photos`; pass
    ``read=`` to reuse a pass). ``explanations``: ``{kind: {(layer, channel): (positive (K, 3, H, W),
    negative (K', 3, H, W) or None)}}``, e.g. ``{"featvis": ...}`` from a render folder; with
    ``natural`` the units' top and bottom ``k`` photos of the explanation pool are a kind too. Each
    kind of a unit is scored on the same query pairs (``tasks`` per level of :data:`LEVELS`).
    """
    if observer is None:
        raise UsageError("score needs an observer: featvis.analysis.score.Observer(another trained network)")
    if same_network(model, observer.model):
        warnings.warn(f"the observer ({observer.name}) is the studied network itself: the score then reads the "
                      "unit's own input features, not what a person would see; build the Observer on another "
                      "trained network", ObserverWarning, stacklevel=2)
    for name, value, low in (("k", k, 1), ("tasks", tasks, 1)):
        if not isinstance(value, int) or value < low:
            raise UsageError(f"{name}={value!r}: expected a whole number of at least {low}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"temperature={temperature!r}: expected a positive number")
    t0 = time.perf_counter()
    if read is None:
        read = read_photos(model, units, photos, observer, size=size, k=k, seed=seed, device=device,
                           progress=progress)
    from ..jobs.job import layer_key
    from ..rng import derive_seed
    explanations = dict(explanations or {})
    embedded: Dict[str, Dict[Tuple[str, int], tuple]] = {}
    for kind, table in explanations.items():
        embedded[kind] = {u: (observer.embed(pos), None if neg is None or not len(neg) else observer.embed(neg))
                          for u, (pos, neg) in table.items()}
    queries = read.embeddings[read.query]
    out: Dict[Tuple[str, int], Dict[str, Dict[str, Score]]] = {}
    for layer, chans in units.items():
        for c in chans:
            a = read.acts(layer, c)
            per: Dict[str, Dict[str, Score]] = {}
            sets: Dict[str, tuple] = {}
            if natural:
                pool = read.explain[torch.sort(a[read.explain], descending=True, stable=True).indices]
                sets["natural"] = (read.embeddings[pool[:k]], read.embeddings[pool[-k:]])
            for kind, table in embedded.items():
                if (layer, c) in table:
                    sets[kind] = table[(layer, c)]
            for li, level in enumerate(LEVELS):
                pairs = tasks_for(a[read.query], level, tasks, derive_seed(seed, layer_key(layer), c, li))
                for kind, (pos, neg) in sets.items():
                    p = task_probabilities(pos, neg, queries, pairs, temperature)
                    per.setdefault(kind, {})[level] = interval(p)
            out[(layer, int(c))] = per
    return Result(out, read, observer.describe(), k, tasks, float(temperature), seed, dict(LEVELS),
                  time.perf_counter() - t0)


# --- a render folder: featvis score DIR --images PHOTOS ----------------------------------------------

def default_observer_name(studied: str) -> str:
    """The observer network ``featvis score`` builds when none is named: torchvision's ImageNet
    ResNet-50, or Lucid's InceptionV1 when ResNet-50 is the studied network."""
    return "inceptionv1" if studied == "resnet50" else "resnet50"


def folder_explanations(folder, layer: str, section: dict) -> Dict[Tuple[str, int], tuple]:
    """``{(layer, c): (positive (K, 3, S, S), negative (K', 3, S, S) or None)}``: the renders of a
    folder's layer, checked against their recorded SHA-256 (a changed file is refused)."""
    from ..param import image_tensor
    found: Dict[int, Tuple[list, list]] = {}
    for name, e in section.get("images", {}).items():
        if not folder.image_ok(e):
            raise UsageError(f"{folder.path(e['file'])} is missing or changed since it was rendered; re-run the "
                             "featvis render command to redo it, then score again")
        # through the folder's one opener and the bounded loader (contained, regular file, bounded pixels)
        with folder.load_image(e["file"], f"{layer}:{name}") as im:
            t = image_tensor(im.convert("RGB"))[0]
        found.setdefault(int(e["channel"]), ([], []))[1 if e.get("negative") else 0].append(t)
    return {(layer, c): (torch.stack(pos), torch.stack(neg) if neg else None) for c, (pos, neg) in sorted(found.items())
            if pos}


def _settings(args, observer: dict, weights_sha: str, photos: Photos, levels) -> dict:
    return {"photos": str(Path(args.images).resolve()), "n_photos": len(photos.paths) if photos else None,
            "k": args.k, "tasks": args.tasks, "temperature": args.temperature, "seed": args.seed, "size": args.size,
            "observer": observer, "weights_sha256": weights_sha, "levels": list(levels)}


def add_arguments(p) -> None:
    """``featvis score``'s arguments."""
    p.add_argument("dir", metavar="DIR", help="a render folder (featvis render ... --out DIR; with --negative for the "
                   "featvis score's minimizing explanations)")
    p.add_argument("--images", required=True, metavar="PHOTOS",
                   help="a folder of natural photos (.jpg/.png, any depth): the queries and the natural explanations")
    p.add_argument("--layer", action="append", help="only this layer (repeatable; default: every rendered layer)")
    p.add_argument("--observer", metavar="MODEL", default=None,
                   help="the observer's network, another trained model than the studied one (default: resnet50, or "
                        "inceptionv1 when resnet50 is studied)")
    p.add_argument("--observer-weights", default="default", metavar="default|PATH", help="the observer's weights")
    p.add_argument("--observer-layers", metavar="L1,L2,...", help="the observer's layers (default: four block "
                   "outputs spread over its depth)")
    p.add_argument("--observer-size", type=int, default=OBSERVER_SIZE,
                   help=f"images are resized to this for the observer (default: {OBSERVER_SIZE})")
    p.add_argument("--k", type=int, default=K, help=f"natural explanations per side (default: {K})")
    p.add_argument("--tasks", type=int, default=TASKS, help=f"query pairs per unit and level (default: {TASKS})")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help=f"the observer's decision temperature (default: {TEMPERATURE:g})")
    p.add_argument("--size", type=int, default=224, help="photos are resized and centre-cropped to SIZE px (default: 224)")
    p.add_argument("--seed", type=int, default=0, help="the split of the photos and the query draws (default: 0)")
    p.add_argument("--weights", default=None, metavar="default|none|PATH",
                   help="the studied network's weights (default: those the renders were made with)")
    device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = ("Scores every rendered unit of DIR: with its renders (featvis: maximizing against minimizing images)\n"
                "and with its natural top and bottom photos (natural), on held-out query pairs at each difficulty\n"
                "level (extreme, medium, hard). Writes the scores into DIR (manifest.json, 'score') and prints the\n"
                "table. A layer scored before with the same settings and renders is not scored again.")


def run(args) -> int:
    """``featvis score DIR --images PHOTOS``: score, record (layer by layer), print the table."""
    from ..jobs.folder import MAIN, RenderFolder, records_digest
    from ..jobs.folder.records import made_by
    from ..models import pick_device
    from ..models.open import open_model
    from ..models.weights import weights_digest
    from .topk import check_arguments, find_images

    folder = RenderFolder(args.dir)
    if not Path(args.dir).is_dir():
        raise UsageError(f"{args.dir}: no such folder; give a folder written by featvis render")
    data = folder.read()
    rendered = {n: sec for n, sec in ((data or {}).get("layers") or {}).items()
                if any(not e.get("negative") for e in sec.get("images", {}).values())}
    if not rendered:
        raise UsageError(f"{args.dir} holds no renders; render into it first (featvis render MODEL LAYER --negative "
                         f"--out {args.dir})")
    layers = list(rendered)
    if args.layer:
        missing = [la for la in args.layer if la not in rendered]
        if missing:
            raise UsageError(f"{args.dir} has no renders of layer {missing[0]!r}; it has: {', '.join(layers)}")
        layers = [la for la in layers if la in args.layer]
    for name, value, low in (("--k", args.k, 1), ("--tasks", args.tasks, 1), ("--observer-size", args.observer_size, 8),
                             ("--seed", args.seed, 0)):
        if value < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UsageError(f"--temperature {args.temperature}: must be a positive number, e.g. {TEMPERATURE:g}")
    check_arguments(k=args.k, size=args.size, batch=32, crop=None, workers=None)
    check_counts(len(find_images(args.images)), args.k)
    dev = pick_device(args.device)
    spec = args.weights or (data.get("weights") or {}).get("spec") or "default"
    model = open_model(data["model"], spec, dev, int((data.get("settings") or {}).get("seed", 0)))
    digest = weights_digest(model)
    recorded = (data.get("weights") or {}).get("sha256")
    if recorded and recorded != digest:
        raise UsageError(f"--weights {spec} is not the network {args.dir} was rendered with (sha256 {digest[:12]}, "
                         f"recorded {recorded[:12]}); drop --weights, or give the recorded ones")
    obs_name = args.observer or default_observer_name(data["model"])
    obs_model = open_model(obs_name, args.observer_weights, dev)
    observer = Observer(obs_model, args.observer_layers.split(",") if args.observer_layers else None,
                        size=args.observer_size, device=dev, name=obs_name)
    if args.observer_layers:
        from ..models.listing import probe_layer
        for layer in observer.layers:
            probe_layer(obs_model, layer, args.observer_size, dev)  # a wrong name: one line with close matches
    settings = _settings(args, observer.describe(), digest, None, LEVELS)
    have = data.get("score") or {}
    todo = []
    for la in layers:
        old = have.get(la) or {}
        same = all(old.get(key) == settings[key] for key in settings if key != "n_photos")
        if not (same and old.get("renders") == records_digest(rendered[la])):
            todo.append(la)
    if todo:
        units = {la: sorted({int(e["channel"]) for e in rendered[la]["images"].values()}) for la in todo}
        photos = read_photos(model, units, args.images, observer, size=args.size, k=args.k, seed=args.seed,
                             device=dev, progress=not args.quiet)
        settings["n_photos"] = len(photos.paths)
        with folder.lock(MAIN):
            for la in todo:
                explained = {"featvis": folder_explanations(folder, la, rendered[la])}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ObserverWarning)  # warned once below
                    result = score(model, {la: units[la]}, None, observer, explained, k=args.k, tasks=args.tasks,
                                   temperature=args.temperature, seed=args.seed, read=photos, progress=False)
                channels = {str(c): {kind: {level: s.to_json() for level, s in per.items()} for kind, per in kinds.items()}
                            for (_, c), kinds in result.units.items()}
                folder.record_score(la, dict(settings, model=data["model"], renders=records_digest(rendered[la]),
                                             made_by=made_by(data["model"], digest, spec),
                                             channels=channels, seconds=round(result.seconds, 3)))
        data = folder.read()
    else:
        folder.refresh()  # a manifest.json that a kill left behind the records is rebuilt
    if same_network(model, obs_model):
        print(f"featvis score: warning: the observer ({obs_name}) is the studied network itself; pass --observer "
              "with another trained model", file=sys.stderr)
    for la in layers:
        print_table(la, data["score"][la], up_to_date=la not in todo)
    return 0


def _band_text(level: str) -> str:
    if level not in LEVELS:
        return "(a level this featvis does not know)"
    (a, b), (c, d) = LEVELS[level]
    return f"a {a:g}-{b:g}th against a {c:g}-{d:g}th percentile photo"


def print_table(layer: str, record: dict, up_to_date: bool = False) -> None:
    """The table of one layer's record: per level, unit, featvis score, natural score, intervals."""
    chans = record["channels"]
    head = (f"{layer}: {len(chans)} unit(s); observer {record['observer']['model']}, k {record['k']}, "
            f"{record['tasks']} tasks per level, {record.get('n_photos')} photos" + (" (recorded before)" if up_to_date else ""))
    print(head)
    for level in record["levels"]:
        print(f"  {level} queries: {_band_text(level)}")
        print(f"  {'unit':>8}  {'featvis':>7}  {'95% CI':>12}  {'natural':>7}  {'95% CI':>12}")
        means = {"featvis": [], "natural": []}
        for c, kinds in sorted(chans.items(), key=lambda kv: int(kv[0])):
            cells = []
            for kind in ("featvis", "natural"):
                v = kinds.get(kind, {}).get(level)
                if v is None:
                    cells += ["-", "-"]
                else:
                    s = Score.from_json(v)
                    means[kind].append(s.mean)
                    cells += [f"{s.mean:.3f}", f"[{s.low:.2f}, {s.high:.2f}]"]
            print(f"  {c:>8}  {cells[0]:>7}  {cells[1]:>12}  {cells[2]:>7}  {cells[3]:>12}")
        bits = [f"{kind} {sum(v) / len(v):.3f}" for kind, v in means.items() if v]
        print(f"  {'mean':>8}  " + ", ".join(bits))


__all__ = ["score", "Observer", "ObserverWarning", "Score", "Result", "Photos", "read_photos", "tasks_for",
           "task_probabilities", "interval", "default_layers", "same_network", "LEVELS", "K", "TASKS",
           "TEMPERATURE", "OBSERVER_SIZE"]
