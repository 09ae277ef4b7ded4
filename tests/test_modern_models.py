"""The models people use today: timm by name, safetensors and Hugging Face Hub weights, token and
channels-last layouts read as maps, and inputs that are not RGB. No network: timm models are
built with random weights, the hub is a cache laid out as huggingface_hub lays it out."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.cli import main
from featvis.errors import UsageError
from featvis.models import layout as L
from featvis.models.weights import WeightsError, weights_digest, weights_file
from featvis.objectives import channel, diversity, neuron

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

ROOT = Path(__file__).resolve().parents[1]
VIT = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return featvis.load_model(VIT, None, device="cpu")


# --- timm by name ------------------------------------------------------------------------------

def test_timm_model_takes_its_own_config_and_feature_info():
    m = featvis.load_model("timm:resnet10t", None, device="cpu")
    cfg = m.net.pretrained_cfg
    assert m.name == "timm:resnet10t" and m.in_channels == 3
    assert torch.allclose(m.mean.flatten(), torch.tensor(cfg["mean"])) and torch.allclose(m.std.flatten(), torch.tensor(cfg["std"]))
    assert m.input_size == tuple(cfg["input_size"][-2:])
    assert m.block_layers() == ["act1", "layer1", "layer2", "layer3", "layer4"]  # timm's feature info
    info = {li.name: li for li in featvis.layers(m, size=32)}
    assert info["layer2"].block and info["layer2"].shape == (128, 4, 4) and not info["layer2.0"].block


def test_timm_names_and_missing_timm_are_one_line(capsys, monkeypatch):
    assert main(["layers", "timm:convnext_tyni"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no timm model 'convnext_tyni'" in err and "timm:convnext_tiny" in err
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    assert main(["render", "timm:resnet10t", "layer1", "--weights", "none", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install featvis[timm]" in err
    assert not Path("unused").exists()


def test_timm_pretrained_download_failure_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(timm, "create_model", _refuse_pretrained(timm.create_model))
    assert main(["layers", "timm:resnet10t", "--weights", "default"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "timm could not get the pretrained weights of resnet10t" in err and "--weights none" in err


def _refuse_pretrained(create):
    def create_model(name, pretrained=False, **kw):
        if pretrained:  # what timm raises offline, without waiting for a network
            raise RuntimeError("Cannot reach the Hugging Face Hub (offline mode)")
        return create(name, pretrained=pretrained, **kw)
    return create_model


def test_timm_checkpoint_sets_input_channels_and_classes(tmp_path):
    """A user's grayscale timm checkpoint (first conv with one input channel, 10 classes): the
    architecture follows the file, and the model is a grayscale one."""
    net = timm.create_model("resnet10t", pretrained=False, in_chans=1, num_classes=10)
    path = tmp_path / "gray.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    m = featvis.load_model("timm:resnet10t", str(path), device="cpu")
    assert m.in_channels == 1 and m.mean.shape == (1, 1, 1, 1)
    assert weights_digest(m.net) == weights_digest(net)
    r = featvis.render(m, "layer2:3", steps=2, seed=0, progress=False, param=featvis.param.fourier(32, channels=1))
    assert r.images.shape == (1, 1, 32, 32)


# --- token layouts -----------------------------------------------------------------------------

def _raw(model, layer, images):
    out = {}
    handle = model.named_layers()[layer].register_forward_hook(lambda m, i, o: out.setdefault("t", o))
    with torch.no_grad():
        model(images)
    handle.remove()
    return out["t"]  # (B, T, D)


def test_vit_tokens_become_the_patch_grid_and_cls_a_vector(vit):
    assert vit.tokens == L.tokens(16, ("cls",), padded=True)
    x = torch.rand(2, 3, 48, 64)  # a 3 x 4 patch grid
    raw = _raw(vit, "blocks.1", x)
    assert raw.shape == (2, 1 + 12, 192)
    acts = featvis.activations(vit, x, ["blocks.1", "blocks.1@cls"])
    grid = acts["blocks.1"]
    assert grid.shape == (2, 192, 3, 4)
    assert torch.equal(grid[:, :, 1, 2], raw[:, 1 + 1 * 4 + 2])  # @x=2,y=1: row-major patch 6
    assert torch.equal(acts["blocks.1@cls"], raw[:, 0])
    assert featvis.evaluate(vit, "blocks.1:7@2,1", x).tolist() == pytest.approx(raw[:, 1 + 6, 7].tolist())
    assert featvis.evaluate(vit, "blocks.1:7@cls", x).tolist() == pytest.approx(raw[:, 0, 7].tolist())
    assert featvis.evaluate(vit, "blocks.1:7", x).tolist() == pytest.approx(raw[:, 1:, 7].mean(1).tolist())


def test_vit_channel_raises_the_feature_on_every_patch(vit):
    """The test that catches Lucent's bug: its channel objective on (B, T, D) reads dim 1, a token.
    Here channel 5 is feature 5 averaged over the patches, and optimizing it raises it on (nearly)
    every patch, and on the patches far more than on token 5 alone."""
    obj = channel("blocks.2", 5)
    # No transforms: with random weights (random position embeddings, interpolated for each padded,
    # rescaled canvas) what the jittered canvases teach does not carry over to the bare image; the
    # claim here is about which axis is optimized.
    kw = dict(param=featvis.param.fourier(64), seed=0, progress=False, transforms=[])
    start = featvis.render(vit, obj, steps=0, **kw).images
    before = featvis.activations(vit, start, ["blocks.2"])["blocks.2"][0, 5]  # (4, 4)
    kw["param"] = featvis.param.fourier(64)
    r = featvis.render(vit, obj, steps=24, **kw)
    after = featvis.activations(vit, r.images, ["blocks.2"])["blocks.2"][0, 5]
    raw = _raw(vit, "blocks.2", r.images)[0]  # (17, 192)
    assert (after > before).float().mean() >= 0.9  # the feature rose on >= 90% of the 16 patches
    assert after.mean() > before.mean() + 0.05
    # Lucent's reading (token 5, every feature) is not what was optimized
    assert r.values.item() == pytest.approx(raw[1:, 5].mean().item(), rel=1e-4)
    assert r.values.item() != pytest.approx(raw[5].mean().item(), rel=1e-2)


def test_diversity_and_neurons_read_the_patch_grid(vit):
    x = torch.rand(3, 3, 32, 32)
    v = featvis.evaluate(vit, diversity("blocks.0"), x)
    assert v.shape == (3,) and torch.isfinite(v).all() and (v < 0).all()
    assert featvis.evaluate(vit, neuron("blocks.0", 3, x=1, y=0), x).shape == (3,)


def test_token_addressing_mistakes_are_one_line(vit, capsys):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(UsageError, match=r"x=5 is outside layer 'blocks.0', whose map is 2 wide x 2 high"):
        featvis.evaluate(vit, "blocks.0:3@5,0", x)
    with pytest.raises(UsageError, match="no token 'reg0'.*its named tokens: cls"):
        featvis.evaluate(vit, "blocks.0:3@reg0", x)
    with pytest.raises(UsageError, match="no named tokens"):
        featvis.evaluate(featvis.load_model("toy", None, device="cpu"), "conv2:0@cls", x)
    with pytest.raises(UsageError, match="neither channels first nor last"):
        featvis.evaluate(vit, "blocks.0.attn.q_norm:0", x)  # (B, heads, T, d): not a map


class Seq(nn.Module):
    """A toy transformer: 4x4-pixel patches, a class token, one linear layer on the tokens."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 6, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.mix = nn.Linear(6, 6)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, hw, 6)
        return self.mix(torch.cat([self.cls.expand(len(t), -1, -1), t], 1))


