"""CPPN, RGBA and shared Fourier images, the Laplacian pyramid, and starting from an image."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import featvis
from featvis import param as P

from .conftest import tiny_model
from featvis.objectives import channel, l2
from featvis.rng import RandomSource
from featvis.transforms import identity


def run(model, obj, param, steps, **kw):
    kw.setdefault("transforms", identity())
    return featvis.render(model, obj, param=param, steps=steps, seed=0, progress=False, **kw)


# --- CPPN ------------------------------------------------------------------------------------
def test_cppn_renders_optimizes_and_redraws_at_any_size():
    model, p = tiny_model(), P.cppn(32)
    assert p.default_lr == 0.005
    before = run(model, channel("conv2", 3), p, 0)
    assert before.images.shape == (1, 3, 32, 32)
    after = run(model, channel("conv2", 3), p, 40)
    assert after.values.item() > before.values.item() + 0.05
    with torch.no_grad():
        small, big = p(), p(size=96)
    assert big.shape == (1, 3, 96, 96) and torch.isfinite(big).all()
    assert torch.allclose(small, after.images, atol=1e-6)  # the optimized param, drawn again
    # The same picture, sampled 3x more finely: the centre pixel of each 3x3 block sits where the
    # 32 px pixel does (only instance-norm statistics differ), and block averages match on average.
    assert (big[..., 1::3, 1::3] - small).abs().max() < 0.03
    assert (F.avg_pool2d(big, 3) - small).abs().mean() < 0.01
    assert small.std() > 0.1  # ...and it is a picture, not a flat colour


def test_cppn_sizes_and_options():
    p = P.cppn(40, 20, batch=2, layers=3, width=5, activation="relu", alpha=True)
    assert p().shape == (2, 4, 20, 40)
    with torch.no_grad():
        assert p(size=80).shape == (2, 4, 40, 80)  # longer side 80, aspect kept
        assert p(size=(7, 9)).shape == (2, 4, 7, 9)
    with pytest.raises(ValueError, match="activation"):
        P.cppn(16, activation="tanh-ish")


def test_cppn_reset_is_per_image_and_deterministic():
    a, b = P.cppn(16, batch=2), P.cppn(16)
    a.reset(RandomSource([11, 12]))
    b.reset(RandomSource([12]))
    for wa, wb in zip(a.weights, b.weights):
        assert torch.equal(wa[1], wb[0])  # image 1 of a batch = the same seed alone
    assert not torch.equal(a.weights[0][0], a.weights[0][1])
    assert (a.weights[-1] == 0).all()  # output layer starts at zero: a flat image


def test_render_uses_param_default_lr_unless_given():
    seen = []

    class Spy(torch.optim.Adam):
        def __init__(self, params, lr):
            seen.append(lr)
            super().__init__(params, lr=lr)

    model = tiny_model()
    run(model, channel("conv2", 3), P.cppn(16), 1, optimizer=Spy)
    run(model, channel("conv2", 3), P.fourier(16), 1, optimizer=Spy)
    run(model, channel("conv2", 3), P.cppn(16), 1, optimizer=Spy, lr=0.1)
    assert seen == [0.005, 0.05, 0.1]


# --- RGBA ------------------------------------------------------------------------------------
def test_fourier_alpha_renders_rgba_png(tmp_path):
    p = P.fourier(24, 20, batch=2, alpha=True)
    img = p()
    assert img.shape == (2, 4, 20, 24) and img.min() >= 0 and img.max() <= 1
    result = featvis.render(tiny_model(), channel("conv2", 3), param=p, steps=3, seed=0, progress=False)
    assert result.images.shape == (2, 4, 20, 24)
    paths = result.save(tmp_path / "x.png")
    assert Image.open(paths[0]).mode == "RGBA"


# --- shared low-resolution terms and the pyramid ----------------------------------------------
def _pre_sigmoid(p):
    return torch.logit(p().detach()[:, :3].clamp(1e-6, 1 - 1e-6))


def test_fourier_shared_terms_are_common_or_blended_across_the_batch():
    p = P.fourier(16, batch=5, shared=[(1, 4)], decorrelate=False)
    with torch.no_grad():
        p.spectrum.zero_()
    img = p()
    assert img.std() > 0 and torch.allclose(img, img[:1].expand_as(img), atol=1e-6)

    p = P.fourier(16, batch=5, shared=[(2, 4)], decorrelate=False)
    with torch.no_grad():
        p.spectrum.zero_()
    t = _pre_sigmoid(p)
    assert torch.allclose(t[2], (t[0] + t[4]) / 2, atol=1e-4)  # a linear blend from first to last
    assert not torch.allclose(t[0], t[4], atol=1e-4)
    assert len(P.fourier(16, batch=3, shared=True).shared) == len(P.LUCID_SHARED)
    with pytest.raises(ValueError, match="shared"):
        P.fourier(16, shared=[3])


def test_shared_terms_are_seeded():
    a, b = P.fourier(16, batch=3, shared=True), P.fourier(16, batch=3, shared=True)
    a.reset(RandomSource([1, 2, 3]))
    b.reset(RandomSource([1, 2, 3]))
    assert torch.equal(a(), b())


def test_pyramid_and_lowres():
    p = P.pyramid(32, 24, batch=2, levels=4)
    assert [tuple(l.values.shape[-2:]) for l in p.levels] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert p().shape == (2, 3, 24, 32)
    q = P.lowres(32, factor=8)
    assert q.levels[0].values.shape == (1, 3, 4, 4)
    with torch.no_grad():
        q.levels[0].values.normal_()
    img = q()
    # bilinear from 4x4: neighbouring pixels differ far less than the image varies
    assert (img[..., 1:] - img[..., :-1]).abs().max() < 0.5 * (img.max() - img.min())
    model = tiny_model()
    before = run(model, channel("conv2", 3), P.pyramid(32), 0)
    after = run(model, channel("conv2", 3), P.pyramid(32), 20)
    assert after.values.item() > before.values.item()


# --- starting from an image -------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: P.fourier(20, 16, batch=2), lambda: P.fourier(20, 16, batch=2, shared=True),
                                  lambda: P.pixel(20, 16, batch=2), lambda: P.pixel(20, 16, batch=2, decorrelate=True),
                                  lambda: P.pyramid(20, 16, batch=2)])
def test_set_image_round_trip(make):
    img = torch.rand(2, 3, 16, 20) * 0.98 + 0.01
    p = make()
    p.set_image(img)
    assert (p().detach() - img).abs().max() < 1e-4


def test_render_init_survives_the_seed_reset():
    torch.manual_seed(1)
    img = torch.rand(3, 16, 20) * 0.9 + 0.05
    model = tiny_model()
    r = featvis.render(model, channel("conv2", 3), init=img, steps=0, seed=0, progress=False)
    assert r.images.shape == (1, 3, 16, 20) and (r.images[0] - img).abs().max() < 1e-4
    # a given param gets the image resized to its size
    r = featvis.render(model, channel("conv2", 3), param=P.pixel(10, 8), init=img, steps=0, seed=0, progress=False)
    assert r.images.shape == (1, 3, 8, 10)
    with pytest.raises(NotImplementedError, match="cannot start from a given image"):
        featvis.render(model, channel("conv2", 3), param=P.cppn(16), init=img, steps=0, progress=False)


def test_accentuation_stays_close_to_the_image():
    torch.manual_seed(1)
    img = torch.rand(3, 16, 16) * 0.9 + 0.05
    model = tiny_model()
    free = featvis.render(model, channel("conv2", 3), init=img, steps=15, seed=0, progress=False, transforms=identity())
    tied = featvis.render(model, channel("conv2", 3) - 5.0 * l2(img), init=img, steps=15, seed=0, progress=False,
                          transforms=identity())
    start = featvis.render(model, channel("conv2", 3), init=img, steps=0, seed=0, progress=False)
    assert free.values.item() > start.values.item()
    assert (tied.images - img).pow(2).mean() < (free.images - img).pow(2).mean()
