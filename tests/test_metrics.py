"""featvis.metrics on synthetic images whose answer is known."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis.analysis import metrics
from featvis.models import handcoded as hc
from featvis.objectives import channel

N = 64


def stripes(f):
    """(3, N, N) sinusoidal stripes whose phase is ``f(row, col)`` (pixel indices, row 0 at the top)."""
    row, col = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    img = 0.5 + 0.5 * np.sin(2 * math.pi * f(row, col) / 8.0)
    return torch.tensor(np.stack([img] * 3), dtype=torch.float32)


def test_orientation_convention_on_pixel_stripes():
    # Stripes constant along a row are horizontal lines: 0 degrees; constant along a column: 90.
    # Constant along row + col (up and to the right on screen, '/'): 45; along row - col ('\'): 135.
    cases = {0.0: lambda r, c: r, 90.0: lambda r, c: c, 45.0: lambda r, c: (r + c) / math.sqrt(2),
             135.0: lambda r, c: (r - c) / math.sqrt(2)}
    for expected, f in cases.items():
        assert metrics.angle_difference(metrics.orientation(stripes(f)), expected) < 1.0, expected


@pytest.mark.parametrize("angle", [10.0, 30.0, 72.5, 100.0, 150.0, 171.0])
def test_orientation_of_rotated_stripes(angle):
    t = math.radians(angle)
    # phase across the stripes, in screen coordinates (y = -row)
    img = stripes(lambda r, c: -c * math.sin(t) - r * math.cos(t))
    assert metrics.orientation_error(img, angle) < 1.0
    assert metrics.coherence(img) > 0.9


def test_orientation_of_a_colour_only_grating():
    img = hc.grating(60, N, wavelength=8, colour=((1, 0, 0), (0, 1, 0)))
    assert img.mean(0).std() < 1e-6  # no luminance structure at all
    assert metrics.orientation_error(img, 60) < 2.0


def test_orientation_error_is_modulo_180_and_batched():
    imgs = torch.stack([stripes(lambda r, c: r), stripes(lambda r, c: c)])
    err = metrics.orientation_error(imgs, [179.0, {"orientation": 88.0}])
    np.testing.assert_allclose(err, [1.0, 2.0], atol=0.5)
    assert metrics.angle_difference(170, 10) == 20 and metrics.angle_difference(350, 10, 360) == 20


def test_bend_of_arcs_and_of_straight_or_wavy_lines():
    for b in range(0, 360, 30):
        img = hc.arc(b, 12.0)
        assert metrics.bend_error(img, b) < 5.0, b
        assert metrics.bend_strength(img) > 0.7
    assert metrics.bend_strength(hc.line(30)) < 0.01
    wave = stripes(lambda r, c: r + 4 * np.sin(2 * math.pi * c / N))  # bends both ways equally
    assert metrics.bend_strength(wave) < 0.1


def white_and_pink(seed, n=128):
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    f[0, 0] = 1.0
    white = rng.standard_normal((n, n))
    pink = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) / f))  # power ~ 1/f^2
    return white, pink


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectrum_slope_white_vs_1_over_f2(seed):
    white, pink = white_and_pink(seed)
    assert abs(metrics.spectrum_slope(white) - 0.0) < 0.3
    assert abs(metrics.spectrum_slope(pink) + 2.0) < 0.3
    batch = np.stack([np.stack([white] * 3), np.stack([pink] * 3)])
    np.testing.assert_allclose(metrics.spectrum_slope(batch), [metrics.spectrum_slope(white), metrics.spectrum_slope(pink)])


def test_activation_ratio_of_a_linear_unit():
    model = featvis.load_model("handcoded", device=None)
    full = hc.grating(45)
    half = 0.25 + 0.5 * full  # half the contrast about gray: the edge unit is linear there
    other = hc.grating(135)
    refs = torch.stack([full, other])
    assert metrics.activation_ratio(model, full, "edges", 2, refs) == pytest.approx(1.0)
    # one channel per image: unit 2 on the half-contrast grating, unit 6 on its best reference
    ratio = metrics.activation_ratio(model, torch.stack([half, other]), "edges", [2, 6], refs)
    np.testing.assert_allclose(ratio, [0.5, 1.0], rtol=1e-5)


class Checker(nn.Module):
    """One unit that detects a 1 px checkerboard: nothing survives a sub-pixel move."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 2, bias=False)
        self.conv.weight.data = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x.mean(1, keepdim=True)))


def test_robustness_separates_features_from_pixel_patterns():
    edges = featvis.load_model("handcoded", device=None)
    grating = hc.grating(0, 48, phase=0.5)[None]
    r_grating = metrics.robustness(edges, grating, channel("edges", 0), n=16)
    checker_model = featvis.wrap(Checker(), normalize=None)
    row, col = np.meshgrid(np.arange(48), np.arange(48), indexing="ij")
    checker = torch.tensor(((row + col) % 2).astype(np.float32)).expand(1, 3, -1, -1)
    r_checker = metrics.robustness(checker_model, checker, channel("relu", 0), n=16)
    assert r_grating > 0.7 and r_checker < 0.4, (r_grating, r_checker)
    # seeded: the same draws give the same score
    assert metrics.robustness(edges, grating, "edges:0", n=16) == r_grating
