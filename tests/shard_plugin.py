"""Test-only model and write log for tests/test_shard.py, loaded with ``FEATVIS_PLUGINS=tests.shard_plugin``.

``tinyshard`` is featvis's ``toy`` (same weights). With ``FEATVIS_TEST_STALL`` set to a shard's part
file, the process that writes that part blocks in its next forward pass once the part records an
image (so in its second batch), after creating the file ``FEATVIS_TEST_STALLED``: the test then
knows the shard is mid-batch and SIGKILLs it (its pid is in the part's run record).

With ``FEATVIS_TEST_WRITES=PREFIX`` every file this process renames into place or opens for
writing is logged to ``PREFIX.<pid>`` as ``held<TAB>path``, ``held`` being 1 while the process holds
the render folder's lock (around merges: manifest.json, sheets).
"""
import json
import os
import sys
import time
from contextlib import contextmanager

from featvis.jobs.folder import RenderFolder
from featvis.models import register
from featvis.models.toy import build as build_toy


def _stall(module, inputs):
    path = os.environ.get("FEATVIS_TEST_STALL")
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        part = json.load(f)
    mine = part["runs"] and part["runs"][-1]["pid"] == os.getpid()
    if mine and any(layer["images"] for layer in part["layers"].values()):
        open(os.environ["FEATVIS_TEST_STALLED"], "w").close()
        while True:  # until the test kills us
            time.sleep(0.02)


@register("tinyshard", "toy, stalling one shard in its second batch when FEATVIS_TEST_STALL is set (tests only)")
def build(weights="default"):
    model = build_toy(weights)
    model.net.register_forward_pre_hook(_stall)
    return model


_held = [False]
_busy = [False]


def _log_writes(prefix):
    log = f"{prefix}.{os.getpid()}"
    lock = RenderFolder._folder_lock

    @contextmanager
    def held(self, *args, **kwargs):  # the folder lock, noting when it is held
        with lock(self, *args, **kwargs):
            _held[0] = True
            try:
                yield
            finally:
                _held[0] = False

    RenderFolder._folder_lock = held

    def hook(event, args):
        if _busy[0]:
            return
        path = None
        if event == "os.rename":
            path = args[1]
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR)):
                path = args[0]
        if path is None:
            return
        _busy[0] = True
        try:
            with open(log, "a") as f:
                f.write(f"{int(_held[0])}\t{os.path.abspath(os.fsdecode(path))}\n")
        finally:
            _busy[0] = False

    sys.addaudithook(hook)


if os.environ.get("FEATVIS_TEST_WRITES"):
    _log_writes(os.environ["FEATVIS_TEST_WRITES"])
