"""Scores for a finished visualization, against what is known about the unit or about images.

- :func:`orientation` / :func:`orientation_error`: the dominant orientation of an image (colour
  structure tensor), compared with a unit's preferred one.
- :func:`bend` / :func:`bend_error`: which way the lines of an image curve (the mean curvature
  vector of its orientation field), compared with a curve unit's preferred bend.
- :func:`activation_ratio`: a unit's activation on its visualization over its maximum on reference
  images (how far beyond natural inputs the optimization went).
- :func:`robustness`: the objective under random jitter, scale and rotation of the finished image,
  over its value on the image itself (adversarial pixel patterns fall apart when moved).
- :func:`spectrum_slope`: the log-log slope of the radially averaged power spectrum (natural
  images near -2, white noise near 0).
- :func:`saturation`: the share of pixel values pinned at 0 or 1.
- :func:`faithfulness`: whether the network processes a visualization like the unit's natural
  images along the path to the unit (per-layer activation similarity; Geirhos et al. 2023).

Angles follow :mod:`featvis.models.handcoded`: degrees counter-clockwise from the horizontal as
seen on screen (y up). An orientation is the angle of the lines themselves (stripes at 0 degrees
are horizontal), in [0, 180); a bend is the direction towards the centre of curvature, in [0, 360).

Every function takes one image (3, H, W) / (H, W) or a batch (B, 3, H, W) (a float tensor or
array in [0, 1], or a :class:`featvis.Result`); a single image gives a float, a batch a NumPy
array with one value per image.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from ..hooks import INPUT, capture
from ..models import as_model
from ..objectives import as_objective
from ..rng import RandomSource, image_seeds
from ..transforms import STANDARD_ANGLES, STANDARD_SCALES, compose, jitter, pad, random_rotate, random_scale

#: Structure tensor scales (px): derivative-of-Gaussian gradients, then local averaging.
GRADIENT_SIGMA, INTEGRATION_SIGMA = 1.0, 2.0
#: Pixels this close to the border are left out of the sums: there the filters see the reflected
#: border (a seam for an image that is not periodic), which would pull orientations to 0 or 90.
MARGIN_GRADIENT, MARGIN_CURVATURE = 3, 8


def _images(x) -> tuple:
    """Any accepted input -> ((B, C, H, W) float64 array, whether it was a single image)."""
    if hasattr(x, "images") and not isinstance(x, (torch.Tensor, np.ndarray)):
        x = x.images
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[None, None], True
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected an image (3, H, W) or (H, W), or a batch (B, 3, H, W); got shape {x.shape}")


def _out(values, single):
    values = np.asarray(values, dtype=np.float64)
    return float(values[0]) if single else values


def _structure_tensor(img: np.ndarray, integration: float = INTEGRATION_SIGMA):
    """(C, H, W) -> Jxx, Jxy, Jyy (H, W): the colour (Di Zenzo) structure tensor, summed over
    channels, in pixel coordinates (x right, y down), borders reflected."""
    jxx = jxy = jyy = 0.0
    for ch in img:
        gx = ndimage.gaussian_filter(ch, GRADIENT_SIGMA, order=(0, 1), mode="reflect")
        gy = ndimage.gaussian_filter(ch, GRADIENT_SIGMA, order=(1, 0), mode="reflect")
        jxx, jxy, jyy = jxx + gx * gx, jxy + gx * gy, jyy + gy * gy
    if integration:
        jxx, jxy, jyy = (ndimage.gaussian_filter(j, integration, mode="reflect") for j in (jxx, jxy, jyy))
    return jxx, jxy, jyy


def _interior(a: np.ndarray, margin: int) -> np.ndarray:
    """``a`` without ``margin`` pixels on each side (all of it if the image is too small)."""
    H, W = a.shape[-2:]
    if H <= 4 * margin or W <= 4 * margin:
        return a
    return a[..., margin:H - margin, margin:W - margin]


def _line_angle(jxx, jxy, jyy) -> np.ndarray:
    """Screen angle (radians, y up) of the lines, from the structure tensor's principal axis.

    The gradient's doubled angle in pixel coordinates is atan2(2Jxy, Jxx - Jyy); flipping y to
    screen coordinates negates the angle, and the lines are perpendicular to the gradient.
    """
    grad = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # pixel coords, y down
    return -grad + math.pi / 2


def orientation(image) -> Union[float, np.ndarray]:
    """Dominant orientation of the lines in ``image``, degrees in [0, 180) (see module docstring).

    The principal axis of the colour structure tensor summed over the whole image: a red/green
    grating has an orientation even where its luminance is flat.
    """
    x, single = _images(image)
    out = []
    for img in x:
        jxx, jxy, jyy = (_interior(j, MARGIN_GRADIENT).sum() for j in _structure_tensor(img, integration=0))
        out.append(math.degrees(_line_angle(jxx, jxy, jyy)) % 180.0)
    return _out(out, single)


def coherence(image) -> Union[float, np.ndarray]:
    """How much one orientation dominates, in [0, 1]: (l1 - l2) / (l1 + l2) of the summed
    structure tensor's eigenvalues (1 for perfect stripes, 0 for no preferred orientation)."""
    x, single = _images(image)
    out = []
    for img in x:
        jxx, jxy, jyy = (_interior(j, MARGIN_GRADIENT).sum() for j in _structure_tensor(img, integration=0))
        out.append(math.hypot(jxx - jyy, 2 * jxy) / max(jxx + jyy, 1e-12))
    return _out(out, single)


