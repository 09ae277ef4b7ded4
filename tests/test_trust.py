"""Trust: no checkpoint runs code, the user's model comes back as it was, arguments are checked
before any work with bounded memory, and every error reaches the user as one clear line."""
import hashlib
import importlib
import json
import os
import pickle
import tracemalloc
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis import param as P
from featvis.analysis import topk as tk
from featvis.cli import main
from featvis.errors import UsageError
from featvis.models import WeightsError, load_model, register
from featvis.units import parse_channels

from . import cli_plugin  # noqa: F401  (registers "tiny")

# --- checkpoints that would run code ------------------------------------------------------------------

class Evil:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for any shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.zeros(1), "payload": Evil(marker)}, path)
    return path


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return home


def test_a_crafted_checkpoint_in_the_hub_cache_never_runs(torch_home, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil_checkpoint(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth", marker)
    with pytest.raises(WeightsError, match="SHA-256 .* not the published f37072fd"):
        load_model("resnet18", "default", device="cpu")
    assert main(["render", "resnet18", "layer1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not the published" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_cached_file_with_the_right_hash_prefix_is_still_read_weights_only(torch_home, tmp_path, monkeypatch):
    """Even a file that passes the hash check (a collision, or a name we do not know) is not unpickled."""
    marker = tmp_path / "pwned"
    path = evil_checkpoint(torch_home / "hub" / "checkpoints" / "x.pth", marker)
    from featvis.models import weights as W
    monkeypatch.setattr(W, "verify", lambda *a: None)
    member = type("Member", (), {"url": "https://example.invalid/resnet18-f37072fd.pth"})()
    path.rename(path.with_name("resnet18-f37072fd.pth"))
    with pytest.raises(WeightsError, match="does not unpickle because that could run code"):
        W.fetch_torchvision(member, "resnet18")
    assert not marker.exists()


def test_a_crafted_inception_cache_file_never_runs(torch_home, tmp_path):
    marker = tmp_path / "pwned"
    evil_checkpoint(torch_home / "hub" / "checkpoints" / "inception5h.pth", marker)
    with pytest.raises(WeightsError, match="does not unpickle"):
        load_model("inceptionv1", "default", device="cpu")
    assert not marker.exists()


def test_weights_path_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.pt", marker)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's multi-line advice must not reach the user as a warning either
        assert main(["render", "tiny", "conv2", "--size", "32", "--weights", str(path),
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "could run code" in err and err.count("\n") == 1 and "weights_only=False" not in err
    assert not marker.exists()


def test_a_plugin_that_loads_with_pickle_is_made_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "plugin.pt", marker)

    @register("careless_plugin", "a plugin that calls torch.load(weights_only=False)")
    def build(weights="default"):
        torch.load(path, weights_only=False)
        return featvis.wrap(nn.Conv2d(3, 4, 3), normalize=None)

    with pytest.raises(pickle.UnpicklingError):
        load_model("careless_plugin", "default", device="cpu")
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored afterwards


# --- the user's model comes back as it was ---------------------------------------------------------

def user_net():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU()),
        ("drop", nn.Dropout(0.5)), ("conv2", nn.Conv2d(8, 8, 3, padding=1)),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 4)),
    ]))
    net.featvis_normalize = "imagenet"  # its input convention, declared (featvis.wrap does not guess)
    return net


def snapshot(net):
    return ([(n, m.training) for n, m in net.named_modules()],
            [(n, p.requires_grad, p.device, p.is_contiguous(), p.detach().double().sum().item())
             for n, p in net.named_parameters()],
            [(n, b.device) for n, b in net.named_buffers()])


def mixed(net):
    """Eval overall, but a training BatchNorm child; some weights trainable, some not; conv1 channels-last."""
    net.eval()
    net.bn.train()
    net.conv2.weight.requires_grad_(False)
    net.conv1.weight.data = net.conv1.weight.data.contiguous(memory_format=torch.channels_last)
    return net


