"""Weights provenance: whole download errors in the CLI, unverified cache files said so, and the
file's own SHA-256 in the manifest next to the digest of the tensors."""
import dataclasses
import hashlib
import json
import urllib.error
import urllib.request

import pytest
import torch

import featvis
from featvis.errors import UsageError
from featvis.jobs.job import prepare
from featvis.models import weights as W
from featvis.models.open import open_model


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_download_error_keeps_the_cause_and_the_cache_path(hub, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UsageError) as err:
        open_model("inceptionv1", "default", "cpu")
    msg = str(err.value)
    assert "Name or service not known" in msg and str(hub / "inception5h.pth") in msg
    assert "--weights PATH" in msg and "…" not in msg and len(msg) > 160


def test_unpinned_cache_file_loads_with_a_warning_and_is_recorded_unverified(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(W, "INCEPTION5H", dataclasses.replace(W.INCEPTION5H, sha256=None))
    hub.mkdir(parents=True)
    torch.save(featvis.load_model("inceptionv1", weights=None).net.state_dict(), hub / "inception5h.pth")
    sha = hashlib.sha256((hub / "inception5h.pth").read_bytes()).hexdigest()
    with pytest.warns(UserWarning, match=f"unverified.*{sha}"):
        job = prepare("inceptionv1", "conv2d0", "0:1", tmp_path / "out", size=32, steps=1, device="cpu")
    w = job.header["weights"]
    assert w["file_sha256"] == sha and w["verified"] is False and w["file"].endswith("inception5h.pth")
    assert w["sha256"] != sha  # the tensor digest is a different thing, and named apart


def test_pinned_cache_file_is_recorded_verified(tmp_path, hub, monkeypatch):
    hub.mkdir(parents=True)
    torch.save(featvis.load_model("inceptionv1", weights=None).net.state_dict(), hub / "inception5h.pth")
    sha = hashlib.sha256((hub / "inception5h.pth").read_bytes()).hexdigest()
    monkeypatch.setattr(W, "INCEPTION5H", dataclasses.replace(W.INCEPTION5H, sha256=sha))
    job = prepare("inceptionv1", "conv2d0", "0:1", tmp_path / "out", size=32, steps=1, device="cpu")
    assert job.header["weights"]["verified"] is True


def test_local_weights_file_is_hashed(tmp_path):
    path = tmp_path / "toy.pth"
    torch.save(featvis.load_model("toy", weights=None).net.state_dict(), path)
    job = prepare("toy", "conv2", "0:1", tmp_path / "out", weights=str(path), size=16, steps=1, device="cpu")
    w = job.header["weights"]
    assert w["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and w["verified"] is None
    job.run(progress=False)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["weights"]["file_sha256"] == w["file_sha256"]
    none = prepare("toy", "conv2", "0:1", tmp_path / "out2", weights="none", size=16, steps=1, device="cpu")
    assert "file_sha256" not in none.header["weights"]
