"""A hand-coded early-vision network: units whose preferred stimulus is known exactly.

Pretrained weights cannot tell us whether a visualization is *right*; a network whose weights are
written down can. This one follows the hand-written curve detectors of the Circuits thread
(Cammarata et al., "Curve Circuits", Distill 2021): oriented line detectors, and curve detectors
wired from them. Nothing is trained; :func:`build` makes the same weights every time.

Conventions (used by ``preferred`` and by :mod:`featvis.metrics`):

- **orientation**: the angle of the line (the stripes of a grating), in degrees counter-clockwise
  from the horizontal as seen on screen (y up), in [0, 180). 0 is a horizontal line, 90 a vertical
  one, 45 a line rising to the right (``/``), 135 one falling to the right (``\\``).
- **bend**: for a curve, the direction from the arc's apex towards its centre of curvature, in
  degrees counter-clockwise from screen-right, in [0, 360). 90: the centre is above the apex, the
  arc is a ``U``; 270: an upside-down ``U``; 0: the arc opens to the right (``(``); 180: ``)``.
  The curve's orientation (its tangent at the apex) is ``bend + 90`` mod 180.

Layers (module paths; the input is an RGB image in [0, 1], centred to [-1, 1] by the wrapper):

``edges`` (12 channels, full resolution): ``ReLU(conv 11x11)`` with even-symmetric Gabor kernels
    (wavelength 6 px, a light line flanked by dark ones). Channels 0-7: luminance lines at
    0, 22.5, ..., 157.5 degrees (the same kernel on R, G and B). Channels 8-11: red-green
    colour-opponent lines at 0, 45, 90, 135 degrees (+kernel on R, -kernel on G, nothing on B: a
    red line between green flanks; a luminance pattern gives exactly 0). Each kernel has zero mean
    and sum(|w|) = 1 over its colour inputs, so on the centred input its largest possible response
    is 1, reached by the sign pattern of the kernel: a saturated grating of the preferred
    orientation, wavelength and colour. The input range bounds every response, so the optimum is
    a grating, not a brighter and brighter image.

``pool`` : 2x2 max pooling of ``edges`` (some tolerance to where exactly a line falls).

``curves`` (8 channels, half resolution): curve detectors over the pooled luminance line channels
    (0-7; the colour channels are not read). Curve ``c`` bends towards ``45 * c`` degrees; its arc
    has radius 5 pooled px (10 image px) and spans 120 degrees. The template (a 15x15
    convolution, no bias, then a ReLU; see :func:`curve_kernel`), following Curve Circuits:

    - along the arc, each point excites the line channel tangent to it (split linearly between
      the two nearest of the 8 orientations) and inhibits the orthogonal orientation at half weight;
    - the apex tangent continued straight beyond where the arc has left it inhibits the apex
      orientation, so a straight line (which matches only the middle of the arc) gives 3.5-5 times
      less than the arc;
    - the circle continued past the arc's ends inhibits (end-stopping), so the arc turned about its
      centre of curvature stops matching: this narrows the bend tuning from about +-40 degrees at
      80 % of the peak to about +-25 degrees.

    Then opponent inhibition: each curve minus the mean, over an 11x11 window, of the curve that
    bends the opposite way (channel c + 4), and a ReLU. Without it a sine wave, whose troughs match
    and whose crests cost nothing, would be as good a stimulus as arcs that all bend one way.
    No bias anywhere: a threshold would leave the units silent (and without gradient) on the
    near-gray image an optimization starts from.

``model.wiring["curves"][channel]`` is the wiring table the curve weights are drawn from (see
:func:`curve_wiring`): which pooled line channel excites or inhibits the curve, where, and how much.

``model.preferred[layer][channel]`` holds each unit's preferred stimulus as a dict: ``kind``
("line" or "curve"), ``orientation``, ``colour`` ("light": a light line between dark flanks;
"red/green": a red line between green flanks, blue ignored, so a rendering is free to show it
red/cyan), and for curves ``bend`` and ``radius`` (image px). :func:`grating`, :func:`line` and
:func:`arc` draw stimuli in the same conventions.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from .wrap import FeatvisModel, wrap

#: Number of line orientations (22.5 degree steps) and curve bend directions (45 degree steps).
N_ORIENT = 8
#: Orientations of the red-green colour-opponent line channels (degrees).
COLOUR_ORIENT = (0.0, 45.0, 90.0, 135.0)
#: Gabor wavelength and envelope (image px): sigma across the line half a wavelength, along it
#: one wavelength, which gives about +-20 degrees of orientation tuning (enough for 22.5 degree steps).
WAVELENGTH, SIGMA_ACROSS, SIGMA_ALONG, EDGE_KERNEL = 6.0, 3.0, 6.0, 11
#: Curve geometry in pooled px (x2 for image px); the arc covers +-ARC_HALF_ANGLE degrees.
POOL, CURVE_RADIUS, ARC_HALF_ANGLE, CURVE_KERNEL = 2, 5.0, 60.0, 15
#: Inhibition of the orthogonal orientation along the arc, relative to the excitation (which sums to 1).
INHIBITION = 0.5
#: Inhibition of the straight continuation of the apex tangent (total weight), from this fraction
#: of the radius on (the arc is then 40 degrees from its apex and 1.2 pooled px off the tangent).
STRAIGHT_INHIBITION, STRAIGHT_FROM = 0.4, 0.65
#: End-stopping (total weight) on the circle from END_GAP to END_GAP + END_SPAN degrees past each end.
END_INHIBITION, END_GAP, END_SPAN = 0.4, 10.0, 40.0
#: Opponent inhibition between curves that bend opposite ways: each curve's response minus this
#: fraction of the opposite curve's mean response over a window about the size of the arc.
OPPONENT, OPPONENT_WINDOW = 1.0, 2 * int(CURVE_RADIUS) + 1


def _screen_grid(size: int):
    """(size, size) offsets of pixel centres from the centre of a kernel or image: x right, y *up*
    (screen convention)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(-r, r, indexing="ij")  # row 0 is the top: y up
    return x, y


