"""A module called more than once in forward (a ResNet Bottleneck's relu) is one layer per call."""
import pytest
import torch
from torchvision.models.resnet import Bottleneck

import featvis
from featvis.errors import NotFound
from featvis.hooks import capture, split_call


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 256, 1), Bottleneck(256, 64)).eval()
    return featvis.wrap(net, normalize=None)


def test_split_call():
    assert split_call("layer1.0.relu#2") == ("layer1.0.relu", 2)
    assert split_call("layer1.0.relu") == ("layer1.0.relu", 1)
    assert split_call("odd#name") == ("odd#name", 1)


def test_each_call_is_a_layer(block):
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad(), capture(block, ["1.relu", "1.relu#2", "1.relu#3", "1"]) as run:
        acts = run(x)
    assert acts["1.relu"].shape[1] == 64 and acts["1.relu#2"].shape[1] == 64 and acts["1.relu#3"].shape[1] == 256
    assert torch.equal(acts["1.relu#3"], acts["1"])  # the last relu is the block's output
    assert not torch.equal(acts["1.relu"], acts["1.relu#2"])
    # the first call stops the forward pass as early as before
    with torch.no_grad(), capture(block, ["1.relu#3"]) as run:
        assert torch.equal(run(x)["1.relu#3"], acts["1"])


def test_layers_lists_every_call(block):
    rows = {li.name: li for li in featvis.layers(block, 16)}
    assert rows["1.relu"].channels == 64 and rows["1.relu"].calls == 3
    assert rows["1.relu#2"].channels == 64 and rows["1.relu#3"].channels == 256
    assert "1.relu#4" not in rows


def test_a_call_that_does_not_happen_is_named(block):
    with pytest.raises(NotFound, match=r"1.relu runs 3 time\(s\) per forward pass, not 4"):
        with capture(block, ["1.relu#4"]) as run:
            run(torch.rand(1, 3, 8, 8))


def test_render_a_later_call(block):
    r = featvis.render(block, "1.relu#3:200", param=featvis.param.fourier(16), steps=3, seed=0, progress=False)
    assert torch.allclose(r.values, featvis.evaluate(block, "1.relu#3:200", r.images))
    assert torch.allclose(r.values, featvis.evaluate(block, "1:200", r.images))


def test_truncate_takes_the_named_call(block):
    from featvis.accel import truncate
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        out = truncate(block, ["1.relu#2", "1.relu#3"])(x)
        with capture(block, ["1.relu#2", "1.relu#3"]) as run:
            ref = run(x)
    assert out["1.relu#2"].shape[1] == 64
    for k in ref:
        assert torch.allclose(out[k], ref[k])
