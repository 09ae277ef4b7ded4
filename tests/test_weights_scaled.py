"""Terms weighted relative to the objective (diversity, alpha), reported apart; dead units warned."""
import json
import warnings

import pytest
import torch
from torch import nn

import featvis
from featvis.jobs.job import prepare
from featvis.objectives import Objective, channel, diversity, scaled


def _obj(values):
    return Objective(lambda acts: acts["v"], ["v"], "v")


def test_scaled_follows_the_objective_size():
    v = torch.tensor([2.0, -4.0, 1.0, 3.0])
    term = Objective(lambda acts: acts["t"], ["t"], "t")
    acts = {"v": v, "t": torch.tensor([-0.5, -1.0, 0.0, -0.25])}
    out = scaled(_obj(v), term, 0.5, group=2, label="diversity")
    size = torch.tensor([3.0, 3.0, 2.0, 2.0])  # |v| averaged over each group of 2
    assert torch.allclose(out(acts), v + 0.5 * size * acts["t"])
    assert torch.allclose(out.terms["objective"](acts), v)
    assert torch.allclose(out.terms["diversity"](acts), 0.5 * size * acts["t"])
    # ten times the activations: ten times the value, the same balance
    big = {"v": 10 * v, "t": acts["t"]}
    assert torch.allclose(out(big), 10 * out(acts))


def test_size_carries_no_gradient():
    v = torch.tensor([2.0, 3.0], requires_grad=True)
    out = scaled(_obj(v), Objective(lambda acts: torch.ones(2), [], "one"), 1.0)
    out({"v": v}).sum().backward()
    assert torch.equal(v.grad, torch.ones(2))


def dead_net():
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.fill_(0.1)
        conv.bias.copy_(torch.tensor([0.0, -100.0, 0.0]))  # channel 1 never fires
    return featvis.wrap(nn.Sequential(conv, nn.ReLU()), normalize=None, name="deadnet")


featvis.models.register("deadnet_for_tests", "test model")(lambda weights=None: dead_net())


def test_render_warns_about_a_dead_unit():
    with pytest.warns(RuntimeWarning, match="0 with a zero gradient at the first step"):
        featvis.render(dead_net(), "1:1", param=featvis.param.fourier(8), steps=2, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        featvis.render(dead_net(), "1:0", param=featvis.param.fourier(8), steps=2, seed=0, progress=False)


def test_job_reports_diversity_apart_and_warns_dead_channels(tmp_path):
    job = prepare("deadnet_for_tests", "1", "0:3", tmp_path / "r", size=16, steps=4, diversity=2, batch=3,
                  diversity_weight=0.3, weights="none")
    with pytest.warns(RuntimeWarning, match=r"1: channel\(s\) 1 ended at 0"):
        job.run(progress=False)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["settings"]["diversity_weight"] == 0.3
    assert "0.3 * |channel(1:c)| * diversity(1)" in m["layers"]["1"]["objective"]
    for e in m["layers"]["1"]["images"].values():
        assert e["diversity"] <= 0 and (e["value"] == 0) == (e["channel"] == 1)


def test_diversity_weight_must_be_sane(tmp_path):
    from featvis.errors import UsageError
    with pytest.raises(UsageError, match="--diversity-weight -1.0: must be 0 or more"):
        prepare("deadnet_for_tests", "1", "0:1", tmp_path / "r", diversity=2, diversity_weight=-1, weights="none")


def test_diversity_term_is_scale_free():
    """A channel 10x larger gets a diversity weight 10x larger: the same images."""
    layer = "l"
    t = torch.rand(4, 3, 5, 5) + 0.1
    base = scaled(channel(layer, [0, 0, 1, 1]), diversity(layer, batch=[0, 1]) + diversity(layer, batch=[2, 3]),
                  0.5, group=2)
    assert torch.allclose(base({layer: 10 * t}), 10 * base({layer: t}), rtol=1e-5)