def _preferred_list(preferred, key: str, n: int) -> list:
    """A number, a ``preferred`` dict, or a list of either -> n numbers."""
    if isinstance(preferred, (int, float, dict)):
        preferred = [preferred] * n
    vals = [p[key] if isinstance(p, dict) else float(p) for p in preferred]
    if len(vals) != n:
        raise ValueError(f"{len(vals)} preferred values for {n} images; give one per image, or one for all")
    return vals


def angle_difference(a, b, period: float = 180.0):
    """Smallest absolute difference between angles (degrees) modulo ``period``."""
    d = np.abs((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % period)
    return np.minimum(d, period - d)


def orientation_error(result, preferred) -> Union[float, np.ndarray]:
    """Degrees (0..90) between the dominant orientation of each image and the preferred one.

    ``preferred``: degrees, a ``model.preferred[layer][c]`` dict, or a list of either (one per
    image of ``result``, a :class:`featvis.Result` or images).
    """
    x, single = _images(result)
    found = np.atleast_1d(orientation(x))
    return _out(angle_difference(found, _preferred_list(preferred, "orientation", len(x))), single)


def _curvature_field(img: np.ndarray):
    """Curvature vectors (kx, ky) in screen coordinates and weights (H, W) of the line field.

    With theta the line angle and t = (cos theta, sin theta), the curvature vector of the field is
    (t . grad theta) n, n = t turned by +90 degrees. It points towards the centre of curvature and,
    unlike the signed curvature, does not depend on which way along the line one walks (t -> -t
    flips both factors), so it is defined for unoriented lines. grad theta comes from the doubled
    angle field z = exp(2i theta) as Im(conj(z) grad z) / 2, which needs no phase unwrapping.
    Weights: the local structure energy (l1 + l2) times coherence, i.e. l1 - l2.
    """
    jxx, jxy, jyy = _structure_tensor(img)
    theta = _line_angle(jxx, jxy, jyy)  # screen radians
    z = np.exp(2j * theta)
    # d/dx along columns (x right); d/dy in screen coordinates is minus the row derivative.
    dz_dx = (np.roll(z, -1, 1) - np.roll(z, 1, 1)) / 2
    dz_dy = -(np.roll(z, -1, 0) - np.roll(z, 1, 0)) / 2
    dth_dx = np.imag(np.conj(z) * dz_dx) / 2
    dth_dy = np.imag(np.conj(z) * dz_dy) / 2
    c, s = np.cos(theta), np.sin(theta)
    k = c * dth_dx + s * dth_dy  # dtheta/ds along t
    weight = np.hypot(jxx - jyy, 2 * jxy)  # l1 - l2
    return tuple(_interior(a, MARGIN_CURVATURE) for a in (-s * k, c * k, weight))


def bend(image) -> Union[float, np.ndarray]:
    """Direction (degrees in [0, 360)) in which the lines of ``image`` curve on average.

    The weighted mean of the curvature vectors of the orientation field (see
    :func:`bend_strength` for how consistent it is). For a ``U``-shaped arc this is 90 (towards
    its centre of curvature, above it on screen).
    """
    x, single = _images(image)
    out = []
    for img in x:
        kx, ky, w = _curvature_field(img)
        out.append(math.degrees(math.atan2((w * ky).sum(), (w * kx).sum())) % 360.0)
    return _out(out, single)


def bend_strength(image) -> Union[float, np.ndarray]:
    """Length of the weighted mean curvature vector over the weighted mean of its length, in [0, 1]:
    1 when every line bends the same way, near 0 for straight lines or for curves that bend both
    ways equally (a sine wave)."""
    x, single = _images(image)
    out = []
    for img in x:
        kx, ky, w = _curvature_field(img)
        mean = math.hypot((w * kx).sum(), (w * ky).sum())
        out.append(mean / max((w * np.hypot(kx, ky)).sum(), 1e-12))
    return _out(out, single)


def bend_error(result, preferred) -> Union[float, np.ndarray]:
    """Degrees (0..180) between each image's :func:`bend` and the preferred bend (degrees, a
    ``model.preferred["curves"][c]`` dict, or a list of either)."""
    x, single = _images(result)
    found = np.atleast_1d(bend(x))
    return _out(angle_difference(found, _preferred_list(preferred, "bend", len(x)), 360.0), single)


def spectrum_slope(image, fmin: float = 2.0, fmax: Optional[float] = None) -> Union[float, np.ndarray]:
    """Slope of the radially averaged power spectrum of ``image`` on log-log axes.

    The luminance (channel mean) minus its mean, under a Hann window (so the image border adds no
    spurious 1/f^2 cross), is Fourier transformed; power is averaged over rings of integer radius
    ``fmin``..``fmax`` (cycles per image; default up to the Nyquist ring min(H, W) // 2), and a
    line is fitted to log power against log frequency, one point per ring, weighted by the number of
    Fourier coefficients in the ring (the low rings hold few and are noisy). Natural images give about -2 (van der Schaaf & van Hateren 1996),
    white noise about 0; feature visualizations full of high-frequency noise sit well above -2.
    Photos that were JPEG-compressed and downsized lose high frequencies and measure steeper:
    the 20 ImageNet class photos of benchmarks/quality_imagenet.py resized to 224 px give -2.94 (median).
    """
    x, single = _images(image)
    out = []
    for img in x:
        lum = img.mean(0)
        H, W = lum.shape
        win = np.outer(np.hanning(H), np.hanning(W))
        lum = (lum - lum.mean()) * win
        power = np.abs(np.fft.fftshift(np.fft.fft2(lum))) ** 2
        fy = np.arange(H) - H // 2
        fx = np.arange(W) - W // 2
        r = np.hypot(*np.meshgrid(fy * (min(H, W) / H), fx * (min(H, W) / W), indexing="ij"))
        ring = np.round(r).astype(int)
        top = int(fmax) if fmax is not None else min(H, W) // 2
        radii = np.arange(int(fmin), top + 1)
        sums = np.bincount(ring.ravel(), power.ravel(), minlength=top + 1)
        counts = np.bincount(ring.ravel(), minlength=top + 1)
        p = sums[radii] / np.maximum(counts[radii], 1)
        ok = p > 0
        if ok.sum() < 2:
            out.append(float("nan"))
            continue
        # Inverse-variance weights: the log of a mean of k squared magnitudes has variance ~1/k,
        # and polyfit's w multiplies residuals, so w = sqrt(k).
        slope, _ = np.polyfit(np.log(radii[ok]), np.log(p[ok]), 1, w=np.sqrt(counts[radii[ok]]))
        out.append(slope)
    return _out(out, single)


def _device(model):
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _unit_values(model, images: torch.Tensor, layer: str, channels: Sequence[int], batch_size: int = 64) -> torch.Tensor:
    """(N, len(channels)) mean activation of each channel over space, for each image."""
    out = []
    with torch.no_grad(), capture(model, [layer]) as run:
        for i in range(0, len(images), batch_size):
            t = run(images[i:i + batch_size].to(_device(model)))[layer]
            t = t[:, list(channels)]
            out.append((t.flatten(2).mean(2) if t.dim() > 2 else t).float().cpu())
    return torch.cat(out)


def activation_ratio(model, result, layer: str, channels, reference_images) -> Union[float, np.ndarray]:
    """Each unit's activation on its visualization over its largest activation on ``reference_images``.

    ``channels``: one channel for every image of ``result``, or a list with one per image (as
    rendered by ``channel(layer, [..])``). Activations are channel means over space (what the
    ``channel`` objective maximizes). ``reference_images``: (N, 3, H, W) in [0, 1], e.g. natural
    images or the stimuli the unit was designed for. Around 1: the visualization is as strong
    as the best reference; much more: the optimization found inputs far outside that set.
    """
    model = as_model(model)
    x, single = _images(result)
    images = torch.as_tensor(x, dtype=torch.float32)
    chans = [int(channels)] * len(images) if isinstance(channels, (int, np.integer)) else [int(c) for c in channels]
    if len(chans) != len(images):
        raise ValueError(f"{len(chans)} channels for {len(images)} images; give one per image, or one for all")
    refs = torch.as_tensor(reference_images, dtype=torch.float32)
    if refs.dim() == 3:
        refs = refs[None]
    ref_max = _unit_values(model, refs, layer, chans).max(0).values  # (len(chans),)
    vis = _unit_values(model, images, layer, chans).diagonal()  # image i, channel chans[i]
    ratio = vis / ref_max.clamp(min=1e-12)
    return _out(ratio.numpy(), single)


def robustness_transforms(shift: int = 4):
    """The moves :func:`robustness` applies: a random shift of up to +-``shift`` px (reflected
    border, same canvas size), Lucid's standard scales (0.9..1.1) and angles (-10..10 degrees)."""
    return compose(pad(shift, mode="reflect"), jitter(2 * shift), random_scale(STANDARD_SCALES),
                   random_rotate(STANDARD_ANGLES))


def robustness(model, result, objective, n: int = 32, seed: int = 0, transforms=None) -> Union[float, np.ndarray]:
    """Mean objective over ``n`` random jitters/scales/rotations of each image, over its value on
    the image as it is.

    ``objective``: what was rendered (an Objective or ``"layer:channel"``), evaluated on the whole
    batch as in :func:`featvis.render`. ``transforms`` default to :func:`robustness_transforms`;
    draws come from a :class:`featvis.rng.RandomSource` seeded by ``seed`` (one stream per image),
    so the score is deterministic. Near 1: the feature survives being moved; much less than 1:
    it depended on exact pixel alignment (adversarial noise rather than a feature). An image on
    which the objective is 0 gives inf or nan.
    """
    model = as_model(model)
    objective = as_objective(objective)
    x, single = _images(result)
    images = torch.as_tensor(x, dtype=torch.float32).to(_device(model))
    transforms = robustness_transforms() if transforms is None else transforms
    rng = RandomSource(image_seeds(seed, len(images)), images.device)

    def value(imgs):
        acts = run(imgs)
        acts[INPUT] = imgs
        return objective(acts).float()

    with torch.no_grad(), capture(model, objective.layers) as run:
        base = value(images)
        moved = torch.stack([value(transforms(images, rng)) for _ in range(n)]).mean(0)
    return _out((moved / base).cpu().numpy(), single)


def path_layers(model, objective, size: int = 224) -> list:
    """The layers on the way to ``objective``'s layers, in the order the forward pass runs them
    (the objective's own layers last): every named layer of ``model`` with a tensor output that
    runs up to the objective's last layer, without aliases and without containers whose output
    is the same tensor as their last child's. Found with one forward pass of a gray image."""
    from ..hooks import named_layers
    model = as_model(model)
    objective = as_objective(objective)
    wanted = [n for n in objective.layers if n != INPUT]
    table, seen_modules = {}, set()
    for name, module in named_layers(model).items():
        if id(module) not in seen_modules:
            seen_modules.add(id(module))
            table[name] = module
    order, outputs, handles = [], {}, []

    def hook(name):
        def fn(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() in (2, 4):
                order.append(name)
                outputs[name] = output
        return fn

    try:
        for name, module in table.items():
            handles.append(module.register_forward_hook(hook(name)))
        with torch.no_grad():
            model(torch.full((1, 3, size, size), 0.5, device=_device(model)))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in wanted if n not in outputs and n not in table]
    if missing:
        from ..hooks import resolve
        resolve(model, missing)  # raises the usual "no layer ..." error
    last = max((order.index(n) for n in wanted if n in order), default=len(order) - 1)
    path, ptrs = [], {}
    for name in order[:last + 1]:
        if name in path:
            continue
        out = outputs[name]
        key = (out.data_ptr(), tuple(out.shape))
        if key in ptrs and name not in wanted:  # a container returning its last child's tensor
            continue
        ptrs[key] = name
        path.append(name)
    return path


def _channel_means(model, images: torch.Tensor, layers, batch_size: int = 32) -> dict:
    """{layer: (N, C)} spatial mean of each channel, for [0, 1] images (N, 3, H, W)."""
    out = {n: [] for n in layers}
    with torch.no_grad(), capture(model, layers) as run:
        for i in range(0, len(images), batch_size):
            acts = run(images[i:i + batch_size].to(_device(model)))
            for n in layers:
                t = acts[n].float()
                out[n].append((t.flatten(2).mean(2) if t.dim() > 2 else t).cpu())
    return {n: torch.cat(v) for n, v in out.items()}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) cosine similarity of each row of ``a`` (N, C) with each row of ``b`` (M, C); 1 where
    both are zero (the layer is silent on both), 0 where only one is."""
    na, nb = a.norm(dim=-1)[:, None], b.norm(dim=-1)[None, :]
    cos = (a @ b.T) / (na * nb).clamp(min=1e-12)
    both_silent = (na <= 1e-8) & (nb <= 1e-8)
    return torch.where(both_silent, torch.ones_like(cos), cos)


def _natural_batch(images) -> torch.Tensor:
    natural = torch.as_tensor(images, dtype=torch.float32)
    if natural.dim() == 3:
        natural = natural[None]
    if natural.dim() != 4 or natural.shape[1] != 3 or len(natural) == 0:
        raise ValueError(f"natural_images must be a non-empty (N, 3, H, W) batch, got shape {tuple(natural.shape)}")
    return natural


def faithfulness_matrix(model, objective, images, natural_sets: Sequence, layers=None, per_layer: bool = False):
    """(N, M) array: :func:`faithfulness` of each of the N ``images`` to each of M sets of natural
    images (``natural_sets``: a list of (k, 3, H, W) batches, e.g. the top-k dataset examples of
    M channels), with one forward pass per image and per set. Row i against its own unit's set,
    next to the same row against the other units' sets, says whether the network processes the
    visualization more like its unit's natural images than like other units' (``featvis
    faithfulness``). ``objective`` chooses the path (:func:`path_layers`); ``per_layer=True``
    returns ``{layer: (N, M)}``."""
    model = as_model(model)
    objective = as_objective(objective)
    x, _ = _images(images)
    images = torch.as_tensor(x, dtype=torch.float32)
    sets = [_natural_batch(s) for s in natural_sets]
    path = list(layers) if layers is not None else path_layers(model, objective, images.shape[-1])
    vis = _channel_means(model, images[:, :3], path)
    means = [_channel_means(model, s, path) for s in sets]
    scores = {n: _cosine(vis[n], torch.stack([m[n].mean(0) for m in means])).numpy() for n in path}
    if per_layer:
        return scores
    return np.mean(np.stack(list(scores.values())), 0)


def faithfulness(model, objective, image, natural_images, layers=None, per_layer: bool = False):
    """How similarly ``model`` processes the visualization ``image`` and the unit's natural images
    (e.g. its top-k dataset examples) along the path to the unit, in the spirit of Geirhos et al.
    2023 ("Don't trust your eyes: on the (un)reliability of feature visualizations"), who planted
    circuits that make a visualization show anything while natural images take another path.

    At each layer of the path (:func:`path_layers`, or ``layers``) each image is summarized by its
    channel means (which channels are on, wherever they are); the score of the layer is the cosine
    similarity between the visualization's vector and the mean of the natural images' vectors (a
    pattern, not a magnitude: a visualization may drive the unit harder than any photo). Returns
    the mean over layers: near 1 the network sees the visualization the way it sees the natural
    images; low, it reached the unit another way. After ReLUs all vectors are non-negative, so
    compare scores with each other (presets, other units' natural images: see
    :func:`faithfulness_matrix` and ``featvis faithfulness DIR``), not with 0.
    ``image``: (3, H, W) -> float, or a batch (B, 3, H, W) -> one value per image (or a Result).
    ``natural_images``: (N, 3, H, W) in [0, 1], any size. ``per_layer=True`` returns
    ``{layer: score}`` instead (floats, or arrays for a batch).

    >>> featvis.metrics.faithfulness(model, "layer3:7", result, top_images)
    """
    _, single = _images(image)
    scores = faithfulness_matrix(model, objective, image, [natural_images], layers, per_layer=True)
    if per_layer:
        return {n: _out(v[:, 0], single) for n, v in scores.items()}
    return _out(np.mean(np.stack([v[:, 0] for v in scores.values()]), 0), single)


#: :func:`saturation`: a value within this of 0 or 1 counts as pinned (one 8-bit level).
SATURATION_EPS = 1 / 255


def saturation(image, eps: float = SATURATION_EPS) -> Union[float, np.ndarray]:
    """The share of pixel values (all channels) within ``eps`` of 0 or 1: how much of the image is
    clipped by the sigmoid, like an over-exposed photo (natural photos: a few percent at most)."""
    x, single = _images(image)
    pinned = (x <= eps) | (x >= 1 - eps)
    return _out(pinned.reshape(len(x), -1).mean(1), single)


__all__ = ["faithfulness", "faithfulness_matrix", "path_layers", "saturation", "orientation", "coherence", "orientation_error", "angle_difference", "bend", "bend_strength",
           "bend_error", "spectrum_slope", "activation_ratio", "robustness", "robustness_transforms"]

# The machine interpretability score lives in featvis.analysis.score; named here too, with the other scores.
from .score import Observer, ObserverWarning  # noqa: E402
from .score import score as interpretability_score  # noqa: E402

__all__ += ["interpretability_score", "Observer", "ObserverWarning"]
