"""Expanded weights (featvis.circuits) against kernels composed by hand and the hand-coded wiring;
the ``featvis circuit`` command and its record; the example script."""
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.analysis.circuit_figure import heatmap
from featvis.analysis.circuits import Linearized, expanded_weights, rank_inputs, top_inputs
from featvis.cli import main
from featvis.errors import NotFound, UsageError
from featvis.models.handcoded import N_ORIENT, strokes_kernel

ROOT = Path(__file__).resolve().parents[1]


def compose(k2: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """The kernel of conv(k2) after conv(k1) (both stride 1, cross-correlation): (O, I, a+c-1, b+d-1)."""
    O, M, h2, w2 = k2.shape
    _, I, h1, w1 = k1.shape
    out = torch.zeros(O, I, h1 + h2 - 1, w1 + w2 - 1, dtype=k1.dtype)
    for a in range(h2):
        for b in range(w2):
            out[:, :, a:a + h1, b:b + w1] += torch.einsum("om,mikl->oikl", k2[:, :, a, b], k1)
    return out


def chain():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(5, 6, 3, padding=1)).double().eval()


@pytest.fixture(scope="module")
def handcoded():
    return featvis.load_model("handcoded", device="cpu")


# --- exactness -------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [9, 10, 5, 6])  # odd and even maps; 5 and 6 start too small and grow
def test_conv_chain_equals_the_composed_kernel(size):
    net = chain()
    W = expanded_weights(net, "0", "3", size=size, device="cpu")
    assert W.shape == (6, 4, 5, 5)
    torch.testing.assert_close(W, compose(net[3].weight, net[1].weight), rtol=0, atol=1e-14)


@pytest.mark.parametrize("size", [12, 13])
def test_strided_max_pool_becomes_an_average_on_even_and_odd_maps(size):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1)).double().eval()
    W = expanded_weights(net, "0", "2", size=size, device="cpu")
    # Each weight of the 3x3 conv covers a 2x2 block of the full-resolution map, a quarter each.
    expected = net[2].weight.repeat_interleave(2, 2).repeat_interleave(2, 3) / 4
    assert W.shape == (5, 4, 6, 6)
    torch.testing.assert_close(W, expected, rtol=0, atol=1e-14)


def test_through_an_inception_concat_each_branch_is_its_own_composition():
    model = featvis.load_model("inceptionv1", weights=None, device="cpu").double()
    net = model.net
    W = expanded_weights(model, "mixed3a", "mixed3b", batch=128, device="cpu")  # 4 backward passes
    assert W.shape == (480, 256, 5, 5)
    m = lambda part: getattr(net, f"mixed3b_{part}_pre_relu_conv").weight  # noqa: E731
    expected = torch.zeros(480, 256, 5, 5, dtype=torch.float64)
    expected[:128, :, 2:3, 2:3] = m("1x1")
    expected[128:320, :, 1:4, 1:4] = compose(m("3x3"), m("3x3_bottleneck"))
    expected[320:416] = compose(m("5x5"), m("5x5_bottleneck"))
    expected[416:, :, 1:4, 1:4] = compose(m("pool_reduce"), torch.full((256, 1, 3, 3), 1 / 9, dtype=torch.float64)
                                          * torch.eye(256, dtype=torch.float64)[:, :, None, None])
    torch.testing.assert_close(W, expected, rtol=0, atol=1e-12)


def test_keeping_the_relu_takes_the_gradient_at_src_zero():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(6, 2, 3, padding=1)).double().eval()
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))  # at src = 0 only even ones fire
    on = torch.tensor([1.0, 0, 1, 0, 1, 0], dtype=torch.float64)[None, :, None, None]
    kept = expanded_weights(net, "0", "3", linearize=False, device="cpu")
    torch.testing.assert_close(kept, compose(net[3].weight * on, net[1].weight), rtol=0, atol=1e-14)
    linear = expanded_weights(net, "0", "3", device="cpu")
    torch.testing.assert_close(linear, compose(net[3].weight, net[1].weight), rtol=0, atol=1e-14)


def test_linearized_mode_covers_functional_calls_and_is_gone_afterwards():
    x = torch.randn(1, 2, 4, 4)
    with Linearized():
        assert torch.equal(torch.relu(x), x) and torch.equal(nn.functional.gelu(x), x)
        assert torch.equal(nn.functional.max_pool2d(x, 2), nn.functional.avg_pool2d(x, 2))
        y = x.clone()
        assert nn.ReLU(inplace=True)(y) is y
        assert nn.functional.relu(x) is not x  # out of place: a new tensor
    assert torch.equal(torch.relu(x), x.clamp(min=0))