USES = {
    "render": lambda m: featvis.render(m, "conv2:1", param=P.fourier(16), steps=2, seed=0, progress=False, device="cpu"),
    "evaluate": lambda m: featvis.evaluate(m, "conv2:1", torch.rand(1, 3, 16, 16)),
    "layers": lambda m: featvis.layers(m, 16),
    "receptive_field": lambda m: tk.receptive_field(m, "conv2", size=16, device="cpu"),
    "wrap": lambda m: featvis.wrap(m),
    "render_error": lambda m: featvis.render(m, "nosuch:1", steps=2, progress=False, device="cpu"),
    "render_in_loop_error": lambda m: featvis.render(m, "conv2:99", param=P.fourier(16), steps=2, progress=False,
                                                     device="cpu"),
}


@pytest.mark.parametrize("use", list(USES))
@pytest.mark.parametrize("setup", ["eval", "train", "mixed"])
def test_the_model_comes_back_exactly_as_it_was(use, setup):
    net = user_net()
    {"eval": lambda n: n.eval(), "train": lambda n: n.train(), "mixed": mixed}[setup](net)
    before = snapshot(net)
    try:
        USES[use](net)
    except (KeyError, ValueError, IndexError, RuntimeError):
        assert "error" in use
    assert snapshot(net) == before
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last) == (setup == "mixed")


def test_wrap_follows_the_nets_mode_and_changes_nothing():
    net = user_net().eval()
    before = snapshot(net)
    model = featvis.wrap(net)
    assert not model.training and snapshot(net) == before


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_render_works_inside_no_grad_and_inference_mode(context):
    net = user_net().eval()
    reference = featvis.render(net, "conv2:1", param=P.fourier(16), steps=3, seed=0, progress=False, device="cpu")
    with context():
        result = featvis.render(net, "conv2:1", param=P.fourier(16), steps=3, seed=0, progress=False, device="cpu")
    assert torch.equal(result.images, reference.images)
    assert not result.images.is_inference()


def test_a_model_built_in_inference_mode_is_a_clear_error():
    with torch.inference_mode():
        net = user_net()
    with pytest.raises(ValueError, match="created under torch.inference_mode"):
        featvis.render(net, "conv2:1", param=P.fourier(16), steps=1, progress=False, device="cpu")


# --- the API refuses what would fail cryptically -------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda n: featvis.render(n, "conv2:1", steps=-1, progress=False), ValueError, "steps=-1"),
    (lambda n: featvis.render(n, "conv2:1", steps=2.5, progress=False), ValueError, "steps=2.5"),
    (lambda n: featvis.render(n, "conv2:1", steps=1, lr=float("nan"), progress=False), ValueError, "lr=nan"),
    (lambda n: featvis.render(n, "conv2:1", steps=1, seed=1.5, progress=False), TypeError, "seed=1.5"),
    (lambda n: featvis.render(n, "conv2:1", steps=1, seed="7", progress=False), TypeError, "seed='7'"),
    (lambda n: featvis.render(n, "conv2:1", steps=1, seed=-3, progress=False), ValueError, "seed=-3"),
    (lambda n: featvis.render(n, "conv2:1", steps=1, init=torch.full((3, 8, 8), float("nan")), progress=False),
     ValueError, "NaN"),
    (lambda n: P.fourier(16, batch=0), ValueError, "batch=0"),
    (lambda n: P.pixel(16, batch=-2), ValueError, "batch=-2"),
    (lambda n: P.cppn(16, batch=1.5), ValueError, "batch=1.5"),
])
def test_api_arguments_fail_with_a_message_that_names_them(call, error, message):
    with pytest.raises(error, match=message):
        call(user_net().eval())


# --- bounded memory ---------------------------------------------------------------------------------------

