"""The zoo: names, builds, layer listings, and weights (local files, download cache, checksum)."""
import dataclasses
import hashlib
import urllib.error

import pytest
import torch
import torchvision

import featvis
from featvis.models import WeightsError
from featvis.models import weights as W

NAMES = ["inceptionv1", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
         "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]

# name -> (number of blocks, {block: channels}, logits layer); torchvision's architectures.
TORCHVISION = {
    "googlenet": (9, {"inception3a": 256, "inception4a": 512, "inception5b": 1024}, "fc"),
    "resnet18": (8, {"layer1.0": 64, "layer3.1": 256, "layer4.1": 512}, "fc"),
    "resnet34": (16, {"layer1.2": 64, "layer3.5": 256, "layer4.2": 512}, "fc"),
    "resnet50": (16, {"layer1.0": 256, "layer3.5": 1024, "layer4.2": 2048}, "fc"),
    "resnet101": (33, {"layer1.0": 256, "layer3.22": 1024, "layer4.2": 2048}, "fc"),
    "resnet152": (50, {"layer2.7": 512, "layer3.35": 1024, "layer4.2": 2048}, "fc"),
    "convnext_tiny": (18, {"features.1.0": 96, "features.5.8": 384, "features.7.2": 768}, "classifier.2"),
    "convnext_small": (36, {"features.1.0": 96, "features.5.26": 384, "features.7.2": 768}, "classifier.2"),
    "convnext_base": (36, {"features.1.0": 128, "features.5.26": 512, "features.7.2": 1024}, "classifier.2"),
    "convnext_large": (36, {"features.1.0": 192, "features.5.26": 768, "features.7.2": 1536}, "classifier.2"),
}
SLOW = {"resnet101", "resnet152", "convnext_small", "convnext_base", "convnext_large"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache for the test; returns its checkpoints folder."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_list_models_names_every_model_with_a_description():
    listed = dict(featvis.list_models())
    assert set(NAMES) <= set(listed)
    assert all(listed[n] and "\n" not in listed[n] for n in NAMES)


def test_unknown_model_names_close_matches():
    with pytest.raises(KeyError, match="resnet50"):
        featvis.load_model("resnet05", weights=None)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in TORCHVISION])
def test_torchvision_models_build_random_and_list_blocks(name):
    model = featvis.load_model(name, weights=None, device="cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    table = {info.name: info for info in featvis.layers(model, size=64)}
    n_blocks, channels, logits = TORCHVISION[name]
    assert sum(info.block for info in table.values()) == n_blocks
    for layer, c in channels.items():
        assert table[layer].block and table[layer].channels == c
    assert table[logits].shape == (1000,)
    stage = "features.1" if name.startswith("convnext") else ("layer1" if name.startswith("resnet") else "conv1")
    assert not table[stage].block


def test_batchnorm_statistics_stay_frozen_after_train():
    model = featvis.load_model("resnet18", weights=None, device="cpu").train()
    bn = model.net.bn1
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    assert not bn.training and torch.equal(bn.running_mean, before)


def _same_outputs(a, b, size=64):
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["inceptionv1", "resnet18"])
def test_state_dict_round_trips_through_weights_path(name, tmp_path):
    model = featvis.load_model(name, weights=None, device="cpu")
    path = tmp_path / "net.pth"
    torch.save(model.net.state_dict(), path)
    again = featvis.load_model(name, weights=str(path), device="cpu")
    assert again.net.state_dict().keys() == model.net.state_dict().keys()
    _same_outputs(model, again)
    torch.save(model.state_dict(), tmp_path / "featvis.pth")  # a featvis model's own state dict too
    _same_outputs(model, featvis.load_model(name, weights=tmp_path / "featvis.pth", device="cpu"))


def test_googlenet_loads_torchvision_state_dicts_with_aux_heads(tmp_path):
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False).eval()
    torch.save(tv.state_dict(), tmp_path / "googlenet.pth")
    model = featvis.load_model("googlenet", weights=tmp_path / "googlenet.pth", device="cpu")
    assert model.net.aux1 is None
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(model.preprocess(x)), rtol=0, atol=0)


