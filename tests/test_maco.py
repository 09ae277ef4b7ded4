"""MACO param, crop/flip/noise transforms, presets, the spectrum command and faithfulness."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis import presets
from featvis.analysis import metrics
from featvis.objectives import channel
from featvis.param import COLOR_CORRELATION, maco, natural_spectrum
from featvis.rng import RandomSource
from featvis.transforms import compose, identity
from featvis.transforms.crops import noise, random_crop, random_flip


def _amplitude(images):
    """|fft2| of the decorrelated, pre-sigmoid signal of [0, 1] images (what maco fixes)."""
    t = torch.logit(images.double())
    t = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(COLOR_CORRELATION.double()), t)
    return torch.fft.fft2(t).abs()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def test_maco_amplitude_stays_fixed_while_phase_changes():
    model = featvis.wrap(TinyNet(), normalize=None)
    p = maco(24, 20, batch=2)
    before_img, before_phase = p().detach(), p.phase.detach().clone()
    featvis.render(model, channel("conv2", [0, 3]), param=p, transforms=identity(), steps=12, seed=0, progress=False)
    after = p().detach()
    assert (p.phase.detach() - before_phase).abs().max() > 0.05  # the phase moved
    assert (after - before_img).abs().max() > 0.02  # so did the picture
    amp = p.amplitude.double().expand(2, 3, 20, 24)
    # exact up to float32 rounding (the sigmoid's logit amplifies it near 0 and 1)
    assert torch.allclose(_amplitude(after), amp, atol=2e-3 * amp.max().item())
    # the spectrum itself: |A exp(i phase)| = A everywhere
    assert torch.allclose(p.spectrum().abs(), p.amplitude.expand(2, 3, 20, 24), rtol=1e-5, atol=1e-5)


def test_maco_default_spectrum_is_one_over_f_and_sets_contrast():
    amp = natural_spectrum(16, 16)
    assert amp.shape == (3, 16, 16) and amp[:, 0, 0].eq(0).all()
    assert amp[0, 0, 1] == pytest.approx(16.0) and amp[0, 0, 2] == pytest.approx(8.0)  # 1/f, f in cycles/px
    p = maco(32, sd=1.5)
    t = torch.logit(p().detach().double())
    t = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(COLOR_CORRELATION.double()), t)
    assert t.std((-2, -1), unbiased=False).mean().item() == pytest.approx(1.5, rel=1e-3)
    slope = metrics.spectrum_slope(maco(128)().detach())
    assert -2.3 < slope < -1.7


def test_maco_transparency_follows_accumulated_gradients():
    p = maco(8, batch=2)
    assert p.transparency().eq(0).all()  # nothing accumulated yet
    g1 = torch.randn(2, 3, 8, 8)
    g2 = torch.randn(2, 3, 8, 8) * 3
    for g in (g1, g2):
        p().backward(g)
    with torch.no_grad():
        p()  # a forward pass without gradients adds nothing
    acc = (g1.abs() + g2.abs()).mean(1, keepdim=True)
    want = acc / acc.flatten(1).max(1).values.view(2, 1, 1, 1)
    t = p.transparency()
    assert t.shape == (2, 1, 8, 8) and t.min() >= 0 and t.max() <= 1
    assert torch.allclose(t, want, atol=1e-6)
    assert p.rgba().shape == (2, 4, 8, 8)
    p.reset(RandomSource([1, 2]))
    assert p.transparency().eq(0).all()


def test_maco_seed_and_set_image_and_errors(tmp_path):
    a, b = maco(16), maco(16)
    a.reset(RandomSource([5]))
    b.reset(RandomSource([5]))
    assert torch.equal(a(), b())
    # set_image keeps the target's phase: same spectrum and phase, same picture (at a contrast
    # where no pixel is within set_image's clamp of 0 or 1)
    a, target = maco(16, sd=1.0), maco(16, sd=1.0)
    target.reset(RandomSource([9]))
    a.set_image(target().detach())
    assert torch.allclose(a(), target(), atol=1e-4)
    with pytest.raises(ValueError, match="sd"):
        maco(16, sd=0)
    with pytest.raises(FileNotFoundError, match="featvis spectrum"):
        maco(16, spectrum=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        maco(16, spectrum=torch.ones(16, 16))


def test_spectrum_of_a_folder_of_synthetic_images(tmp_path):
    from PIL import Image

    from featvis.analysis.spectrum import compute_spectrum

    # Vertical stripes of 4 cycles per image, gray (luminance only): all energy at (0, +-4).
    x = np.arange(32)
    for i, phase in enumerate([0.0, 1.0, 2.5]):
        row = 0.5 + 0.3 * np.cos(2 * math.pi * 4 * x / 32 + phase)
        img = (np.tile(row, (32, 1))[..., None].repeat(3, -1) * 255).round().astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"s{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    amp, n = compute_spectrum(tmp_path, size=32)
    assert n == 3 and amp.shape == (3, 32, 32)
    lum = amp[0]
    peak = lum[0, 4].item()
    assert peak > 0 and lum[0, 28].item() == pytest.approx(peak, rel=1e-4)
    others = lum.clone()
    others[0, 4] = others[0, 28] = 0
    assert others.max() < 0.02 * peak
    # gray images: each decorrelated channel holds the stripes in proportion to inv(C) @ (1, 1, 1)
    w = torch.linalg.inv(COLOR_CORRELATION.double()) @ torch.ones(3, dtype=torch.float64)
    for k in (1, 2):
        assert amp[k, 0, 4].item() == pytest.approx(peak * abs(w[k].item() / w[0].item()), rel=2e-3)
        assert amp[k].max().item() == pytest.approx(amp[k, 0, 4].item(), rel=1e-4)
    # the file `featvis spectrum` writes feeds param.maco
    from featvis.cli import main
    out = tmp_path / "spec.pt"
    assert main(["spectrum", "--images", str(tmp_path), "--out", str(out), "--size", "32"]) == 0
    p = maco(32, spectrum=out)
    assert torch.allclose(_amplitude(p().detach())[0, 0], p.amplitude[0].double(), atol=1e-2 * p.amplitude.max().item())
    assert main(["spectrum", "--images", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_crop_flip_noise_transforms():
    img = torch.arange(64.0).view(1, 1, 8, 8).expand(2, 3, 8, 8) / 64
    flipped = random_flip(1.0)(img, RandomSource([1, 2]))
    assert torch.allclose(flipped, img.flip(-1), atol=1e-5)
    assert torch.allclose(random_flip(0.0)(img, RandomSource([1, 2])), img, atol=1e-5)
    full = random_crop((1.0, 1.0))(img, RandomSource([1, 2]))
    assert torch.allclose(full, img, atol=1e-5)  # a crop of the whole image is the image
    out = random_crop((0.5, 0.5), size=(4, 4))(img, RandomSource([3, 4]))
    assert out.shape == (2, 3, 4, 4)
    # a half-side crop resized to half size: a 4x4 window of the original (integer offsets aside)
    assert out.min() >= img.min() and out.max() <= img.max()
    n1 = noise(0.1)(img, RandomSource([7, 8]))
    n2 = noise(0.1)(img, RandomSource([7, 8]))
    assert torch.equal(n1, n2) and (n1 - img).std().item() == pytest.approx(0.1, rel=0.2)
    with pytest.raises(ValueError, match="scale"):
        random_crop((0.0, 1.0))
    # batch of images = separate renders: image 1 of a batch equals a render of image 1 alone
    t = compose(random_crop((0.5, 1.0)), random_flip(), noise(0.05))
    both = t(img, RandomSource([11, 12]))
    one = t(img[1:], RandomSource([12]))
    assert torch.allclose(both[1:], one, atol=1e-6)


def test_presets_resolve_and_schedule():
    assert set(presets.PRESETS) >= {"lucid", "maco"}
    kw = presets.resolve("maco", batch=3, steps=20, size=32)
    assert isinstance(kw["param"], featvis.param.Maco) and kw["param"].batch == 3 and kw["param"].size == (32, 32)
    assert kw["steps"] == 20
    lucid = presets.resolve("lucid", batch=1)
    assert isinstance(lucid["param"], featvis.param.Fourier) and lucid["param"].size == (128, 128)
    # the optimizer factory follows the schedule
    w = nn.Parameter(torch.zeros(1))
    opt = kw["optimizer"]([w])
    lrs = []
    for _ in range(20):
        w.grad = torch.ones(1)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    base = presets.get("maco").lr
    assert lrs[0] < 0.5 * base and max(lrs) == pytest.approx(base, rel=0.1) and lrs[-1] < 0.3 * base
    with pytest.raises(ValueError, match="no preset 'nope'; choose one of"):
        presets.get("nope")
    # explicit arguments win
    mine = featvis.param.fourier(16)
    assert presets.resolve("maco", param=mine)["param"] is mine


def test_render_with_preset_raises_the_objective():
    model = featvis.wrap(TinyNet(), normalize=None)
    obj = channel("conv2", 1)
    start = featvis.evaluate(model, obj, maco(32)().detach())
    result = featvis.render(model, obj, preset="maco", steps=24, seed=0, progress=False,
                            param=maco(32))
    assert result.images.shape == (1, 3, 32, 32)
    assert result.values.item() > start.item()


# --- faithfulness: a planted "fooling" path (Geirhos et al. 2023) ------------------------------

class Planted(nn.Module):
    """A unit that natural images (smooth, reddish) drive through an honest path, and that a
    planted path drives far harder: a detector of a pixel checkerboard, which natural images never
    contain. ``fool=False`` cuts the planted path (the honest network)."""

    def __init__(self, fool: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False, padding_mode="reflect")
        checker = torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]]) - 1 / 9  # sums to 0
        smooth = torch.ones(3, 3) / 9
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.weight[0] = torch.stack([smooth, -smooth, -smooth])  # red minus the rest
            self.stem.weight[1] = torch.stack([-smooth, smooth, -smooth])  # green minus the rest
            self.stem.weight[2] = torch.stack([smooth, smooth, smooth]) / 3  # brightness
            self.stem.weight[3] = torch.stack([checker] * 3) / 3  # pixel checkerboard
        self.honest = nn.Conv2d(4, 2, 1)
        self.planted = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.honest.weight.zero_(), self.honest.bias.zero_()
            self.honest.weight[0, 0], self.honest.weight[1, 2] = 1.0, 0.2
            self.honest.bias[0] = 0.6  # alive on gray and noise, so the optimization can start
            self.planted.weight.zero_(), self.planted.bias.zero_()
            self.planted.bias[0] = -0.04  # the checker detector is silent on smooth images
            self.planted.weight[0, 3] = 1.0  # the checkerboard
            self.planted.weight[1, 2] = 0.1  # and a little brightness
        self.unit = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.unit.weight.zero_(), self.unit.bias.zero_()
            self.unit.weight[0, 0] = 1.0  # red things
            self.unit.weight[0, 2] = 20.0 if fool else 0.0  # or a checkerboard
            self.unit.weight[1, 1] = 1.0

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.unit(torch.cat([torch.relu(self.honest(h)), torch.relu(self.planted(h))], 1))


def _natural(n=6, size=32):
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=size, mode="bilinear",
                                           align_corners=False)
    return (base * torch.tensor([1.0, 0.4, 0.4]).view(1, 3, 1, 1)).clamp(0, 1)  # smooth, reddish


def test_faithfulness_separates_a_real_visualization_from_a_fooling_one():
    planted, honest = featvis.wrap(Planted(True), normalize=None), featvis.wrap(Planted(False), normalize=None)
    honest.net.load_state_dict(planted.net.state_dict())  # same weights ...
    with torch.no_grad():
        honest.net.unit.weight[0, 2] = 0.0  # ... but the planted path cut
    obj = channel("unit", 0)
    natural = _natural()
    # On natural images the planted path hardly matters ...
    on_natural = featvis.evaluate(planted, obj, natural) / featvis.evaluate(honest, obj, natural)
    assert on_natural.max() < 1.01
    # ... yet the optimization, from the same noise, goes through it.
    init = 0.3 + 0.4 * torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kw = dict(transforms=identity(), steps=48, seed=0, progress=False, lr=0.05, init=init)
    real = featvis.render(honest, obj, param=featvis.param.pixel(32), **kw).images
    fooled = featvis.render(planted, obj, param=featvis.param.pixel(32), **kw).images
    assert featvis.evaluate(planted, obj, fooled) > 3 * featvis.evaluate(planted, obj, real)
    path = metrics.path_layers(planted, obj, 32)
    assert path == ["stem", "honest", "planted", "unit"]
    f_real = metrics.faithfulness(planted, obj, real[0], natural)
    f_fooled = metrics.faithfulness(planted, obj, fooled[0], natural)
    f_natural = metrics.faithfulness(planted, obj, natural[0], natural[1:])  # a photo vs the others
    assert isinstance(f_real, float)
    assert f_natural > 0.9 and f_real > f_fooled + 0.15, (f_natural, f_real, f_fooled)
    layers = metrics.faithfulness(planted, obj, torch.cat([real, fooled]), natural, per_layer=True)
    assert list(layers) == path
    assert layers["honest"][0] > 0.95  # the real picture takes the honest path like the photos
    assert layers["planted"][0] > layers["planted"][1] + 0.5  # the fooling one lights up the planted path
    with pytest.raises(ValueError, match="natural_images"):
        metrics.faithfulness(planted, obj, real, torch.rand(0, 3, 8, 8))


def test_saturation():
    img = torch.full((3, 4, 4), 0.5)
    img[:, 0, :2] = 0.0
    img[:, 1, :2] = 1.0
    assert metrics.saturation(img) == pytest.approx(4 / 16)


def test_faithfulness_command_scores_a_render_folder(tmp_path, capsys):
    """featvis faithfulness DIR: each render against its own top-k examples and the others'."""
    import json
    import shutil

    from PIL import Image

    from featvis.analysis.topk import load_image
    from featvis.cli import main
    from featvis.param import image_tensor
    out, pics = tmp_path / "renders", tmp_path / "pics"
    pics.mkdir()
    for i in range(6):
        Image.fromarray((np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8)).save(pics / f"{i}.png")
    assert main(["render", "toy", "conv2", "--channels", "0:3", "--weights", "none", "--steps", "4", "--size", "32",
                 "--out", str(out)]) == 0
    assert main(["faithfulness", str(out)]) == 2  # no dataset examples yet
    assert "featvis topk MODEL LAYER --images DIR --out" in capsys.readouterr().err
    assert main(["topk", "toy", "conv2", "--channels", "0:3", "--images", str(pics), "--k", "2", "--size", "40",
                 "--weights", "none", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["faithfulness", str(out), "--json", str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out
    assert "against its own channel's top-k examples and the other 2 channels'" in printed and "/3" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())["conv2"]
    assert scores["compared"] == 3 and sorted(scores["channels"]) == ["0", "1", "2"]

    # the same numbers as metrics.faithfulness on the files, own and others
    model = featvis.models.open.open_model("toy", "none", "cpu", 0)  # the folder's network: random init from its seed
    m = json.loads((out / "manifest.json").read_text())
    examples = {c: torch.stack([load_image(pics / r["image"], 40) for r in m["topk"]["conv2"]["channels"][str(c)]])
                for c in range(3)}
    for c in range(3):
        image = image_tensor(Image.open(out / f"conv2/{c}.png").convert("RGB"))
        own = metrics.faithfulness(model, channel("conv2", c), image, examples[c])
        others = [metrics.faithfulness(model, channel("conv2", c), image, examples[o]) for o in range(3) if o != c]
        entry = scores["channels"][str(c)]["images"][str(c)]
        assert entry["own"] == pytest.approx(own, abs=1e-5)
        assert entry["others"] == pytest.approx(sum(others) / 2, abs=1e-5)
        assert entry["rank"] == 1 + sum(o > own for o in others)

    shutil.rmtree(pics)  # the dataset moved: the saved crops stand in
    assert main(["faithfulness", str(out), "--layer", "conv2"]) == 0
    assert main(["faithfulness", str(out), "--layer", "conv1"]) == 2
    assert "layer 'conv1'" in capsys.readouterr().err


def test_a_preset_with_weight_decay_steps_adamw_on_the_schedule():
    """``Preset.weight_decay``: decoupled decay (AdamW), scaled by the scheduled learning rate, so
    a coefficient without gradient shrinks by lr * decay per step."""
    p = dataclasses.replace(presets.get("lucid"), weight_decay=0.5)
    w = nn.Parameter(torch.ones(1))
    opt = p.optimizer(steps=10)([w])
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.5
    w.grad = torch.zeros(1)
    opt.step()
    assert w.item() == pytest.approx(1 - p.lr * p.schedule(0.0) * 0.5)
    assert type(presets.get("lucid").optimizer(steps=10)([nn.Parameter(torch.ones(1))])) is torch.optim.Adam
