import pytest
import torch

import featvis
from featvis import objectives as O
from featvis import param, transforms
from featvis.render import evaluate

from .conftest import Tiny


def quick(model, obj, **kw):
    kw.setdefault("param", param.fourier(16, batch=kw.pop("batch", 1)))
    kw.setdefault("steps", 20)
    kw.setdefault("seed", 0)
    return featvis.render(model, obj, progress=False, snapshots=(0,), **kw)


@pytest.mark.parametrize("obj", [
    O.channel("conv2", 3),
    O.neuron("conv2", 1),
    O.neuron("conv1", 2, x=3, y=12),
    O.direction("conv2", torch.linspace(-1, 1, 12)),
    O.direction_neuron("conv2", torch.linspace(1, -1, 12)),
    O.deepdream("conv1"),
    O.channel("fc", 2),
    -O.total_variation(),
    -O.l2(constant=0.5),
    -O.l1(constant=0.5),
], ids=lambda o: o.name)
def test_each_objective_rises(tiny, obj):
    # A neuron's position is on the map of the transformed image; without transforms the final,
    # untransformed evaluation looks at the same unit.
    positional = "@" in obj.name
    r = quick(tiny, obj, lr=0.05, transforms=[] if positional else None)
    before = evaluate(tiny, obj, r.snapshots[0])
    assert (r.values > before).all(), (before, r.values)


def test_string_objective_and_result_fields(tiny):
    r = quick(tiny, "conv2:3", steps=3)
    assert r.images.shape == (1, 3, 16, 16) and r.images.dtype == torch.float32
    assert r.images.device.type == "cpu" and 0 <= r.images.min() and r.images.max() <= 1
    assert r.values.shape == (1,) and r.objective == "channel(conv2:3)" and r.steps == 3
    assert len(r.to_pil()) == 1 and r.to_pil()[0].size == (16, 16)


def test_batch_indexed_objectives_give_each_image_its_target(tiny):
    chans = [0, 5, 9]
    obj = sum(O.channel("conv2", c, batch=i) for i, c in enumerate(chans))
    r = featvis.render(tiny, obj, param=param.fourier(16, batch=3), steps=40, seed=1, progress=False)
    table = torch.stack([evaluate(tiny, O.channel("conv2", c), r.images) for c in chans], 1)  # (image, channel)
    assert (table.argmax(0) == torch.arange(3)).all(), table  # image i is the best one for channel i


def test_default_param_size_follows_objective_batch(tiny):
    r = featvis.render(tiny, O.channel("conv2", [1, 2]), steps=1, progress=False)
    assert r.images.shape == (2, 3, 128, 128)


def test_diversity_makes_batch_less_alike(tiny):
    def gram_similarity(images):
        return -O.diversity("conv2")(featvis.activations(tiny, images, "conv2")).sum()

    plain = quick(tiny, O.channel("conv2", 3), batch=4, steps=30)
    diverse = quick(tiny, O.channel("conv2", 3) + 10 * O.diversity("conv2"), batch=4, steps=30)
    assert gram_similarity(diverse.images) < gram_similarity(plain.images)


def test_hooks_removed_after_render_and_after_error(tiny):
    quick(tiny, "conv2:1", steps=2)
    assert sum(len(m._forward_hooks) for m in tiny.modules()) == 0
    with pytest.raises(IndexError, match="out of range"):
        quick(tiny, "conv2:99", steps=2)
    assert sum(len(m._forward_hooks) for m in tiny.modules()) == 0


def test_forward_stops_at_target_layer(tiny):
    quick(tiny, "conv2:1", steps=3)
    assert tiny.calls["conv3"] == 0
    quick(tiny, "conv3:1", steps=3)
    assert tiny.calls["conv3"] > 0


def test_weights_get_no_grad_and_flags_restored(tiny):
    tiny.conv1.weight.requires_grad_(True)
    tiny.conv2.weight.requires_grad_(False)
    tiny.train()
    quick(tiny, "conv3:1", steps=2)
    assert all(p.grad is None for p in tiny.parameters())
    assert tiny.conv1.weight.requires_grad and not tiny.conv2.weight.requires_grad
    assert tiny.training


def test_seed_determinism(tiny):
    kw = dict(steps=5, batch=2)
    a, b = quick(tiny, "conv2:1", seed=3, **kw), quick(tiny, "conv2:1", seed=3, **kw)
    c = quick(tiny, "conv2:1", seed=4, **kw)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert a.seeds == b.seeds != c.seeds


def test_image_seed_list_makes_image_independent_of_batch(tiny):
    obj2 = O.channel("conv2", [1, 4])
    pair = featvis.render(tiny, obj2, param=param.fourier(16, batch=2), steps=5, seed=[11, 12], progress=False)
    alone = featvis.render(tiny, O.channel("conv2", 4), param=param.fourier(16), steps=5, seed=[12], progress=False)
    assert torch.allclose(pair.images[1], alone.images[0], atol=1e-5)


def test_nonfinite_loss_stops_with_step_and_objective(tiny):
    bad = O.channel("conv2", 1) / 0.0 * 0.0  # nan
    with pytest.raises(FloatingPointError, match=r"channel\(conv2:1\) / 0 \* 0 became non-finite .* at step 0"):
        quick(tiny, bad, steps=20)


def test_snapshots_and_custom_optimizer(tiny, tmp_path):
    r = featvis.render(tiny, "conv2:1", param=param.pixel(12, 10), steps=4, seed=0, progress=False,
                       optimizer=torch.optim.SGD, lr=1.0, snapshots=(0, 2, 4), transforms=[transforms.jitter(2)])
    assert sorted(r.snapshots) == [0, 2, 4] and torch.equal(r.snapshots[4], r.images)
    assert r.images.shape == (1, 3, 10, 12)
    paths = r.save(tmp_path / "x.png")
    assert [p.name for p in paths] == ["x.png"] and paths[0].stat().st_size > 0


def test_bad_precision(tiny):
    with pytest.raises(ValueError, match="precision"):
        quick(tiny, "conv2:1", precision="fp8")


def test_works_for_plain_modules_with_default_normalization():
    model = Tiny().eval()
    r = featvis.render(model, "relu1:0", param=param.fourier(8), steps=2, seed=0, progress=False)
    assert r.images.shape == (1, 3, 8, 8)