def test_the_users_model_is_left_as_it_was(tiny):
    tiny.train()
    tiny.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    modules = [(n, type(m)) for n, m in tiny.named_modules()]
    flags = [p.requires_grad for p in tiny.parameters()]
    x = torch.rand(2, 3, 16, 16)
    out = tiny(x)
    W = expanded_weights(tiny, "relu1", "conv3", device="cpu")
    assert W.shape[:2] == (6, 8)
    assert [(n, type(m)) for n, m in tiny.named_modules()] == modules
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert [p.requires_grad for p in tiny.parameters()] == flags and tiny.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny.modules())
    assert torch.equal(tiny(x), out)  # ReLUs are ReLUs again, max-pools max-pools


# --- the hand-coded model's wiring ------------------------------------------------------------------

def _angle(a, b):
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def test_pool_to_arcs_is_the_wiring_tables_kernel(handcoded):
    W = expanded_weights(handcoded, "pool", "curves.arcs", device="cpu")
    for c, wiring in enumerate(handcoded.wiring["curves"]):
        torch.testing.assert_close(W[c], strokes_kernel(wiring["strokes"], N_ORIENT), rtol=0, atol=0)


def test_every_curve_unit_is_excited_by_the_tangent_and_inhibited_by_the_orthogonal_at_each_point(handcoded):
    # Through the ReLUs and the opponent surround: 15 x 15 arcs + 11 x 11 surround = 25 x 25 window,
    # centred on the unit, so the table's offset (x right, y up) is at row 12 - y, column 12 + x.
    W = expanded_weights(handcoded, "pool", "curves", device="cpu")
    assert W.shape == (N_ORIENT, N_ORIENT, 25, 25)
    checked = 0
    for c, wiring in enumerate(handcoded.wiring["curves"]):
        for s in (s for s in wiring["strokes"] if s["role"] == "tangent"):
            weights = W[c, :, 12 - round(s["y"]), 12 + round(s["x"])]  # (8,) one per line orientation
            best = int(weights.argmax())
            assert weights[best] > 0 and _angle(best * 180 / N_ORIENT, s["orientation"]) <= 180 / N_ORIENT, (c, s)
            orth = min(range(N_ORIENT), key=lambda ch: _angle(ch * 180 / N_ORIENT, s["orientation"] + 90))
            assert weights[orth] < 0, (c, s)
            checked += 1
    assert checked == N_ORIENT * 64


def test_top_inputs_of_every_curve_unit_match_the_wiring_table(handcoded):
    for c, wiring in enumerate(handcoded.wiring["curves"]):
        inputs = top_inputs(handcoded, f"curves:{c}", "edges", k=12, device="cpu")
        # The colour line channels (8-11) are not wired to the curves: no weight, not an input.
        assert sorted(i.channel for i in inputs) == list(range(N_ORIENT))
        template = strokes_kernel(wiring["strokes"], N_ORIENT)  # (8, 15, 15), the table's own kernel
        tangent_mass = torch.zeros(N_ORIENT)
        for s in wiring["strokes"]:
            if s["role"] == "tangent":
                for ch, share in s["channels"]:
                    tangent_mass[ch] += s["weight"] * share
        for inp in inputs:
            expected = "excitatory" if float((template[inp.channel] * template[inp.channel].abs()).sum()) >= 0 \
                else "inhibitory"
            assert inp.sign == expected, (c, inp.channel)
            if inp.sign == "excitatory":
                assert tangent_mass[inp.channel] > 0.05, (c, inp.channel)  # a tangent somewhere on the arc
        apex = handcoded.preferred["curves"][c]["orientation"]
        orthogonal = round(((apex + 90) % 180) / (180 / N_ORIENT)) % N_ORIENT
        assert {i.channel: i.sign for i in inputs}[orthogonal] == "inhibitory"
        excitatory = [i for i in inputs if i.sign == "excitatory"]
        assert excitatory and all(_angle(i.channel * 180 / N_ORIENT, apex) < 90 for i in excitatory)


def test_rank_inputs_signs_by_the_larger_squared_part():
    w = torch.zeros(3, 3, 3)
    w[0, 1, 1] = 1.0
    w[0, 0] = -0.1  # excitatory: a strong centre outweighs a weak inhibitory row
    w[1, 1, 1] = -2.0
    inputs = rank_inputs(w)
    assert [(i.channel, i.sign) for i in inputs] == [(1, "inhibitory"), (0, "excitatory")]  # 2 is all zero
    assert inputs[0].norm == pytest.approx(2.0) and inputs[1].net == pytest.approx(0.7)


def test_heatmap_is_one_symmetric_scale():
    im = heatmap(torch.tensor([[1.0, 0.0, -1.0, 0.5]]), 1.0)
    red, white, blue, pink = [im.getpixel((x, 0)) for x in range(4)]
    assert white == (255, 255, 255) and red[0] > red[2] and blue[2] > blue[0]
    assert all(abs(p - (255 + r) / 2) <= 1 for p, r in zip(pink, red))  # half way from white to red


# --- errors -------------------------------------------------------------------------------------------

