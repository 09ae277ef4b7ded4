"""Test-only model for the CLI tests, loaded with ``FEATVIS_PLUGINS=cli_plugin``.

``tiny`` is featvis's ``toy`` (same weights) whose forward pass blocks while the file named by
``FEATVIS_TEST_STALL`` (a manifest) records at least one image. It first creates the file named by
``FEATVIS_TEST_STALLED``, so a test knows the CLI is inside its second batch and can kill it there.
"""
import json
import os
import time

import torch

from featvis.models import register
from featvis.models.toy import build as build_toy


def _stall(module, inputs):
    path = os.environ.get("FEATVIS_TEST_STALL")
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        manifest = json.load(f)
    if any(layer["images"] for layer in manifest["layers"].values()):
        open(os.environ["FEATVIS_TEST_STALLED"], "w").close()
        while True:  # until the test kills or interrupts us
            time.sleep(0.02)


def _fail(module, inputs):
    """``FEATVIS_TEST_FAIL`` set: every optimization step fails (as a NaN or a bad --lr would); plain
    inference (the layer probe) still works."""
    if os.environ.get("FEATVIS_TEST_FAIL") and torch.is_grad_enabled():
        raise FloatingPointError("objective became non-finite (injected by FEATVIS_TEST_FAIL)")


@register("tiny", "toy, stalling in its second batch when FEATVIS_TEST_STALL is set (tests only)")
def build(weights="default"):
    model = build_toy(weights)
    model.net.register_forward_pre_hook(_stall)
    model.net.register_forward_pre_hook(_fail)
    return model
