"""The one model opener of the commands: a model by name and ``--weights`` (default, none, a file),
with every failure as one line that names the input and the fix (:func:`open_model`).

A model may also be the user's own file: ``path/to/file.py:build`` imports that file (running its
code, as ``python path/to/file.py`` would) and calls ``build()``, which returns an ``nn.Module``
(wrapped by :func:`featvis.wrap`, so it must declare its input convention) or a featvis model
(:func:`open_file_model`).

:func:`featvis.load_model` is the Python API's; this wraps it for the command line: ``none`` draws
the random weights from the run's seed (so a resumed run gets the same network), a file is checked
before it is read, and a library's error is quoted on one line.
"""
from __future__ import annotations

import os
import sys

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


#: Environment variable: modules imported before a command runs, so that the models they
#: register (:func:`featvis.models.register`) can be named (README, "Your own model").
PLUGINS_ENV = "FEATVIS_PLUGINS"


def load_plugins() -> list:
    """Import every module ``$FEATVIS_PLUGINS`` names (``pkg.mod[,other.mod]``), from installed
    packages and ``PYTHONPATH``; returns their names. A module that fails is a one-line
    :class:`UsageError`. (The command line calls this at the start of every command; the examples too.)"""
    import importlib
    names = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:
            raise UsageError(f"cannot import {name!r} from {PLUGINS_ENV} ({type(e).__name__}: {e}); plugins are imported "
                             "from installed packages and PYTHONPATH, never from the current folder; fix it or unset "
                             f"{PLUGINS_ENV} (your own model file: featvis render path/to/file.py:build LAYER)") from e
    return names


def is_file_model(name: str) -> bool:
    """Whether a model name is ``path/to/file.py:function``."""
    path, sep, func = str(name).rpartition(":")
    return bool(sep) and path.endswith(".py") and func.isidentifier()


def open_file_model(spec: str):
    """``path/to/file.py:build``: import the file (a module of its own, not put in ``sys.modules``
    under a name another import could pick up) and return what ``build()`` returns, wrapped by
    :func:`featvis.wrap` when it is a plain ``nn.Module``; named ``spec``. Errors are one line."""
    import hashlib
    import importlib.util
    from pathlib import Path

    from torch import nn

    from .wrap import FeatvisModel, wrap
    path, _, func = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"model {spec}: no such file {path}; give path/to/file.py:function, the function "
                         "returning your nn.Module")
    key = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    loader = importlib.util.spec_from_file_location(f"featvis_user_model_{key}", file)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module.__name__] = module  # (dataclasses and pickling look a class's module up there)
    folder = str(file.resolve().parent)
    if folder not in sys.path:  # its own imports find the files beside it, as under python FILE; appended,
        sys.path.append(folder)  # so that a file there never shadows an installed module
    try:
        loader.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module.__name__, None)
        raise UsageError(f"model {spec}: importing {path} failed ({type(e).__name__}: {one_line(e)}); "
                         f"run python {path} to see the traceback") from e
    build = getattr(module, func, None)
    if not callable(build):
        have = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                      and getattr(v, "__module__", None) == module.__name__)
        raise UsageError(f"model {spec}: {path} has no function {func!r}"
                         + (f"; it defines: {', '.join(have[:8])}" if have else "")
                         + f" (give {path}:FUNCTION, a function that returns your nn.Module)")
    from .registry import _build_weights_only
    try:
        net = _build_weights_only(lambda _: build(), None)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"model {spec}: {func}() failed ({type(e).__name__}: {one_line(e)}); "
                         f"run it in Python to see the traceback") from e
    if not isinstance(net, nn.Module):
        raise UsageError(f"model {spec}: {func}() returned {type(net).__name__}, not an nn.Module; return your network")
    model = net if isinstance(net, FeatvisModel) else wrap(net, name=spec)
    model.name = spec
    return model


def _load_file_model(spec: str, weights, device):
    """:func:`open_file_model`, then ``weights``: ``"default"`` as ``build()`` left it, a path loaded
    strictly (weights only), ``None`` every parameter re-drawn (``reset_parameters``)."""
    from .registry import pick_device
    from .weights import load_strict, read_state_dict
    model = open_file_model(spec)
    if weights is None:
        for m in model.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    elif weights != "default":
        load_strict(model.net, read_state_dict(weights, spec), weights, spec)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(pick_device(device))


def check_model_name(name: str) -> bool:
    """A model name the commands can open (else a one-line :class:`UsageError`, with close matches
    and, for a name that looks like a layer, the reminder that the model comes first); returns
    whether it is a ``file.py:function``."""
    if not name:
        raise UsageError("no model given: name a model first, then its layers, e.g. featvis render toy conv2 "
                         "(see: featvis models), or path/to/file.py:build for your own")
    if is_file_model(name):
        return True
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
        if not close and ("." in name or any(ch.isdigit() for ch in name) or ":" in name):
            hint = "; the model comes first, then its layers: featvis render MODEL LAYER"
        raise UsageError(f"unknown model {name!r}{hint} (see: featvis models; your own: path/to/file.py:build)")
    return False


def open_model(name: str, weights: str = "default", device="cpu", seed: int = 0):
    """``load_model`` with one-line errors. ``weights="none"`` draws the random init from
    ``seed``, so a resumed run (and its weights digest) gets the same network. ``name`` may be
    ``path/to/file.py:function`` (:func:`open_file_model`)."""
    import pickle

    import torch

    load = _load_file_model if check_model_name(name) else load_model
    arg = weights_arg(weights)
    try:
        if arg is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return load(name, None, device=device)
        return load(name, arg, device=device)
    except UsageError:
        raise
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
