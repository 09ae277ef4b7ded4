"""The presets as measured (issue 29) and the quality benchmark's rule for choosing them: every
rendering network read by the others, a preset ranked by its worst model."""
import importlib.util
import os

import numpy as np
import torch

from featvis import presets
from featvis.param.fourier import spectrum_scale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quality():
    spec = importlib.util.spec_from_file_location("quality_imagenet", os.path.join(ROOT, "benchmarks", "quality_imagenet.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # builds no network: they load on first use
    return mod


def test_fourier_crops_is_the_swept_recipe():
    # what the docstring and benchmarks/results/preset_sweep.md say was chosen: 1/f^1.5, AdamW 0.05 with
    # decay 0.03 (the third round, against pinned pixels), revision 3 (render folders record it)
    p = presets.get("fourier-crops")
    param = p.param(16, 2)
    assert torch.allclose(param.scale, spectrum_scale(16, 16, 1.5))
    assert (p.lr, p.size, p.steps, p.weight_decay, p.revision) == (0.05, 224, 512, 0.03, 3)
    assert p.param(16, 2, channels=1)().shape == (2, 1, 16, 16)  # follows a grayscale model's input


def test_each_model_is_judged_by_the_others():
    q = _quality()
    assert q.judges_of("resnet50") == ["mobilenet_v2", "squeezenet"]
    assert q.judges_of("mobilenet_v2") == ["resnet50", "squeezenet"]


def test_summary_ranks_by_the_worst_model():
    q = _quality()
    rows = [dict(preset="a", model="resnet50", read=np.array([0.2, 0.4])),
            dict(preset="a", model="mobilenet_v2", read=np.array([0.9, 0.9])),
            dict(preset="b", model="resnet50", read=np.array([0.5, 0.5]))]
    lines = q.summary(rows, ["resnet50", "mobilenet_v2"]).splitlines()
    assert lines[0] == "| preset | resnet50 | mobilenet_v2 | mean | worst |"
    assert lines[2] == "| a | 0.300 | 0.900 | 0.600 | 0.300 |"
    assert lines[3] == "| b | 0.500 | - | 0.500 | 0.500 |"