def test_bad_layers_and_channels_are_usage_errors(handcoded):
    with pytest.raises(NotFound, match="close matches: curves"):
        expanded_weights(handcoded, "edges", "curve")
    with pytest.raises(UsageError, match="comes before"):
        expanded_weights(handcoded, "curves", "edges")
    with pytest.raises(UsageError, match="channel 99 is not in layer 'curves', which has 8"):
        expanded_weights(handcoded, "edges", "curves", channels=[99])
    with pytest.raises(UsageError, match="both 'edges'"):
        expanded_weights(handcoded, "edges", "edges")
    with pytest.raises(UsageError, match="expected 'layer:channel'"):
        top_inputs(handcoded, "curves", "edges")


@pytest.mark.parametrize("argv, message", [
    (["handcoded", "curves:2", "--from", "edges"], "nothing to write"),
    (["handcoded", "curves:2", "--from", "edges", "--out", "x.jpg"], "written as .png or .pdf"),
    (["handcoded", "curves:2", "--from", "edges", "--out", "x.png", "--top", "0"], "--top 0"),
    (["handcoded", "curves", "--from", "edges", "--out", "x.png"], "cannot read unit 'curves'"),
    (["handcoded", "curves:2", "--from", "edgs", "--out", "x.png"], "close matches: edges"),
    (["handcoded", "curves:42", "--from", "edges", "--out", "x.png"], "channel 42 is not in layer 'curves'"),
    (["handcoded", "edges:0", "--from", "curves", "--out", "x.png"], "comes before"),
    (["nosuchmodel", "a:1", "--from", "b", "--out", "x.png"], "unknown model 'nosuchmodel'"),
    (["handcoded", "curves:2", "--out", "x.png"], "--from"),
    (["handcoded", "curves:2", "--from", "edges", "--out", "x.png", "--steps", "0"], "--steps 0"),
    (["handcoded", "curves:2", "--from", "edges", "--out", "x.png", "--from-dir", "nowhere"], "--from-dir nowhere"),
])
def test_cli_usage_errors(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["circuit", *argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("featvis") and "error:" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- the command and the example ----------------------------------------------------------------------

FAST = ["--steps", "2", "--size", "32", "--device", "cpu", "--quiet"]


def test_cli_circuit_writes_png_pdf_and_the_record(tmp_path, capsys):
    png, pdf, rec = tmp_path / "fig.png", tmp_path / "fig.pdf", tmp_path / "renders"
    assert main(["circuit", "handcoded", "curves:2", "--from", "edges", "--top", "4", "--out", str(png),
                 "--record", str(rec), *FAST]) == 0
    with Image.open(png) as im:
        assert im.width > 5 * 96 and im.height > 2 * 96
    record = json.loads((rec / "curves" / "circuits" / "2.json").read_text())
    assert record["unit"] == "curves:2" and record["from"] == "edges" and len(record["inputs"]) == 4
    norms = [e["norm"] for e in record["inputs"]]
    assert norms == sorted(norms, reverse=True)
    for e in record["inputs"]:
        assert set(e) == {"channel", "norm", "sign", "heatmap"} and e["sign"] in ("excitatory", "inhibitory")
        assert e["heatmap"] == f"curves/circuits/2_from_edges_{e['channel']}.png" and (rec / e["heatmap"]).is_file()
    assert not [p for p in rec.rglob("*") if p.name.endswith(".tmp")]
    # The PDF, with the visualizations taken from a render folder (none there: rendered, and said so).
    (rec / "edges").mkdir()
    assert main(["circuit", "handcoded", "curves:2", "--from", "edges", "--top", "4", "--out", str(pdf),
                 "--from-dir", str(rec), *FAST]) == 0
    assert pdf.read_bytes().startswith(b"%PDF") and "rendering them" in capsys.readouterr().err


def test_from_dir_visualizations_are_used_as_they_are(tmp_path, handcoded, monkeypatch):
    from featvis.analysis.circuit_figure import circuit_figure

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the render folder holds every visualization")

    monkeypatch.setattr(importlib.import_module("featvis.render"), "render", no_render)
    inputs = top_inputs(handcoded, "curves:2", "edges", k=2, device="cpu")
    marker = Image.new("RGB", (32, 32), (0, 255, 0))
    for layer, c in [("curves", 2)] + [("edges", i.channel) for i in inputs]:
        (tmp_path / layer).mkdir(exist_ok=True)
        marker.save(tmp_path / layer / f"{c}.png")
    image, _ = circuit_figure(handcoded, "curves:2", "edges", inputs=inputs, from_dir=tmp_path, size=32,
                              progress=False)
    greens = sum(n for n, rgb in image.getcolors(1 << 20) if rgb == (0, 255, 0))
    assert greens >= 3 * 96 * 96 * 0.9  # the three marker images fill their cells


@pytest.mark.examples
def test_example_script_runs_on_the_handcoded_model(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "circuit.py"), "--model", "handcoded", *FAST,
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = [Path(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert len(written) == 1 and written[0].parent == tmp_path and written[0].suffix == ".png"
    with Image.open(written[0]) as im:
        assert im.info["dpi"] == pytest.approx((150, 150), abs=0.1)
