import pytest
import torch

from featvis import objectives as O
from featvis.objectives import as_objective


def acts(B=2, C=4, H=3, W=5):
    t = torch.arange(B * C * H * W, dtype=torch.float32).view(B, C, H, W)
    return {"l": t, "input": torch.rand(B, 3, 8, 8)}


def test_channel_is_spatial_mean_and_works_on_logits():
    a = acts()
    assert torch.equal(O.channel("l", 2)(a), a["l"][:, 2].mean((1, 2)))
    logits = {"fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    assert O.channel("fc", 1)(logits).tolist() == [2.0, 5.0]


def test_channel_list_gives_each_image_its_own_channel():
    a = acts()
    v = O.channel("l", [3, 1])(a)
    assert v.tolist() == [a["l"][0, 3].mean().item(), a["l"][1, 1].mean().item()]
    assert O.channel("l", [3, 1]).batch_size == 2


def test_neuron_centre_and_xy_on_non_square_map():
    a = acts(H=3, W=5)
    assert torch.equal(O.neuron("l", 1)(a), a["l"][:, 1, 1, 2])  # centre: row 1, column 2
    assert torch.equal(O.neuron("l", 1, x=4, y=0)(a), a["l"][:, 1, 0, 4])  # x is the column
    with pytest.raises(IndexError, match="x=5"):
        O.neuron("l", 1, x=5, y=0)(a)


def test_channel_out_of_range_names_layer_and_size():
    with pytest.raises(IndexError, match=r"channel 9 is out of range for layer 'l', which has 4 channels"):
        O.channel("l", 9)(acts())


def test_batch_narrowing():
    a = acts()
    v = O.channel("l", 0, batch=1)(a)
    assert v[0] == 0 and v[1] == a["l"][1, 0].mean()
    assert O.channel("l", 0, batch=3).batch_size == 4
    with pytest.raises(ValueError, match="batch=3"):
        O.channel("l", 0, batch=3)(a)


def test_algebra_values_names_layers():
    a = {"l": acts()["l"], "m": acts()["l"] * 2, "input": torch.rand(2, 3, 4, 4)}
    c, d = O.channel("l", 0), O.channel("m", 1)
    assert torch.allclose((c + d)(a), c(a) + d(a))
    assert torch.allclose((c - 2 * d)(a), c(a) - 2 * d(a))
    assert torch.allclose((c / d)(a), c(a) / d(a))
    assert torch.allclose((-c)(a), -c(a))
    assert torch.allclose((1 - c)(a), 1 - c(a))
    assert torch.allclose((c * 3 + 1)(a), c(a) * 3 + 1)
    assert (c + d).layers == {"l", "m"}
    total = sum([O.channel("l", i, batch=i) for i in range(2)])
    assert total.batch_size == 2 and torch.allclose(total(a), torch.stack([a["l"][0, 0].mean(), a["l"][1, 1].mean()]))
    obj = O.channel("mixed4a", 476) - 0.05 * O.total_variation()
    assert obj.name == "channel(mixed4a:476) - 0.05 * total_variation()"
    assert (c - (d + c)).name == "channel(l:0) - (channel(m:1) + channel(l:0))"
    assert obj.layers == {"mixed4a", "input"}


def test_parse_strings():
    a = acts()
    assert torch.equal(as_objective("l:2")(a), O.channel("l", 2)(a))
    assert torch.equal(as_objective("l:2@4,0")(a), a["l"][:, 2, 0, 4])
    for bad in ["l", "l:x", "l:1@2", ":3"]:
        with pytest.raises(ValueError, match="layer:channel"):
            as_objective(bad)


def test_direction_cosine_weighting_and_errors():
    a = acts()
    v = torch.tensor([1.0, 0.0, 0.0, 0.0])
    plain = O.direction("l", v, cossim_pow=0)(a)
    assert torch.allclose(plain, a["l"][:, 0].mean((1, 2)))
    weighted = O.direction("l", v, cossim_pow=1)(a)
    assert (weighted < plain).all()  # cosine < 1 shrinks it
    with pytest.raises(ValueError, match="1-d"):
        O.direction("l", torch.ones(2, 2, 4))
    # a (B, C) matrix: image i follows row i, as if each had its own direction objective
    rows = torch.randn(a["l"].shape[0], 4)
    each = O.direction("l", rows, cossim_pow=1)(a)
    assert torch.allclose(each, torch.stack([O.direction("l", r, cossim_pow=1)(a)[i] for i, r in enumerate(rows)]))
    with pytest.raises(ValueError, match="one per image"):
        O.direction("l", torch.ones(a["l"].shape[0] + 1, 4))(a)
    with pytest.raises(ValueError, match="3 entries but layer 'l' has 4 channels"):
        O.direction("l", torch.ones(3))(a)
    n = O.direction_neuron("l", v, cossim_pow=0)(a)
    assert torch.equal(n, a["l"][:, 0, 1, 2])


def test_diversity_is_higher_for_different_images():
    same = {"l": torch.rand(1, 4, 3, 3).expand(3, 4, 3, 3)}
    diff = {"l": torch.rand(3, 4, 3, 3) ** 4}
    d = O.diversity("l")
    assert torch.allclose(d(same), torch.full((3,), -2 / 3), atol=1e-5)
    assert d(diff).sum() > d(same).sum()
    grouped = O.diversity("l", batch=[0, 2])(diff)
    assert grouped[1] == 0 and grouped[0] != 0


def test_penalties():
    flat = {"input": torch.full((2, 3, 4, 4), 0.5)}
    assert O.total_variation()(flat).tolist() == [0.0, 0.0]
    stripes = torch.zeros(1, 3, 4, 4)
    stripes[..., ::2] = 1.0
    assert O.total_variation()({"input": stripes}).item() == pytest.approx(1.0)
    assert O.l1()(flat).tolist() == [0.5, 0.5]
    assert O.l2(constant=0.5)(flat)[0].item() == pytest.approx(1e-3)
    assert O.deepdream("l")(acts()).shape == (2,)


def test_constants_are_copied_to_the_image_device_once():
    from featvis._cache import DeviceCopies
    from featvis.objectives.base import index_tensor
    c = DeviceCopies(torch.tensor([1.0, 2.0]))
    x = torch.zeros(1, dtype=torch.float64)
    assert c.like(x) is c.like(x) and c.like(x).dtype == torch.float64
    assert index_tensor((3, 1), torch.device("cpu")) is index_tensor((3, 1), torch.device("cpu"))