def test_mismatched_state_dict_names_missing_unexpected_and_mismatched_keys(tmp_path):
    state = featvis.load_model("inceptionv1", weights=None).net.state_dict()
    del state["mixed4a_1x1_pre_relu_conv.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["conv2d1_pre_relu_conv.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        featvis.load_model("inceptionv1", weights=str(tmp_path / "bad.pth"))
    msg = str(err.value)
    for part in ["bad.pth", "1 missing keys (mixed4a_1x1_pre_relu_conv.bias)", "1 unexpected keys (extra.weight)",
                 "conv2d1_pre_relu_conv.weight: file (64, 64, 3, 3), model (64, 64, 1, 1)", "weights=None"]:
        assert part in msg


def test_another_architectures_weights_are_rejected_clearly(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"does not fit resnet34: \d+ missing keys \(layer1\.2\.conv1\.weight"):
        featvis.load_model("resnet34", weights=tmp_path / "r18.pth")


def test_corrupted_and_missing_files_give_a_clear_error(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(featvis.load_model("inceptionv1", weights=None).net.state_dict(), good)
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    for name in ["truncated.pth", "garbage.pth"]:
        with pytest.raises(WeightsError, match=f"could not read .*{name} as a PyTorch state dict for inceptionv1"):
            featvis.load_model("inceptionv1", weights=str(tmp_path / name))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        featvis.load_model("inceptionv1", weights=str(tmp_path / "list.pth"))
    with pytest.raises(WeightsError, match="no weights file .*nowhere.pth"):
        featvis.load_model("inceptionv1", weights=str(tmp_path / "nowhere.pth"))


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/inception5h.pth", "file:///nonexistent/featvis/inception5h.pth"])
def test_unreachable_download_names_url_cache_path_and_local_file(url, hub, monkeypatch):
    monkeypatch.setattr(W, "INCEPTION5H", dataclasses.replace(W.INCEPTION5H, url=url))
    with pytest.raises(WeightsError) as err:
        featvis.load_model("inceptionv1")
    msg = str(err.value)
    assert url in msg and str(hub / "inception5h.pth") in msg
    assert "weights=PATH" in msg and "--weights PATH" in msg
    assert _files(hub) == []  # no partial file left behind


def _served(tmp_path, payload: bytes) -> str:
    src = tmp_path / "served" / "inception5h.pth"
    src.parent.mkdir()
    src.write_bytes(payload)
    return src.as_uri()


def test_checksum_rejects_a_wrong_file_and_keeps_nothing(tmp_path, hub, monkeypatch):
    url = _served(tmp_path, b"these are not the weights")
    expected = hashlib.sha256(b"the real weights").hexdigest()
    monkeypatch.setattr(W, "INCEPTION5H", W.Checkpoint(url, "inception5h.pth", expected))
    with pytest.raises(WeightsError, match=f"checksum mismatch .*expected {expected}.*weights=PATH"):
        featvis.load_model("inceptionv1")
    assert _files(hub) == []


def test_default_weights_download_once_then_load_from_the_cache(tmp_path, hub, monkeypatch):
    model = featvis.load_model("inceptionv1", weights=None, device="cpu")
    local = tmp_path / "inception5h.pth"
    torch.save(model.net.state_dict(), local)
    payload = local.read_bytes()
    url = _served(tmp_path, payload)
    monkeypatch.setattr(W, "INCEPTION5H", W.Checkpoint(url, "inception5h.pth", hashlib.sha256(payload).hexdigest()))
    _same_outputs(model, featvis.load_model("inceptionv1", device="cpu"))
    assert _files(hub) == ["inception5h.pth"]
    # second time: from the cache, the URL is not needed any more
    monkeypatch.setattr(W, "INCEPTION5H", dataclasses.replace(W.INCEPTION5H, url="http://127.0.0.1:9/gone"))
    _same_outputs(model, featvis.load_model("inceptionv1", device="cpu"))


def test_unpinned_checksum_warns_with_the_hash_it_got(tmp_path, hub, monkeypatch):
    torch.save(featvis.load_model("inceptionv1", weights=None).net.state_dict(), tmp_path / "w.pth")
    payload = (tmp_path / "w.pth").read_bytes()
    monkeypatch.setattr(W, "INCEPTION5H", W.Checkpoint(_served(tmp_path, payload), "inception5h.pth", None))
    with pytest.warns(UserWarning, match=hashlib.sha256(payload).hexdigest()):
        featvis.load_model("inceptionv1")


def test_torchvision_download_failure_names_url_cache_path_and_local_file(hub, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    with pytest.raises(WeightsError) as err:
        featvis.load_model("resnet18")
    msg = str(err.value)
    assert url in msg and str(hub / url.rsplit("/", 1)[1]) in msg and "weights=PATH" in msg


def test_corrupt_torchvision_cache_file_says_to_delete_it(hub):
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    hub.mkdir(parents=True)
    (hub / url.rsplit("/", 1)[1]).write_bytes(b"half a download")
    with pytest.raises(WeightsError, match="not the published f37072fd.*Delete it to download it again"):
        featvis.load_model("resnet18", weights="IMAGENET1K_V1")


def test_download_cut_off_midway_leaves_no_partial_file(hub, monkeypatch):
    class Dropped:
        headers = {"Content-Length": str(2 * W._CHUNK)}
        sent = False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            if self.sent:
                raise ConnectionResetError("connection reset by peer")
            self.sent = True
            return b"x" * n

    monkeypatch.setattr(W.urllib.request, "urlopen", lambda url, timeout: Dropped())
    with pytest.raises(WeightsError, match="could not download the inceptionv1 weights .*connection reset"):
        featvis.load_model("inceptionv1")
    assert _files(hub) == []
