"""The one model opener of the commands: a model by name and ``--weights`` (default, none, a file),
with every failure as one line that names the input and the fix (:func:`open_model`).

:func:`featvis.load_model` is the Python API's; this wraps it for the command line: ``none`` draws
the random weights from the run's seed (so a resumed run gets the same network), a file is checked
before it is read, and a library's error is quoted on one line.
"""
from __future__ import annotations

import os

from ..errors import UsageError, one_line
from .registry import list_models, load_model


def weights_arg(weights: str):
    """``--weights`` checked: ``None`` for ``none``, ``"default"``, or the path of a readable file."""
    if weights in ("default", "none"):
        return None if weights == "none" else "default"
    if weights.startswith("hf-hub:"):  # fetched (or read from huggingface_hub's cache) by the builder
        from .weights import WeightsError, parse_hub
        try:
            parse_hub(weights)
        except WeightsError as e:
            raise UsageError(str(e)) from None
        return weights
    from pathlib import Path
    path = Path(weights)
    if path.is_dir():
        raise UsageError(f"--weights {weights}: it is a folder; pass the state dict file in it (a .pth/.pt file "
                         "saved with torch.save), or --weights default|none")
    if not path.is_file():
        raise UsageError(f"--weights {weights}: no such file; pass --weights default, none, or the path of a state dict saved with torch.save")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--weights {weights}: the file is not readable; fix its permissions or pass --weights default|none")
    return str(path)


def open_model(name: str, weights: str = "default", device="cpu", seed: int = 0):
    """``load_model`` with one-line errors. ``weights="none"`` draws the random init from
    ``seed``, so a resumed run (and its weights digest) gets the same network."""
    import pickle

    import torch

    known = [n for n, _ in list_models()]
    if name.startswith("timm:"):  # timm's own names (featvis[timm]): checked against timm's list
        from ..errors import NotFound
        from .timm_models import check_name
        try:
            check_name(name[len("timm:"):])
        except NotFound as e:
            raise UsageError(str(e)) from None
    elif name not in known:
        import difflib
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UsageError(f"unknown model {name!r}{hint} (see: featvis models)")
    arg = weights_arg(weights)
    try:
        if arg is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return load_model(name, None, device=device)
        return load_model(name, arg, device=device)
    except Exception as e:  # the builder's own error: a bad file, a failed download, wrong keys
        # a WeightsError is written for users: keep all of it (the cause, the cache path)
        first = one_line(e, limit=None if type(e).__name__ == "WeightsError" else 160)
        if arg not in (None, "default") and not arg.startswith("hf-hub:"):
            if isinstance(e, pickle.UnpicklingError) or "weights only load failed" in str(e).lower():
                first = ("it holds Python objects besides tensors, which featvis does not unpickle because that "
                         "could run code")
            raise UsageError(f"--weights {weights}: cannot load it into {name} ({first}); "
                             "pass a state dict saved with torch.save (or a .safetensors file) for this model, or --weights default|none") from e
        from .weights import WeightsError
        if isinstance(e, WeightsError):  # its message says what failed and what to do, in full
            raise UsageError(f"cannot load {name} with --weights {weights}: {' '.join(str(e).split())}") from e
        raise UsageError(f"cannot load {name} with --weights {weights} ({first}); "
                         "pass --weights PATH to a local state dict, or --weights none for random weights") from e