def gabor(orientation: float, size: int = EDGE_KERNEL, wavelength: float = WAVELENGTH,
          sigma_across: float = SIGMA_ACROSS, sigma_along: float = SIGMA_ALONG) -> torch.Tensor:
    """(size, size) even Gabor for a light line at ``orientation`` degrees; zero mean, sum |w| = 1."""
    x, y = _screen_grid(size)
    t = math.radians(orientation)
    along = x * math.cos(t) + y * math.sin(t)
    across = -x * math.sin(t) + y * math.cos(t)
    envelope = torch.exp(-0.5 * (across / sigma_across) ** 2 - 0.5 * (along / sigma_along) ** 2)
    g = envelope * torch.cos(2 * math.pi * across / wavelength)
    g = g - envelope * (g.sum() / envelope.sum())  # zero mean, still localized
    return (g / g.abs().sum()).float()


def _splat(kernel: torch.Tensor, channel_weights, x: float, y: float, value: float):
    """Add ``value`` at screen offset (x, y) from the centre, bilinearly over pixels and over the
    (channel, weight) pairs given."""
    K = kernel.shape[-1]
    col, row = x + (K - 1) / 2, (K - 1) / 2 - y
    c0, r0 = math.floor(col), math.floor(row)
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        w = (1 - abs(row - (r0 + dr))) * (1 - abs(col - (c0 + dc)))
        if w > 0 and 0 <= r0 + dr < K and 0 <= c0 + dc < K:
            for ch, cw in channel_weights:
                kernel[ch, r0 + dr, c0 + dc] += value * w * cw


def _orientation_channels(angle: float):
    """The two line channels nearest ``angle`` (degrees, mod 180) with linear weights."""
    pos = (angle % 180.0) / (180.0 / N_ORIENT)
    lo = math.floor(pos)
    frac = pos - lo
    return [(lo % N_ORIENT, 1 - frac), ((lo + 1) % N_ORIENT, frac)]


