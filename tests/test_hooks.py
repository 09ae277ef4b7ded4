import pytest
import torch

import featvis
from featvis.hooks import capture


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_capture_records_stops_early_and_cleans_up(tiny):
    x = torch.rand(2, 3, 16, 16)
    with capture(tiny, ["conv1", "relu2"]) as run:
        assert n_hooks(tiny) == 2
        out = run(x)
    assert n_hooks(tiny) == 0
    assert set(out) == {"conv1", "relu2"}
    assert out["relu2"].shape == (2, 12, 8, 8)
    assert tiny.calls["conv3"] == 0  # the layer after the last one read never ran
    assert run.stopped_early


def test_stored_output_is_a_copy_not_changed_by_inplace_ops(tiny):
    # conv2 is followed by ReLU(inplace=True); without the clone the stored conv2 output would be rectified
    x = torch.rand(1, 3, 16, 16)
    with capture(tiny, ["conv2", "conv3"]) as run:
        out = run(x)
    assert (out["conv2"] < 0).any()


def test_hooks_removed_after_exception(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with capture(tiny, ["conv1"]):
            raise RuntimeError("boom")
    assert n_hooks(tiny) == 0


def test_unknown_layer_names_close_matches(tiny):
    with pytest.raises(KeyError, match=r"no layer 'conv4' in Tiny; close matches: conv3, conv2, conv1 \(see: featvis\.layers\(model\)\)"):
        with capture(tiny, ["conv4"]):
            pass
    assert n_hooks(tiny) == 0


def test_layer_that_never_runs(tiny):
    tiny.unused = torch.nn.Conv2d(1, 1, 1)
    with capture(tiny, ["unused"]) as run, pytest.raises(RuntimeError, match="never ran"):
        run(torch.rand(1, 3, 8, 8))


def test_activations_wraps_and_stops(tiny):
    acts = featvis.activations(tiny, torch.rand(2, 3, 16, 16), "conv2")
    assert acts["conv2"].shape == (2, 12, 8, 8) and not acts["conv2"].requires_grad
    assert tiny.calls["conv3"] == 0


def test_wrap_keeps_layer_names_and_normalizes(tiny):
    m = featvis.wrap(tiny, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert "conv1" in m.named_layers() and "net.conv1" not in m.named_layers()
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(m(x), tiny((x - 0.5) / 0.25))
    assert torch.equal(featvis.wrap(tiny, normalize=None)(x), tiny(x))
    assert featvis.wrap(tiny, normalize=((0.5,), (0.5,))).in_channels == 1  # one value each: a grayscale net
    with pytest.raises(ValueError, match="one value per input channel"):
        featvis.wrap(tiny, normalize=((0.5, 0.5, 0.5), (0.5,)))


def test_layers_listing(tiny):
    info = {l.name: l for l in featvis.layers(tiny, size=16)}
    assert info["conv2"].channels == 12 and info["conv2"].shape == (12, 8, 8)
    assert info["fc"].type == "Linear" and info["fc"].shape == (5,)


def test_logits_layer_is_the_model_output(tiny):
    x = torch.rand(2, 3, 16, 16)
    acts = featvis.activations(tiny, x, "logits")
    assert torch.allclose(acts["logits"], featvis.wrap(tiny)(x))
    from featvis.objectives import class_logit
    assert torch.allclose(featvis.evaluate(tiny, class_logit(3), x), featvis.wrap(tiny)(x)[:, 3])
