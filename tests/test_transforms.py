import pytest
import torch

from featvis import transforms as T
from featvis.rng import RandomSource


def test_pad_2x2_exact():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    out = T.pad(1, value=0.5)(x)
    expected = torch.tensor([
        [0.5, 0.5, 0.5, 0.5],
        [0.5, 1.0, 2.0, 0.5],
        [0.5, 3.0, 4.0, 0.5],
        [0.5, 0.5, 0.5, 0.5],
    ]).view(1, 1, 4, 4)
    assert torch.equal(out, expected)


def test_pad_as_warp_equals_pad():
    x = torch.rand(2, 3, 5, 7)
    fused = T.compose(T.pad(2, value=0.25))(x, RandomSource([1, 2]))
    assert torch.allclose(fused, T.pad(2, value=0.25)(x), atol=1e-6)


def test_pad_reflect_and_bad_mode():
    x = torch.arange(4.0).view(1, 1, 1, 4)
    assert T.pad(1, mode="reflect")(x.expand(1, 1, 2, 4).contiguous())[0, 0, 1].tolist() == [1, 0, 1, 2, 3, 2]
    with pytest.raises(ValueError, match="pad mode"):
        T.pad(1, mode="wrap")


def test_jitter_is_an_integer_crop_per_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    rng = RandomSource([3, 4])
    u = RandomSource([3, 4]).uniform(2)  # the same draws the transform will make
    offsets = (u * 3).floor().long()
    out = T.jitter(2)(x, rng)
    assert out.shape == (2, 1, 4, 4)
    for i in range(2):
        ox, oy = offsets[i].tolist()
        assert torch.allclose(out[i, 0], x[i, 0, oy:oy + 4, ox:ox + 4], atol=1e-4)


def test_each_image_draws_its_own_jitter():
    x = torch.rand(1, 3, 16, 16).expand(8, 3, 16, 16).contiguous()
    out = T.jitter(6)(x, RandomSource(list(range(8))))
    distinct = {tuple(o.flatten()[:20].tolist()) for o in out}
    assert len(distinct) > 1


def test_image_draws_depend_only_on_its_seed():
    x = torch.rand(3, 3, 20, 20)
    t = T.standard()
    batch = t(x, RandomSource([10, 11, 12]))
    single = t(x[1:2], RandomSource([11]))
    assert torch.allclose(batch[1:2], single, atol=1e-6)


def test_rotate_by_90_degrees_is_exact():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    out = T.random_rotate([90])(x, RandomSource([0]))
    # counter-clockwise on screen: the top row becomes the left column, read upwards
    assert torch.allclose(out[0, 0], torch.rot90(x[0, 0], 1, dims=(0, 1)), atol=1e-5)


def test_scale_two_about_centre():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    x[0, 0, 2, 3] = 1.0
    out = T.random_scale([2.0])(x, RandomSource([0]))
    # the centre stays; the neighbour one pixel right moves two pixels right
    assert out[0, 0, 2, 2] == pytest.approx(1.0)
    assert out[0, 0, 2, 4] == pytest.approx(1.0)
    assert out.shape == x.shape


def test_standard_matches_lucid_sizes_and_parameters():
    t = T.standard()
    assert [type(s).__name__ for s in t.transforms] == ["Pad", "Jitter", "RandomScale", "RandomRotate", "Jitter"]
    assert t.transforms[0].w == 12 and t.transforms[0].value == 0.5
    assert t.transforms[1].d == 8 and t.transforms[4].d == 4
    assert t.transforms[2].scales.tolist() == pytest.approx([0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1])
    assert t.transforms[3].angles.tolist() == list(range(-10, 11)) + [0] * 5
    out = t(torch.rand(2, 3, 128, 128), RandomSource([0, 1]))
    assert out.shape == (2, 3, 140, 140)  # Lucid's canvas at scale 1: 128 + 24 - 8 - 4


def test_transforms_are_differentiable_and_deterministic():
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    a = T.standard()(x, RandomSource([5, 6]))
    b = T.standard()(x, RandomSource([5, 6]))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_compose_calls_plain_functions_and_breaks_fusion():
    x = torch.rand(1, 3, 8, 8)
    seen = []

    def record(img):
        seen.append(img.shape)
        return img * 2

    out = T.compose(T.pad(1), record, T.pad(1))(x, RandomSource([0]))
    assert seen == [(1, 3, 10, 10)] and out.shape == (1, 3, 12, 12)
    with pytest.raises(TypeError, match="not callable"):
        T.compose(3)