def test_an_undeclared_token_layer_is_never_guessed():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(UsageError, match=r"layer 'mix' .* 3-d output .* does not guess .* featvis.models.tokens"):
        featvis.activations(featvis.wrap(Seq(), normalize=None), x, ["mix"])
    assert featvis.models.tokens is L.tokens  # the name the error messages give
    declared = featvis.wrap(Seq(), normalize=None, layouts={"mi*": L.tokens(4)})
    assert featvis.activations(declared, x, ["mix"])["mix"].shape == (1, 6, 4, 4)
    wrong = featvis.wrap(Seq(), normalize=None, tokens=L.tokens(8))  # 1 + 2x2 tokens expected, 1 + 16 given
    with pytest.raises(UsageError, match=r"not 1 named token\(s\) \+ a 2x2 grid"):
        featvis.activations(wrong, x, ["mix"])
    info = {li.name: li for li in featvis.layers(featvis.wrap(Seq(), normalize=None), size=16)}
    assert info["mix"].layout == "unknown" and info["mix"].channels is None


class LastMLP(nn.Module):
    """ConvNeXt's block shape: a conv, then a Linear on (B, H, W, C)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5, 7)

    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_channels_last_layers_are_detected_and_read_as_maps():
    m = featvis.wrap(LastMLP(), normalize=None)
    found = L.detect_layouts(m, (32, 24))
    assert found == {"fc": L.CHANNELS_LAST}
    m.layouts.update(found)
    x = torch.rand(2, 3, 16, 12)
    acts = featvis.activations(m, x, ["fc", "conv"])
    assert acts["fc"].shape == (2, 7, 8, 6) and acts["conv"].shape == (2, 5, 8, 6)
    assert torch.allclose(acts["fc"], m.net(m.preprocess(x)))
    # timm's ConvNeXt: its MLPs run channels last, found at build time
    cnx = featvis.load_model("timm:convnext_atto", None, device="cpu")
    assert all(v in (L.CHANNELS_LAST, L.UNKNOWN) for v in cnx.layouts.values())


# --- inputs that are not RGB -------------------------------------------------------------------

class Gray(nn.Module):
    def __init__(self, bands=1):
        super().__init__()
        self.conv = nn.Conv2d(bands, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_a_grayscale_model_renders_gray_images():
    m = featvis.wrap(Gray(), normalize=((0.5,), (0.5,)))
    r = featvis.render(m, "conv:1", steps=3, seed=0, progress=False)  # the default param follows the model
    assert r.images.shape == (1, 1, 128, 128)
    assert featvis.io.to_pil(r.images)[0].mode == "L"
    with pytest.raises(ValueError, match="makes 3-channel images but .* takes 1"):
        featvis.render(m, "conv:1", param=featvis.param.fourier(16), steps=1, progress=False)
    rgba = featvis.render(m, "conv:1", param=featvis.param.fourier(16, channels=1, alpha=True), steps=2, seed=0,
                          progress=False)
    assert rgba.images.shape == (1, 2, 16, 16)  # gray + alpha, seen over gray noise


def test_a_four_band_model_gets_four_bands_not_alpha():
    seen = []
    net = Gray(bands=4)
    net.conv.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    m = featvis.wrap(net, normalize=((0.5,) * 4, (0.5,) * 4))
    r = featvis.render(m, "conv:0", param=featvis.param.pixel(16, channels=4), steps=2, seed=0, progress=False)
    assert r.images.shape == (1, 4, 16, 16) and all(s[1] == 4 for s in seen)


# --- safetensors and the Hugging Face Hub --------------------------------------------------------

def _toy_state():
    torch.manual_seed(3)
    return featvis.load_model("toy", None, device="cpu").net.state_dict()


def test_a_safetensors_file_loads_like_a_state_dict(tmp_path):
    sd = _toy_state()
    path = tmp_path / "toy.safetensors"
    safetensors_torch.save_file(sd, str(path))
    m = featvis.load_model("toy", str(path), device="cpu")
    assert all(torch.equal(m.net.state_dict()[k], v) for k, v in sd.items())
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="could not read .*bad.safetensors as a safetensors file"):
        featvis.load_model("toy", str(tmp_path / "bad.safetensors"), device="cpu")


def fake_hub(cache: Path, repo: str, files: dict, commit: str = "c0ffee" * 6 + "abcd") -> str:
    """``files`` ({name: bytes}) as huggingface_hub's cache holds a downloaded repo at ``commit``."""
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = base / "blobs" / f"blob{abs(hash(name))}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit


