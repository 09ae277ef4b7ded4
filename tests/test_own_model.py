"""Your own model on the command line (``path/to/file.py:build``, ``FEATVIS_PLUGINS``) through render,
topk, circuit and the site's reproduce command; ``wrap`` refusing to guess an input convention; the
preset in every command that renders; the smaller first-hour messages."""
import html
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.cli import main
from featvis.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    featvis_normalize = None  # takes [0, 1] RGB

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.relu1(self.conv1(x)))


def build():
    torch.manual_seed(0)
    return Net()


def undeclared():
    return nn.Sequential(nn.Conv2d(3, 4, 3))


def broken():
    raise RuntimeError("no GPU here")


def not_a_net():
    return 42
'''


@pytest.fixture
def netfile(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(NET)
    return path


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _photos(folder: Path, n: int = 4) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_a_model_file_through_render_topk_circuit_and_the_site(netfile, tmp_path, capsys):
    spec = f"{netfile}:build"
    out, site = tmp_path / "renders", tmp_path / "site"
    assert main(["render", spec, "conv2", "--channels", "0:2", "--steps", "2", "--size", "16", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    threads = os.environ["FEATVIS_THREADS"]  # 1 unless set (conftest)
    assert manifest["model"] == spec and str(manifest["settings"]["threads"]) == threads
    assert sorted(manifest["layers"]["conv2"]["images"]) == ["0", "1"]
    assert main(["topk", spec, "conv2", "--images", str(_photos(tmp_path / "photos")), "--channels", "0:2",
                 "--k", "2", "--size", "24", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["topk"]["conv2"]["channels"]["0"]
    figure = tmp_path / "circuit.png"
    assert main(["circuit", spec, "conv2:1", "--from", "conv1", "--steps", "2", "--size", "16", "--preset",
                 "fourier-crops", "--out", str(figure), "--record", str(out)]) == 0
    assert figure.is_file() and (out / "conv2" / "circuits" / "1.json").is_file()
    assert main(["site", str(out), "--out", str(site)]) == 0
    pages = [html.unescape(p.read_text()) for p in site.rglob("1.html")]
    commands = [line for page in pages for line in page.splitlines() if "featvis render" in line]
    assert commands and all(spec in c and f"--threads {threads}" in c and "FEATVIS_PLUGINS" not in c for c in commands)
    capsys.readouterr()


def test_a_model_file_loads_your_checkpoint_and_none_redraws(netfile, tmp_path):
    from featvis.models.open import open_model
    spec = f"{netfile}:build"
    built = open_model(spec, "default", "cpu")
    ckpt = tmp_path / "ckpt.pth"
    state = {k: torch.full_like(v, 0.25) for k, v in built.net.state_dict().items()}
    torch.save(state, ckpt)
    loaded = open_model(spec, str(ckpt), "cpu")
    assert all(torch.equal(v, state[k]) for k, v in loaded.net.state_dict().items())
    assert loaded.name == spec and not any(p.requires_grad for p in loaded.parameters())
    a, b = open_model(spec, "none", "cpu", seed=1), open_model(spec, "none", "cpu", seed=1)
    assert torch.equal(a.net.conv1.weight, b.net.conv1.weight)
    assert not torch.equal(a.net.conv1.weight, built.net.conv1.weight)  # re-drawn from the seed
    torch.save({"conv1.weight": torch.zeros(1)}, ckpt)
    with pytest.raises(UsageError, match=r"--weights .*cannot load it into .*mynet.py:build.*missing keys"):
        open_model(spec, str(ckpt), "cpu")


@pytest.mark.parametrize("name, message", [
    ("nosuch.py:build", r"no such file nosuch.py; give path/to/file.py:function"),
    ("{net}:nope", r"has no function 'nope'; it defines: Net, broken, build, not_a_net, undeclared"),
    ("{net}:broken", r"broken\(\) failed \(RuntimeError: no GPU here\)"),
    ("{net}:not_a_net", r"not_a_net\(\) returned int, not an nn.Module"),
    ("{net}:undeclared", r"cannot tell how .*mynet.py:undeclared expects its input, and will not guess: declare it with "
                         r"featvis.wrap\(net, normalize=None\) if it takes \[0, 1\] RGB"),
])
def test_a_bad_model_file_is_one_line(netfile, name, message, capsys):
    assert main(["layers", name.format(net=netfile)]) == 2
    import re
    assert re.search(message, _err(capsys))


def test_the_site_command_names_the_plugin_that_registered_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATVIS_PLUGINS", "tests.cli_plugin")
    out, site = tmp_path / "renders", tmp_path / "site"
    assert main(["render", "tiny", "conv2", "--channels", "0", "--steps", "2", "--size", "16", "--weights", "none",
                 "--out", str(out), "--preset", "fourier-crops"]) == 0
    monkeypatch.delenv("FEATVIS_PLUGINS")
    assert main(["site", str(out), "--out", str(site)]) == 0
    page = html.unescape(next(site.rglob("0.html")).read_text())
    command = next(line for line in page.splitlines() if "featvis render tiny" in line)
    assert "FEATVIS_PLUGINS=tests.cli_plugin featvis render tiny conv2" in command and "--preset fourier-crops" in command
    index = html.unescape((site / "index.html").read_text())
    assert "preset fourier-crops" in index  # the settings line names the preset
    capsys.readouterr()


def test_plugins_never_come_from_the_current_folder(tmp_path):
    (tmp_path / "sneaky.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), FEATVIS_PLUGINS="sneaky")
    done = subprocess.run([sys.executable, "-m", "featvis", "models"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "ran").exists()
    assert "never from the current folder" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# --- featvis.wrap does not guess --------------------------------------------------------------------

def test_wrap_refuses_an_undeclared_net_and_takes_each_declaration():
    net = nn.Conv2d(3, 4, 3)
    for call in (lambda: featvis.wrap(net), lambda: featvis.render(net, "logits:0", steps=1, progress=False)):
        with pytest.raises(UsageError, match=r"Conv2d expects its input.*normalize=\"imagenet\""):
            call()
    assert featvis.wrap(net, normalize=None).mean is None
    imagenet = featvis.wrap(net, normalize="imagenet")
    assert torch.allclose(imagenet.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    net.featvis_normalize = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.equal(featvis.wrap(net).std.flatten(), torch.full((3,), 0.25))
    with pytest.raises(UsageError, match="normalize='imagenet1k'"):
        featvis.wrap(net, normalize="imagenet1k")


class _Scaled(nn.Module):  # like ../shared/models: rescales the input, the real net inside
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x * 2 - 1)


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

    def forward(self, x):
        return self.features(x)


def test_a_layer_typo_on_a_wrapped_net_names_the_net_inside_and_no_cli_command():
    model = featvis.wrap(_Scaled(MobileNet()), normalize=None)
    assert model.name == "MobileNet (in _Scaled)"
    with pytest.raises(KeyError) as e:
        featvis.activations(model, torch.rand(1, 3, 8, 8), "net.features.7")
    text = str(e.value)
    assert "no layer 'net.features.7' in MobileNet (in _Scaled)" in text
    assert "see: featvis.layers(model)" in text and "featvis layers" not in text


def test_a_layer_typo_on_a_zoo_model_still_points_to_featvis_layers():
    model = featvis.load_model("toy", weights=None, device="cpu")
    with pytest.raises(KeyError, match=r"see: featvis layers toy, or featvis.layers\(model\)"):
        featvis.activations(model, torch.rand(1, 3, 16, 16), "conv9")


def test_mobilenet_v2_blocks_are_marked_so_layers_blocks_works():
    import torchvision
    from featvis.jobs.job import select_layers
    model = featvis.wrap(torchvision.models.mobilenet_v2(weights=None), normalize="imagenet")
    chosen = select_layers(model, "blocks", 32, "mobilenet_v2")
    assert chosen == [f"features.{i}" for i in range(1, 18)]


# --- the model name first --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["render", "mixed4a", "--channels", "0:8"], "unknown model 'mixed4a'; the model comes first, then its layers"),
    (["render", "resnet5", "layer3"], "unknown model 'resnet5'; close matches: resnet50"),
    (["render", "", "conv2"], "no model given: name a model first"),
])
def test_a_missing_or_misplaced_model_name_says_so(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    assert message in _err(capsys)
    assert not (tmp_path / "o").exists()


# --- the recipe everywhere: presets in titles, specs, sheets -----------------------------------------

def test_sheet_titles_name_the_preset():
    from featvis.jobs.folder.derived import sheet_title
    settings = {"param": "fourier", "size": 224, "steps": 512, "preset": "fourier-crops", "diversity": 1}
    assert sheet_title({"model": "m", "settings": settings}, "l") == \
        "m l: channel, preset fourier-crops (fourier 224 px), 512 steps"
    assert sheet_title({"model": "m", "settings": dict(settings, preset=None)}, "l") == "m l: channel, fourier 224 px, 512 steps"


def test_a_long_title_wraps_and_long_labels_never_cross_into_the_next_cell():
    from featvis.figures.grid import sheet
    images = [torch.zeros(3, 32, 32), torch.zeros(3, 32, 32)]
    short = sheet(images, labels=["0", "1"], cols=2, title="m l")
    long_title = "resnet50 layer3.1: channel, preset fourier-crops (fourier 224 px), 512 steps, 4 per channel"
    tall = sheet(images, labels=["0", "1"], cols=2, title=long_title)
    assert tall.height > short.height and tall.width == short.width
    pad = 4
    text = "a very long label that would run over its neighbours"
    labelled = np.asarray(sheet(images, labels=[text, text], cols=2, pad=pad, background=(255, 255, 255)))
    band = labelled[pad + 32:, :]  # below the images: the labels
    gap = band[:, pad + 32:pad + 32 + pad]  # the white strip between the two cells
    assert (band < 250).any() and (gap == 255).all()
    assert (labelled[:, :pad] == 255).all() and (labelled[:, -pad:] == 255).all()


def test_a_figure_spec_takes_a_preset(tmp_path, capsys):
    spec = {"model": "toy", "weights": "none", "steps": 2, "size": 16, "preset": "fourier-crops",
            "rows": [{"title": "conv2", "cells": ["conv2:0", "conv2:1"]}], "out": "fig.png"}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert main(["figure", str(path), "--quiet"]) == 0 and (tmp_path / "fig.png").is_file()
    path.write_text(json.dumps(dict(spec, preset="nosuch")))
    assert main(["figure", str(path)]) == 2
    assert "'preset' is 'nosuch'; expected one of" in _err(capsys)


def test_figure_spec_and_circuit_use_the_presets_recipe(monkeypatch):
    """The preset reaches render() as its param, transforms and schedule (not a plain Fourier image)."""
    import importlib

    import featvis.analysis.circuit_figure as cf
    import featvis.figures.spec as fs
    from featvis.param.fourier import Fourier
    seen = []

    def fake_render(model, objective, **kw):
        seen.append(kw)
        n = kw["param"].batch
        return type("Result", (), {"images": torch.zeros(n, 3, 8, 8), "values": torch.zeros(n)})()

    monkeypatch.setattr(importlib.import_module("featvis.render"), "render", fake_render)
    model = featvis.load_model("toy", weights=None, device="cpu")
    spec = {"model": "toy", "steps": 3, "preset": "fourier-crops", "rows": [{"title": None, "cells": ["conv2:0"]}]}
    fs.render_spec(spec, model=model, device="cpu", progress=False)
    cf._visualizations(model, [("conv2", 0)], None, 3, 0, "cpu", False, None, preset="fourier-crops")
    assert len(seen) == 2
    for kw in seen:
        assert kw["transforms"] is not None and callable(kw["optimizer"]) and kw["steps"] == 3
        assert isinstance(kw["param"], Fourier) and kw["param"].size == (224, 224)  # the preset's size


def test_an_example_script_takes_a_model_file_and_a_preset(netfile, tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "objectives.py"), "--model", f"{netfile}:build", "--unit", "conv2:1",
           "--weights", "none", "--steps", "2", "--size", "16", "--preset", "fourier-crops", "--threads", "1",
           "--quiet", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "objectives.png").is_file()