def curve_wiring(bend: float, size: int = CURVE_KERNEL, radius: float = CURVE_RADIUS,
                 half_angle: float = ARC_HALF_ANGLE, inhibition: float = INHIBITION,
                 straight: float = STRAIGHT_INHIBITION, end: float = END_INHIBITION, samples: int = 64) -> List[dict]:
    """The wiring of a curve bending towards ``bend``: the strokes :func:`curve_kernel` draws.

    Each stroke is a dict: ``x``, ``y`` (pooled px from the kernel centre, screen convention: x
    right, y up), ``orientation`` (the line orientation read there, degrees in [0, 180)),
    ``channels`` (the two nearest line channels and their linear shares, ``[[channel, share],
    ...]``), ``weight`` (signed total) and ``role``: ``"tangent"`` (arc points exciting the
    orientation tangent to the arc; they sum to 1), ``"orthogonal"`` (the same points inhibiting
    the orthogonal orientation, ``inhibition`` times as much), ``"end"`` (end-stopping: the circle
    continued past the arc's ends inhibits its tangent orientation, ``end`` in total) and
    ``"straight"`` (the apex tangent continued straight, from STRAIGHT_FROM * radius on, inhibits
    the apex orientation, ``straight`` in total). The arc is centred in the kernel: its apex is
    half the sagitta away from the centre.
    """
    strokes: List[dict] = []

    def add(x, y, orientation, weight, role):
        orientation = orientation % 180.0
        strokes.append({"x": x, "y": y, "orientation": orientation,
                        "channels": [list(cw) for cw in _orientation_channels(orientation)],
                        "weight": weight, "role": role})

    b = math.radians(bend)
    sagitta = radius * (1 - math.cos(math.radians(half_angle)))
    # Centre of curvature, relative to the kernel centre: the apex sits sagitta/2 towards -bend.
    cx = (radius - sagitta / 2) * math.cos(b)
    cy = (radius - sagitta / 2) * math.sin(b)
    for a in torch.linspace(-half_angle, half_angle, samples).tolist():
        phi = b + math.radians(a)  # from the point on the arc towards the centre is +phi
        px, py = cx - radius * math.cos(phi), cy - radius * math.sin(phi)
        tangent = math.degrees(phi) + 90.0
        add(px, py, tangent, 1.0 / samples, "tangent")
        add(px, py, tangent + 90.0, -inhibition / samples, "orthogonal")
    # End-stopping: the same circle continued beyond the arc's ends inhibits (an arc turned about
    # its centre of curvature would otherwise still match most of the template).
    lo, hi = half_angle + END_GAP, half_angle + END_GAP + END_SPAN
    ends = [s * a for a in torch.linspace(lo, hi, samples // 4).tolist() for s in (-1, 1)]
    for a in ends:
        phi = b + math.radians(a)
        px, py = cx - radius * math.cos(phi), cy - radius * math.sin(phi)
        add(px, py, math.degrees(phi) + 90.0, -end / len(ends), "end")
    apex_x, apex_y = cx - radius * math.cos(b), cy - radius * math.sin(b)
    tx, ty = -math.sin(b), math.cos(b)  # along the tangent at the apex
    ds = [d for d in torch.linspace(-size / 2, size / 2, 2 * samples).tolist() if abs(d) >= STRAIGHT_FROM * radius]
    for d in ds:
        add(apex_x + d * tx, apex_y + d * ty, math.degrees(b) + 90.0, -straight / len(ds), "straight")
    return strokes


def strokes_kernel(strokes: List[dict], in_channels: int, size: int = CURVE_KERNEL) -> torch.Tensor:
    """(in_channels, size, size) weights drawn from a wiring table's strokes (see :func:`curve_wiring`):
    each stroke's weight splatted bilinearly over pixels and over its two channels."""
    k = torch.zeros(in_channels, size, size, dtype=torch.float64)
    for s in strokes:
        _splat(k, s["channels"], s["x"], s["y"], s["weight"])
    return k.float()


def curve_kernel(bend: float, in_channels: int, size: int = CURVE_KERNEL, **wiring) -> torch.Tensor:
    """(in_channels, size, size) weights over the line channels for a curve bending towards ``bend``.

    The kernel drawn from :func:`curve_wiring` (keyword arguments go there): each arc point excites
    the line orientation tangent to it (excitation sums to 1) and inhibits the orthogonal one
    (``inhibition`` times as much). The tangent at the apex, extended beyond where the arc has left
    it (from STRAIGHT_FROM * radius on), inhibits the apex orientation with a total weight
    ``straight``: a straight line matches the middle of the arc, and pays for it there. The circle
    continued past each end of the arc (END_GAP to END_GAP + END_SPAN degrees beyond it) inhibits
    its own tangent orientation with a total weight ``end`` (end-stopping).
    """
    return strokes_kernel(curve_wiring(bend, size=size, **wiring), in_channels, size)


class Edges(nn.Module):
    """Line detectors: ``ReLU`` of Gabor filters on the luminance and on the red-green opponent
    image. Filtering the two one-channel images is the same as a 3-channel convolution with the
    kernel / 3 on R, G, B (luminance) and +-kernel / 2 on R and G (red-green), and cheaper."""

    def __init__(self):
        super().__init__()
        self.luminance = nn.Conv2d(1, N_ORIENT, EDGE_KERNEL, padding=EDGE_KERNEL // 2, bias=False)
        self.red_green = nn.Conv2d(1, len(COLOUR_ORIENT), EDGE_KERNEL, padding=EDGE_KERNEL // 2, bias=False)

    def forward(self, x):  # x: (B, 3, H, W) centred to [-1, 1]
        # channels_last input and weights: oneDNN's backward pass for a one-channel input is about
        # twice as fast that way on CPU (measured: 20 vs 39 ms for 12 images of 76 px).
        cl = torch.channels_last
        lum = x.mean(1, keepdim=True).contiguous(memory_format=cl)  # (B, 1, H, W)
        rg = ((x[:, :1] - x[:, 1:2]) / 2).contiguous(memory_format=cl)  # (B, 1, H, W): red minus green
        return F.relu(torch.cat([self.luminance(lum), self.red_green(rg)], 1))  # (B, 12, H, W)


class Curves(nn.Module):
    """Curve detectors: arc templates over the line channels, then opponent inhibition.

    ``arcs``: the template (see :func:`curve_kernel`) and a ReLU. Then each curve is inhibited by
    the one bending the opposite way (channel c + 4), averaged over a window the size of the arc,
    and a final ReLU. Without it a wavy line (a sine wave) would do as well as a row of arcs all
    bending the preferred way: its troughs excite the curve and its crests cost nothing.
    """

    def __init__(self):
        super().__init__()
        self.arcs = nn.Conv2d(N_ORIENT, N_ORIENT, CURVE_KERNEL, padding=CURVE_KERNEL // 2, bias=False)
        self.surround = nn.AvgPool2d(OPPONENT_WINDOW, stride=1, padding=OPPONENT_WINDOW // 2, count_include_pad=False)

    def forward(self, lines):  # lines: (B, 8, h, w) pooled luminance line channels
        arcs = F.relu(self.arcs(lines))  # (B, 8, h, w)
        opposite = arcs.roll(N_ORIENT // 2, dims=1)  # channel c <- channel c + 4 (bend + 180)
        return F.relu(arcs - OPPONENT * self.surround(opposite))


class HandcodedNet(nn.Module):
    """The network itself (expects the centred image in [-1, 1]); see the module docstring."""

    def __init__(self):
        super().__init__()
        self.edges = Edges()
        self.pool = nn.MaxPool2d(POOL)
        self.curves = Curves()
        self.preferred: Dict[str, List[dict]] = {"edges": [], "curves": []}
        #: The wiring table the curve weights are drawn from (see :func:`curve_wiring`); one entry per
        #: curve channel: ``bend``, ``strokes`` (over the pooled line channels ``pool``, 0-7) and
        #: ``opponent`` (the curve subtracted, averaged over ``window`` x ``window``, times ``weight``).
        self.wiring: Dict[str, List[dict]] = {"curves": []}
        self._construct()

    @torch.no_grad()
    def _construct(self):
        for c in range(N_ORIENT):
            theta = c * 180.0 / N_ORIENT
            self.edges.luminance.weight[c, 0] = gabor(theta)
            self.preferred["edges"].append({"kind": "line", "orientation": theta, "colour": "light"})
        for i, theta in enumerate(COLOUR_ORIENT):
            self.edges.red_green.weight[i, 0] = gabor(theta)
            self.preferred["edges"].append({"kind": "line", "orientation": theta, "colour": "red/green"})
        for conv in (self.edges.luminance, self.edges.red_green):
            conv.weight.data = conv.weight.data.to(memory_format=torch.channels_last)

        conv = self.curves.arcs
        for c in range(N_ORIENT):
            bend = c * 360.0 / N_ORIENT
            wiring = {"bend": bend, "strokes": curve_wiring(bend),
                      "opponent": {"channel": (c + N_ORIENT // 2) % N_ORIENT, "weight": -OPPONENT,
                                   "window": OPPONENT_WINDOW}}
            self.wiring["curves"].append(wiring)
            conv.weight[c] = strokes_kernel(wiring["strokes"], conv.in_channels)
            self.preferred["curves"].append({
                "kind": "curve", "orientation": (bend + 90.0) % 180.0, "bend": bend,
                "radius": CURVE_RADIUS * POOL, "colour": "light"})

    def forward(self, x):
        lines = self.pool(self.edges(x)[:, :N_ORIENT])  # (B, 8, H/2, W/2): luminance lines only
        return self.curves(lines)


def describe(unit: dict) -> str:
    """A short label for a ``preferred`` entry: ``line 22.5 light``, ``curve bend 90 (U)``."""
    if unit["kind"] == "curve":
        shapes = {0: "(", 90: "U", 180: ")", 270: "n"}
        shape = shapes.get(int(unit["bend"]), "")
        return f"curve bend {unit['bend']:g}" + (f" ({shape})" if shape else "")
    return f"line {unit['orientation']:g} {unit['colour']}"


def build(weights="default") -> FeatvisModel:
    """The hand-coded model, wrapped: [0, 1] images in, centred to [-1, 1]; ``model.preferred``."""
    if weights not in ("default", None):
        raise ValueError(f"weights={weights!r}: the handcoded model's weights are constructed, not "
                         "loaded; use weights='default' (or None)")
    net = HandcodedNet()
    model = wrap(net, normalize=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), name="handcoded")
    model.preferred = net.preferred
    model.wiring = net.wiring
    return model


# --- stimuli with a known answer (tests, metrics checks, selfcheck) ----------------------------
def grating(orientation: float, size: int = 64, wavelength: float = WAVELENGTH, phase: float = 0.0,
            colour=((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))) -> torch.Tensor:
    """(3, size, size) square-wave grating in [0, 1]: stripes at ``orientation`` degrees.

    ``colour``: the RGB of the light and of the dark stripes (red/green: ``((1,0,0), (0,1,0))``).
    """
    x, y = _screen_grid(size)
    t = math.radians(orientation)
    across = -x * math.sin(t) + y * math.cos(t)
    on = (torch.cos(2 * math.pi * across / wavelength + phase) > 0).float()  # (H, W)
    a = torch.tensor(colour[0], dtype=torch.float32).view(3, 1, 1)
    b = torch.tensor(colour[1], dtype=torch.float32).view(3, 1, 1)
    return on * a + (1 - on) * b


def line(orientation: float, size: int = 64, width: float = 2.0, offset=(0.0, 0.0)) -> torch.Tensor:
    """(3, size, size) light line on gray through the centre (+ ``offset``, screen px), anti-aliased."""
    x, y = _screen_grid(size)
    x, y = x - offset[0], y - offset[1]
    t = math.radians(orientation)
    across = (-x * math.sin(t) + y * math.cos(t)).abs()
    ink = (width / 2 + 0.5 - across).clamp(0, 1).float()
    return (0.5 + 0.5 * ink).expand(3, -1, -1).clone()


def arc(bend: float, radius: float, size: int = 64, half_angle: float = ARC_HALF_ANGLE, width: float = 2.0,
        offset=(0.0, 0.0)) -> torch.Tensor:
    """(3, size, size) light arc on gray, bending towards ``bend`` (see the module docstring).

    The arc's apex is at the image centre (+ ``offset``); it spans +-``half_angle`` degrees about
    the apex on a circle of ``radius`` px.
    """
    x, y = _screen_grid(size)
    b = math.radians(bend)
    cx, cy = offset[0] + radius * math.cos(b), offset[1] + radius * math.sin(b)
    dx, dy = x - cx, y - cy
    dist = (dx.pow(2) + dy.pow(2)).sqrt()
    # angle of each pixel seen from the centre, relative to the direction centre -> apex (b + 180)
    rel = torch.atan2(dy, dx) - (b + math.pi)
    rel = torch.remainder(rel + math.pi, 2 * math.pi) - math.pi
    inside = (rel.abs() <= math.radians(half_angle)).double()
    ink = ((width / 2 + 0.5 - (dist - radius).abs()).clamp(0, 1) * inside).float()
    return (0.5 + 0.5 * ink).expand(3, -1, -1).clone()
