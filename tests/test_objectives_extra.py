"""The rest of Lucid's objectives, the blur regularizer, transparency and the recipes."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import featvis
from featvis import param as P

from .conftest import tiny_model
from featvis import recipes
from featvis.objectives.channels import COS_EPS, cosine, dot_cossim
from featvis.objectives import (INPUT, activation_weighted, alignment, alpha_mean, blur_input_each_step, channel,
                                channel_interpolate, class_logit, direction_cossim, l1, l2, neuron,
                                neuron_interaction)
from featvis.transforms import blur, box_blur, identity


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def render(model, obj, param=None, steps=20, seed=0, **kw):
    param = P.fourier(16, batch=obj.batch_size or 1) if param is None else param
    return featvis.render(model, obj, param=param, steps=steps, seed=seed, progress=False,
                          transforms=kw.pop("transforms", identity()), **kw)


# --- exact values on hand-made activations -----------------------------------------------------
def test_channel_interpolate_weights_run_from_first_unit_to_second():
    a = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 3).clone()  # image i: channel 0 = i
    a[:, 1] = 10.0
    v = channel_interpolate("l", 0, "l", 1)({"l": a})
    w = torch.arange(4.0) / 3
    assert torch.allclose(v, (1 - w) * torch.arange(4.0) + w * 10)
    assert channel_interpolate("l", 0, "l", 1)({"l": a[:1]}).item() == 0.0  # one image: the first unit


def test_alignment_matches_lucids_sum_and_splits_pairs():
    torch.manual_seed(0)
    t = torch.randn(6, 3, 2, 2)
    v = alignment("l", decay_ratio=3)({"l": t})
    lucid = -sum(((t[i] - t[i + d]) ** 2).mean() / 3.0 ** d for d in range(1, 5) for i in range(6 - d))
    assert torch.allclose(v.sum(), lucid)
    assert v.shape == (6,) and (v <= 0).all()
    assert alignment("l")({"l": t[:1]}).item() == 0.0


def test_class_logit_neuron_interaction_and_weighted_activations_are_exact():
    torch.manual_seed(0)
    logits, t = torch.randn(3, 10), torch.randn(3, 4, 5, 5)
    assert torch.equal(class_logit(7, layer="fc")({"fc": logits}), logits[:, 7])
    assert torch.equal(class_logit([1, 2, 3], layer="fc")({"fc": logits}), logits[[0, 1, 2], [1, 2, 3]])
    both = neuron_interaction("l:1", "l:2@1,3")({"l": t})
    assert torch.allclose(both, channel("l", 1)({"l": t}) + neuron("l", 2, x=1, y=3)({"l": t}))
    assert torch.allclose(activation_weighted("l", torch.eye(4)[2])({"l": t}), channel("l", 2)({"l": t}))
    w = torch.randn(4, 5, 5)
    assert torch.allclose(activation_weighted("l", w)({"l": t}), (t * w).sum(1).mean((1, 2)))
    with pytest.raises(ValueError, match="do not fit"):
        activation_weighted("l", torch.randn(4, 3, 3))({"l": t})


def test_direction_cossim_is_a_cosine():
    v = torch.tensor([1.0, 2.0, 0.0])
    t = torch.zeros(2, 3, 2, 2)
    t[0] = 3 * v.view(3, 1, 1)     # parallel everywhere
    t[1] = -v.view(3, 1, 1)        # opposite everywhere
    out = direction_cossim("l", v)({"l": t})
    assert torch.allclose(out, torch.tensor([1.0, -1.0]), atol=1e-4)
    t2 = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1)
    cos = 3 / (5 ** 0.5 + COS_EPS) / (2 ** 0.5 + COS_EPS)  # the one cosine, with its epsilon
    assert torch.allclose(direction_cossim("l", v, cossim_pow=3)({"l": t2}), torch.tensor([cos ** 3]), atol=1e-4)


def test_l2_to_a_reference_image():
    ref = torch.rand(3, 8, 8)
    img = ref[None].clone()
    assert l2(ref)({INPUT: img}).item() < 2e-3  # sqrt(epsilon) = 1e-3 at zero distance
    shifted = (img + 0.1).clamp(0, 1)
    assert torch.allclose(l1(ref)({INPUT: shifted}), (shifted - ref).abs().mean().view(1))
    rgba = torch.cat([img, torch.ones(1, 1, 8, 8)], 1)  # RGBA compared by its colour
    assert l2(ref)({INPUT: rgba}).item() < 2e-3
    pil = Image.fromarray((ref.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    assert l2(pil)({INPUT: img}).item() < 0.01
    assert l2(ref)({INPUT: F.interpolate(img, size=16)}).item() < 0.2  # resized to the image


def test_blur():
    x = torch.rand(2, 3, 9, 9)
    assert torch.allclose(box_blur(torch.full((1, 3, 5, 5), 0.3)), torch.full((1, 3, 5, 5), 0.3))  # edges not darkened
    assert box_blur(x).std() < x.std()
    assert torch.equal(blur(3)(x), box_blur(x, 3))
    v = blur_input_each_step()({INPUT: x})
    assert torch.allclose(v, 0.5 * (x - box_blur(x)).pow(2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="odd"):
        blur(2)


# --- each new objective rises under optimization ------------------------------------------------
V = torch.randn(16, generator=torch.Generator().manual_seed(1))
W = torch.randn(16, generator=torch.Generator().manual_seed(2))
RISING = {
    "channel_interpolate": (channel_interpolate("conv2", 3, "conv2", 6), 3),
    "alignment": (alignment("conv2"), 3),
    "class_logit": (class_logit(4, layer="fc"), 1),
    "neuron_interaction": (neuron_interaction("conv2:3", "conv2:6@2,2"), 1),
    "direction_cossim": (direction_cossim("conv2", V), 1),
    "activation_weighted": (activation_weighted("conv2", W), 1),
    "blur_input_each_step": (-blur_input_each_step(), 1),
    "l2_reference": (-l2(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))), 1),
}


@pytest.mark.parametrize("name", sorted(RISING))
def test_new_objectives_rise_under_optimization(model, name):
    obj, batch = RISING[name]
    start = render(model, obj, P.fourier(16, batch=batch, sd=0.5), steps=0)
    end = render(model, obj, P.fourier(16, batch=batch, sd=0.5), steps=20)
    assert end.values.sum() > start.values.sum() + 1e-4, (start.values, end.values)


def test_alpha_penalty_rises_and_needs_rgba(model):
    start = render(model, -alpha_mean(), P.fourier(16, alpha=True), steps=0)
    end = render(model, -alpha_mean(), P.fourier(16, alpha=True), steps=20)
    assert end.values.item() > start.values.item()
    with pytest.raises(ValueError, match="alpha=True"):
        render(model, alpha_mean(), P.fourier(16), steps=1)


# --- interpolation ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interpolation_moves_monotonically_from_one_unit_to_the_other(seed):
    # Two linear colour units that compete for the same pixels. Adam is blind to the gradient's
    # scale, so from one shared start each pixel value moves by the sign of its weighted gradient,
    # which flips at most once along the batch: each unit can only fall (rise) frame to frame.
    net = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.2, -1.0], [-1.0, 1.0, 0.3]]).view(2, 3, 1, 1))
    m = featvis.wrap(nn.Sequential(OrderedDict([("units", net)])), normalize=None)
    B = 6
    r = render(m, channel_interpolate("units", 0, "units", 1), P.pixel(8, batch=B), steps=30, seed=[seed] * B)
    a = featvis.activations(m, r.images, "units")["units"].mean((2, 3))  # (B, 2)
    assert (a[1:, 0] <= a[:-1, 0] + 1e-6).all() and (a[1:, 1] >= a[:-1, 1] - 1e-6).all()
    assert a[0, 0] > a[-1, 0] + 0.1 and a[-1, 1] > a[0, 1] + 0.1


def test_interpolate_recipe_ends_at_its_two_units(model):
    r = recipes.interpolate(model, "conv1:2", "conv1:5", frames=4, size=16, steps=30, seed=0, progress=False,
                            transforms=identity())
    assert r.images.shape == (4, 3, 16, 16)
    a = featvis.activations(model, r.images, "conv1")["conv1"].mean((2, 3))
    assert a[0, 2] > a[-1, 2] and a[-1, 5] > a[0, 5]


# --- transparency -------------------------------------------------------------------------------
def test_transparent_images_are_rgba_and_the_penalty_clears_alpha(model, tmp_path):
    kw = dict(size=16, steps=25, seed=0, progress=False)
    free = recipes.transparent(model, "conv2:3", alpha_weight=0.0, **kw)
    light = recipes.transparent(model, "conv2:3", alpha_weight=0.1, **kw)
    heavy = recipes.transparent(model, "conv2:3", **kw)
    for r in (free, light, heavy):
        assert r.images.shape == (1, 4, 16, 16)
        assert r.images.min() >= 0 and r.images.max() <= 1
    alpha = lambda r: r.images[:, 3].mean().item()  # noqa: E731
    assert alpha(heavy) < alpha(light) < alpha(free)
    assert alpha(heavy) < alpha(free) - 0.05
    assert set(heavy.terms) == {"objective", "alpha"} and (heavy.terms["alpha"] <= 0).all()
    assert torch.allclose(heavy.terms["objective"] + heavy.terms["alpha"], heavy.values, atol=1e-5)
    (path,) = heavy.save(tmp_path / "t.png")
    assert Image.open(path).mode == "RGBA"
    with pytest.raises(ValueError, match="alpha=True"):
        recipes.transparent(model, "conv2:3", param=P.fourier(16), steps=1, progress=False)


# --- caricature -------------------------------------------------------------------------------
def _target():
    torch.manual_seed(3)
    return F.interpolate(torch.rand(1, 3, 4, 4), size=24, mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("layer", ["relu1", "conv2"])
def test_caricature_moves_activations_towards_the_target(model, layer):
    target = _target()
    acts = lambda x: featvis.activations(model, x, layer)[layer]  # noqa: E731
    start = recipes.caricature(model, target, layer, steps=0, seed=0, progress=False)
    end = recipes.caricature(model, target, layer, steps=40, seed=0, progress=False)
    assert end.images.shape == (1, 3, 24, 24) and end.values.shape == (1,)
    t = acts(target[None])
    assert (acts(end.images) - t).norm() < 0.8 * (acts(start.images) - t).norm()
    cos = lambda a: F.cosine_similarity(a.flatten(), t.flatten(), dim=0)  # noqa: E731
    assert cos(acts(end.images)) > cos(acts(start.images))


def test_caricature_target_goes_through_the_same_transforms(model):
    target = _target()[None]
    seen = []
    base = recipes.caricature_transforms()

    def spy(image, rng):
        out = base(image, rng)
        seen.append(out.detach())
        return out

    class Fixed(P.ImageParam):  # an "optimized" image that already equals the target
        def __init__(self):
            super().__init__()
            self.batch, self.height, self.width = 1, 24, 24
            self.zero = nn.Parameter(torch.zeros(()))

        def reset(self, rng):
            pass

        def forward(self):
            return target + 0 * self.zero

    recipes.caricature(model, target, "conv2", param=Fixed(), steps=3, seed=5, transforms=spy, progress=False)
    assert len(seen) == 3
    for out in seen:
        assert torch.allclose(out[0], out[1], atol=1e-6)


def test_one_cosine_weighted_dot_product():
    """direction, direction_neuron, direction_cossim and caricature share one cosine (one epsilon)."""
    a = torch.tensor([[3.0, 4.0, 0.0], [-1.0, 0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(cosine(a, b), torch.tensor([25 / (5 + COS_EPS) ** 2, -1 / (1 + COS_EPS) ** 2]))
    assert torch.equal(dot_cossim(a, b, 0), torch.tensor([25.0, -1.0]))
    # the cosine is floored at 0.1, so the weight never flips the dot product's sign
    assert torch.allclose(dot_cossim(a, b, 2), torch.tensor([25 * (25 / (5 + COS_EPS) ** 2) ** 2, -1 * 0.1 ** 2]))
    import inspect
    from featvis.objectives import direction_cossim
    assert "cosine(" in inspect.getsource(direction_cossim) and "dot_cossim(" in inspect.getsource(featvis.recipes)
    assert ".norm(" not in inspect.getsource(featvis.recipes)
