import pytest
import torch

from featvis import param
from featvis.param.color import COLOR_CORRELATION
from featvis.rng import RandomSource


@pytest.mark.parametrize("make", [param.fourier, param.pixel])
@pytest.mark.parametrize("w,h", [(16, 16), (15, 9), (8, 13)])
def test_shapes_and_range(make, w, h):
    p = make(w, h, batch=2)
    img = p()
    assert img.shape == (2, 3, h, w) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1


def test_reset_is_seeded_per_image():
    a, b = param.fourier(8, batch=2), param.fourier(8, batch=1)
    a.reset(RandomSource([7, 8]))
    b.reset(RandomSource([8]))
    assert torch.equal(a()[1:], b())
    assert not torch.equal(a()[0], a()[1])


def test_fourier_spectrum_scaling_favours_low_frequencies():
    s = param.spectrum_scale(8, 8)
    assert s.shape == (8, 5)
    assert s[0, 0] == s.max() and s[4, 4] == s.min()
    assert s[0, 1] == pytest.approx(8 / (1 / 8))  # sqrt(64) / f with f = 1/8


def test_color_matrix_normalized():
    assert COLOR_CORRELATION.norm(dim=0).max() == pytest.approx(1.0)


def test_fourier_is_trainable():
    p = param.fourier(8)
    p().mean().backward()
    assert p.spectrum.grad is not None and p.spectrum.grad.abs().sum() > 0


def test_bad_size():
    with pytest.raises(ValueError, match="positive integers"):
        param.fourier(0)