def test_huge_channel_ranges_are_refused_without_being_expanded():
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="channel 16 is out of range"):
            parse_channels("0:50000000", 16)
        with pytest.raises(UsageError, match="more than 1048576 channels"):
            parse_channels("0:50000000")
        with pytest.raises(UsageError, match="too long"):
            parse_channels("1," * 60000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # bytes: the 50M-channel list would be gigabytes


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=100000), "--size 100000: expected a whole number at least 8 and at most 4096"),
    (dict(size=4096, batch=64), "would hold 24.0 GiB of decoded images .* lower --batch or --size"),
    (dict(k=0), "--k 0"), (dict(batch=0), "--batch 0"), (dict(crop=0), "--crop 0"), (dict(workers=0), "--workers 0"),
])
def test_topk_arguments_are_bounded_before_any_work(kwargs, message, tmp_path, capsys):
    with pytest.raises(UsageError, match=message):
        tk.check_arguments(**kwargs)
    argv = ["topk", "tiny", "conv2", "--images", str(tmp_path), "--out", str(tmp_path / "out")]
    for key, value in kwargs.items():
        argv += [f"--{key}", str(value)]
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_16_bit_pngs_are_scaled_not_saturated(tmp_path):
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    image = tk.load_image(tmp_path / "g16.png", 32)  # (3, 32, 32)
    assert image.shape == (3, 32, 32) and abs(image.mean().item() - 0.5) < 0.01
    assert image.min() == 0 and image.max() == 1
    assert torch.allclose(image[:, 16, 0], torch.full((3,), ramp[16, 0] / 65535), atol=1 / 255)


# --- one error convention ---------------------------------------------------------------------------------

def spec_file(tmp_path, **over):
    spec = {"model": "tiny", "size": 16, "steps": 2, "rows": [{"title": "a", "cells": ["conv2:1"]}], "out": "f.png"}
    spec.update(over)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("over, message", [
    (dict(out="f.gif"), "end the name with .png or .pdf (or .svg)"),
    (dict(col_titles=["a", "b"]), "2 column titles for 1 columns"),
    (dict(figure={"dpi": 0}), "figure dpi is 0"),
    (dict(figure={"dpy": 3}), "unknown figure option"),
    (dict(steps=0), "'steps' is 0"),
    (dict(seed=-1), "'seed' is -1"),
    (dict(rows=[{"cells": ["conv2"]}]), "cannot read 'conv2'"),
])
def test_figure_checks_everything_before_rendering(over, message, tmp_path, capsys, monkeypatch):
    import sys
    R = importlib.import_module("featvis.render")

    def no_render(*a, **k):
        raise AssertionError("rendered before checking")

    monkeypatch.setattr(R, "render", no_render)
    assert main(["figure", str(spec_file(tmp_path, **over)), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("featvis figure: error:") and err.count("\n") == 1, err


def test_topk_and_figure_errors_reach_main_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["topk", "tiny", "conv2", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("featvis topk: error: --images")
    assert main(["figure", str(tmp_path / "none.json"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UsageError: no figure spec" in err


def test_weights_file_hash_is_checked_on_every_load_not_only_download(torch_home, tmp_path):
    """A good cached file that is later replaced is caught on the next load."""
    from featvis.models import weights as W
    net = featvis.load_model("resnet18", None, device="cpu").net
    path = torch_home / "hub" / "checkpoints" / "resnet18-00000000.pth"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = path.with_name(f"resnet18-{digest[:8]}.pth")
    path.rename(good)
    member = type("Member", (), {"url": f"https://example.invalid/{good.name}"})()
    state, _ = W.fetch_torchvision(member, "resnet18")
    assert set(state) == set(net.state_dict())
    torch.save({k: v + 1 for k, v in net.state_dict().items()}, good)  # replaced after the download
    with pytest.raises(WeightsError, match="not the published"):
        W.fetch_torchvision(member, "resnet18")


def test_weights_dir_message(tmp_path):
    from featvis.models import weights as W
    with pytest.raises(WeightsError, match="is a folder; weights= takes the path of a state dict file"):
        W.read_state_dict(tmp_path, "toy")
