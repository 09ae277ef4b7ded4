"""The hand-coded model responds as designed, and rendering finds what it was designed for."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import featvis
from featvis.analysis import metrics, selfcheck
from featvis.models import handcoded as hc
from featvis.objectives import channel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return featvis.load_model("handcoded", device=None)


def interior(model, images, layer, margin=8):
    """(N, C, h, w) activations away from the border, where the convolutions' zero padding
    (gray, after centring) would add edges of its own."""
    return featvis.activations(model, images, layer)[layer][..., margin:-margin, margin:-margin]


def mean_act(model, images, layer):
    """(N, C) channel means over the interior."""
    return interior(model, images, layer).flatten(2).mean(2)


def max_act(model, images, layer):
    """(N, C) channel maxima over the interior."""
    return interior(model, images, layer, margin=4).flatten(2).max(2).values


def test_registered_and_constructed(model):
    assert "handcoded" in dict(featvis.list_models())
    assert [len(model.preferred[k]) for k in ("edges", "curves")] == [12, 8]
    assert [p["orientation"] for p in model.preferred["edges"][:8]] == [i * 22.5 for i in range(8)]
    assert [p["bend"] for p in model.preferred["curves"]] == [i * 45.0 for i in range(8)]
    other = featvis.load_model("handcoded", weights=None, device=None)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)  # constructed, so the same every time
    with pytest.raises(ValueError, match="constructed"):
        featvis.load_model("handcoded", weights="weights.pt")


def test_edges_prefer_their_orientation(model):
    prefs = model.preferred["edges"]
    for c in range(8):
        theta = prefs[c]["orientation"]
        lines = torch.stack([hc.line(theta), hc.line(theta + 90)])
        gratings = torch.stack([hc.grating(theta), hc.grating(theta + 90)])
        along, across = max_act(model, lines, "edges")[:, c]
        assert along > 5 * across, (c, along, across)
        along, across = mean_act(model, gratings, "edges")[:, c]
        assert along > 5 * across, (c, along, across)
        # and the unit is the best of the 8 luminance units at its orientation
        assert mean_act(model, gratings[:1], "edges")[0, :8].argmax() == c


def test_colour_opponent_units_prefer_red_green(model):
    for i, c in enumerate(range(8, 12)):
        theta = model.preferred["edges"][c]["orientation"]
        assert model.preferred["edges"][c]["colour"] == "red/green"
        stims = torch.stack([
            hc.grating(theta, colour=((1, 0, 0), (0, 1, 0))),  # red / green
            hc.grating(theta),  # light / dark
            hc.grating(theta, colour=((0, 0, 1), (1, 1, 0))),  # blue / yellow
        ])
        rg, lum, by = mean_act(model, stims, "edges")[:, c]
        assert rg > 0.2 and lum < 1e-6 and rg > 3 * by, (c, rg, lum, by)
    # luminance units ignore an isoluminant red/green grating (R + G is constant)
    iso = hc.grating(0, colour=((1, 0, 0), (0, 1, 0)))[None]
    assert mean_act(model, iso, "edges")[0, :8].abs().max() < 1e-6


def test_curves_prefer_arcs_bending_their_way(model):
    prefs = model.preferred["curves"]
    for c, p in enumerate(prefs):
        stims = torch.stack([
            hc.arc(p["bend"], p["radius"]),  # the designed stimulus
            hc.line(p["orientation"]),  # straight, tangent to the apex
            hc.arc(p["bend"] + 180, p["radius"]),  # bending the other way
        ])
        arc, straight, opposite = max_act(model, stims, "curves")[:, c]
        assert arc > 3 * straight and arc > 2.5 * opposite, (c, arc, straight, opposite)
        # and the designed arc drives this unit more than any other curve unit
        assert max_act(model, stims[:1], "curves")[0].argmax() == c


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_render_recovers_edge_orientations(model, param):
    prefs = model.preferred["edges"]
    n = len(prefs)
    make = {"fourier": featvis.param.fourier, "pixel": featvis.param.pixel}[param]
    result = featvis.render(model, channel("edges", list(range(n))), param=make(32, batch=n),
                            steps=48, lr=0.05 if param == "fourier" else 0.2, seed=0, progress=False, device=None)
    err = metrics.orientation_error(result, prefs)
    assert err.shape == (n,)
    assert (err <= 15).all(), dict(enumerate(np.round(err, 1)))


def test_render_recovers_curve_bends(model):
    prefs = model.preferred["curves"]
    result = featvis.render(model, channel("curves", list(range(8))), param=featvis.param.fourier(48, batch=8),
                            steps=96, seed=0, progress=False, device=None)
    assert (metrics.bend_error(result, prefs) <= 45).all(), np.round(metrics.bend(result))
    assert (metrics.bend_strength(result) >= 0.3).all()
    # what was found beats a grating at each unit's orientation on the rendered objective
    gratings = torch.stack([hc.grating(p["orientation"], 48) for p in prefs])
    on_grating = featvis.activations(model, gratings, "curves")["curves"].flatten(2).mean(2).diagonal()
    assert (result.values > 2 * on_grating).all(), (result.values, on_grating)


def test_selfcheck_fails_when_the_optimization_barely_ran(capsys, tmp_path):
    assert selfcheck.main(["--steps", "2", "--size", "32", "--quiet", "--out", str(tmp_path / "sc")]) == 1
    out = capsys.readouterr().out
    assert "edges:11" in out and "curves:7" in out and "units passed" in out
    # the renderings are saved to look at: every unit, and a titled sheet per layer
    assert sorted(p.name for p in (tmp_path / "sc" / "curves").iterdir()) == sorted(f"{c}.png" for c in range(8))
    assert len(list((tmp_path / "sc" / "edges").iterdir())) == 12
    from PIL import Image
    assert Image.open(tmp_path / "sc" / "curves_sheet.png").width >= 3 * 128
    assert str(tmp_path / "sc" / "curves_sheet.png") in out


def test_selfcheck_table():
    rows = [{"layer": "curves", "channel": 2, "preferred": {"kind": "curve", "bend": 90.0, "orientation": 0.0},
             "orientation": 3.0, "orientation_error": 3.0, "bend": 80.0, "bend_error": 10.0, "bend_strength": 0.5,
             "robustness": 0.9, "spectrum_slope": -2.1, "activation_ratio": 1.2, "ok": True}]
    table = selfcheck.format_table(rows)
    assert "curves:2" in table and "curve bend 90 (U)" in table and "3.0 / 10" in table


def test_selfcheck_module_entry_point():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "featvis.analysis.selfcheck", "--help"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--steps" in out.stdout


@pytest.mark.slow
def test_selfcheck_passes():
    rows, ok = selfcheck.run(steps=selfcheck.STEPS, device=None, progress=False)
    assert ok, selfcheck.format_table(rows)
    assert len(rows) == 20
