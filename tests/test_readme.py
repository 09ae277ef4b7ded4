"""Every ```python block of README.md runs, as written, against a local stand-in for downloads.

No block is skipped: the test counts the blocks it ran against the blocks in the README, and each
block must have called featvis (render or load_model) at least once, so a block that silently does
nothing, or a README with its blocks lost, fails. What is substituted, because tests cannot
download or wait: ``featvis.load_model(name)`` with default weights gives ``name`` with random
weights (same architecture, same layers), and ``render`` runs 2 steps at 64 px. Blocks run in order
in one namespace, in a fresh folder that holds ``photos/`` (a few images, for snippets that read a
folder of images).
"""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featvis

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks():
    return BLOCK.findall(README.read_text())


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


def test_every_python_block_runs(tmp_path, monkeypatch):
    calls = {"load_model": [], "render": 0}
    import importlib
    real_load, render_mod = featvis.load_model, importlib.import_module("featvis.render")
    real_render = render_mod.render

    def load_model(name, weights="default", device=None):
        calls["load_model"].append(name)
        return real_load(name, None if weights == "default" else weights, device="cpu")

    def render(model, objective, param=None, *args, **kwargs):
        calls["render"] += 1
        kwargs.update(steps=2, progress=False, device="cpu")
        if param is None:
            param = featvis.param.fourier(64, batch=featvis.objectives.as_objective(objective).batch_size or 1)
        return real_render(model, objective, param, *args, **kwargs)

    monkeypatch.setattr(featvis, "load_model", load_model)
    monkeypatch.setattr(render_mod, "render", render)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")

    blocks = python_blocks()
    namespace, ran = {"__name__": "readme"}, 0
    for i, code in enumerate(blocks):
        before = (len(calls["load_model"]), calls["render"])
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"README python block {i + 1} failed: {type(e).__name__}: {e}\n{code}")
        assert (len(calls["load_model"]), calls["render"]) != before, f"block {i + 1} never called featvis"
        ran += 1
    assert ran == len(blocks)
    assert calls["render"] >= 4 and "inceptionv1" in calls["load_model"]
    assert (tmp_path / "mixed4a_476.png").is_file() and (tmp_path / "figure1.pdf").is_file()
    assert isinstance(namespace["result"].images, torch.Tensor)