def test_hub_weights_from_the_cache_offline_pinned_in_the_manifest(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hc

    from featvis.models import weights as W
    sd = _toy_state()
    st = tmp_path / "x.safetensors"
    safetensors_torch.save_file(sd, str(st))
    commit = fake_hub(tmp_path / "hub", "someone/toy-net", {"model.safetensors": st.read_bytes()})
    # what HF_HUB_OFFLINE=1 HF_HUB_CACHE=... set when huggingface_hub is imported
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(W, "_HUB", {})
    out = tmp_path / "r"
    args = ["render", "toy", "conv2", "--channels", "0:2", "--steps", "2", "--size", "16"]
    assert main(args + ["--weights", "hf-hub:someone/toy-net", "--out", str(out)]) == 0
    w = json.loads((out / "manifest.json").read_text())["weights"]
    assert w["hub"] == {"repo": "someone/toy-net", "revision": commit, "file": "model.safetensors"}
    assert w["sha256"] == weights_digest(_wrap_state(sd))
    capsys.readouterr()
    assert main(args + ["--weights", "hf-hub:someone/other", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hf-hub:someone/other" in err and "--weights PATH" in err
    assert not (tmp_path / "o").exists()


def _wrap_state(sd):
    torch.manual_seed(0)
    m = featvis.load_model("toy", None, device="cpu")
    m.net.load_state_dict(sd)
    return m


def test_hub_prefers_safetensors_and_names_the_revision(tmp_path, monkeypatch):
    import huggingface_hub

    from featvis.models import weights as W
    sd = _toy_state()
    st, pt = tmp_path / "snapshots" / "abc123" / "model.safetensors", tmp_path / "snapshots" / "abc123" / "pytorch_model.bin"
    st.parent.mkdir(parents=True)
    safetensors_torch.save_file(sd, str(st))
    torch.save(sd, pt)
    asked = []

    def download(repo, filename, revision=None, **kw):
        asked.append((repo, filename, revision))
        return str(st if filename == "model.safetensors" else pt)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(W, "_HUB", {})
    m = featvis.load_model("toy", "hf-hub:org/repo@v1", device="cpu")
    assert asked == [("org/repo", "model.safetensors", "v1")]
    assert all(torch.equal(m.net.state_dict()[k], v) for k, v in sd.items())
    assert weights_file("toy", "hf-hub:org/repo@v1")["hub"] == {"repo": "org/repo", "revision": "abc123",
                                                                "file": "model.safetensors"}
    with pytest.raises(WeightsError, match="expected hf-hub:ORG/REPO"):
        featvis.load_model("toy", "hf-hub:justone", device="cpu")


# --- the real ResNet-50 of ../shared/models, as a user's checkpoint -------------------------------

SHARED = next((p for p in (ROOT.parent / "shared" / "models", Path("/work/shared/models"))
               if (p / "imagenet_models.py").is_file()), None)


@pytest.mark.skipif(SHARED is None, reason="../shared/models is not here")
def test_real_resnet50_loads_through_the_user_checkpoint_paths(tmp_path):
    sys.path.insert(0, str(SHARED))
    try:
        import imagenet_models
        real = imagenet_models.resnet50(normalize=False)
    finally:
        sys.path.remove(str(SHARED))
    sd = {k: v.contiguous() for k, v in real.state_dict().items()}
    pth, st = tmp_path / "resnet50.pth", tmp_path / "resnet50.safetensors"
    torch.save(sd, pth)
    safetensors_torch.save_file(sd, str(st))
    digest = weights_digest(real)
    for path in (pth, st, SHARED / "resnet50_imagenet.pth"):  # the file as shipped too (float16 weights)
        m = featvis.load_model("resnet50", str(path), device="cpu")
        assert weights_digest(m.net) == digest, path
    m = featvis.load_model("timm:resnet50", str(st), device="cpu")  # timm's ResNet-50 has the same names
    assert weights_digest(m.net) == digest and m.in_channels == 3


# --- the command line: timm convnet and ViT, run and resume --------------------------------------

@pytest.mark.parametrize("model,layer", [("timm:resnet10t", "layer2"), (VIT, "blocks.1")])
def test_cli_renders_timm_models_and_resumes(tmp_path, model, layer):
    out = tmp_path / "r"
    base = ["render", model, layer, "--weights", "none", "--size", "32", "--steps", "3", "--out", str(out)]
    assert main(base + ["--channels", "0:2"]) == 0
    first = (out / layer / "0.png").read_bytes()
    assert main(base + ["--channels", "0:3"]) == 0  # resumes: same network from the seed, one more channel
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(m["layers"][layer]["images"]) == ["0", "1", "2"]
    assert (out / layer / "0.png").read_bytes() == first and (out / f"{layer}_sheet.png").is_file()


def test_cli_renders_a_grayscale_timm_checkpoint_gray(tmp_path):
    net = timm.create_model("resnet10t", pretrained=False, in_chans=1)
    path = tmp_path / "gray.pth"
    torch.save(net.state_dict(), path)
    out = tmp_path / "r"
    assert main(["render", "timm:resnet10t", "layer1", "--channels", "0:2", "--weights", str(path), "--size", "32",
                 "--steps", "2", "--out", str(out)]) == 0
    with Image.open(out / "layer1" / "0.png") as im:
        assert im.mode == "L"
    with Image.open(out / "layer1_sheet.png") as im:
        rgb = torch.from_numpy(__import__("numpy").asarray(im.convert("RGB"))).float()
    assert (rgb[..., 0] - rgb[..., 1]).abs().max() == 0 and (rgb[..., 1] - rgb[..., 2]).abs().max() == 0  # gray
    # that was the default --preset auto (fourier-crops: its Fourier image follows the model's channels);
    # maco's fixed spectrum is one of RGB photos: one line, nothing rendered
    assert json.loads((out / "manifest.json").read_text())["settings"]["preset"] == "fourier-crops"
    assert main(["render", "timm:resnet10t", "layer1", "--channels", "0:2", "--weights", str(path), "--size", "32",
                 "--steps", "2", "--preset", "maco", "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m" / "layer1").exists()


def test_cli_layers_shows_tokens(capsys):
    assert main(["layers", VIT, "--weights", "none", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "blocks.3@cls" in out and "tokens (cls + 16x16px patches)" in out
    assert "192x2x2" in out
