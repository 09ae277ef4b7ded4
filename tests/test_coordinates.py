"""One coordinate system for "layer:channel@x,y": the layer's map for the bare image at the size
being rendered, during optimization as in Result.values and evaluate()."""
import pytest
import torch

import featvis
from featvis.objectives import neuron


@pytest.fixture(scope="module")
def handcoded():
    return featvis.load_model("handcoded", device="cpu")


def _bare_map(model, layer, size):
    acts = featvis.activations(model, torch.full((1, 3, size, size), 0.5), layer)[layer]
    return acts.shape[-2:]


def test_optimized_neuron_is_the_reported_one(handcoded):
    layer, size = "curves", 64
    H, W = _bare_map(handcoded, layer, size)
    x, y = W // 2 + 6, H // 2 - 5  # off centre, so that a shift between the two systems shows
    spec = f"{layer}:0@{x},{y}"
    r = featvis.render(handcoded, spec, param=featvis.param.fourier(size), steps=48, seed=0, progress=False)
    assert torch.allclose(r.values, featvis.evaluate(handcoded, spec, r.images), atol=1e-5)
    fmap = featvis.activations(handcoded, r.images, layer)[layer][0, 0]  # (H, W) of the final image
    assert r.values[0] > 0 and torch.isclose(fmap[y, x], r.values[0], atol=1e-5)
    # the optimized position stands out against the positions the canvas offset would have hit
    off = 3
    assert fmap[y, x] > fmap[y - off, x - off] and fmap[y, x] > fmap[y + off, x + off]


def test_out_of_range_position_fails_before_optimizing(handcoded):
    H, W = _bare_map(handcoded, "curves", 64)
    steps = []
    with pytest.raises(IndexError, match=rf"x={W} is outside layer 'curves', whose map is {W} wide x {H} high"):
        featvis.render(handcoded, f"curves:0@{W},0", param=featvis.param.fourier(64), steps=1000, seed=0,
                       progress=steps.append)
    assert steps == []  # it failed before the first step, not after optimizing


def test_canvas_shift():
    """On a map 6 larger (a padded canvas), the bare map's (x, y) sits 3 further in."""
    obj = neuron("l", 0, x=1, y=2)
    t = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10)
    assert torch.equal(obj({"l": t[:, :, 3:7, 3:7]}), t[:, 0, 2 + 3, 1 + 3])  # unbound: as given
    obj.bind({"l": (1, 4, 4)})
    assert torch.equal(obj({"l": t}), t[:, 0, 2 + 3, 1 + 3])
    assert torch.equal(obj({"l": t[:, :, 3:7, 3:7]}), t[:, 0, 2 + 3, 1 + 3])
    composed = 2 * obj + neuron("l", 0)  # binding reaches leaves through the algebra
    composed.bind({"l": (1, 4, 4)})
    assert torch.equal(composed({"l": t}), 2 * t[:, 0, 5, 4] + t[:, 0, 5, 5])
