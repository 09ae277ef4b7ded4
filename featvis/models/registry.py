"""Named models: ``load_model(name)`` and ``list_models()``.

Each model module registers a builder with :func:`register`; a builder takes ``weights``
("default", a path, or None) and returns a :class:`~featvis.models.wrap.FeatvisModel`.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..errors import NotFound

from .wrap import FeatvisModel


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, one-line description and builder."""

    name: str
    description: str
    build: Callable[..., FeatvisModel]


_REGISTRY: Dict[str, ModelEntry] = {}


def register(name: str, description: str):
    """Decorator: register ``build(weights) -> FeatvisModel`` under ``name``."""
    def deco(build):
        _REGISTRY[name] = ModelEntry(name, description, build)
        return build
    return deco


def list_models() -> List[Tuple[str, str]]:
    """``[(name, one-line description), ...]`` for every model ``load_model`` knows."""
    return [(e.name, e.description) for e in _REGISTRY.values()]


def pick_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA device; use device='cpu' or None")
    return device


def _build_weights_only(build, weights):
    """``build(weights)`` with every ``torch.load`` inside it weights-only (a plugin's too, even
    one that passes ``weights_only=False``): a checkpoint never runs code.
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` is torch's own switch for this; its opposite is unset meanwhile."""
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    previous = {k: os.environ.get(k) for k in keys}
    os.environ[keys[0]] = "1"
    os.environ.pop(keys[1], None)
    try:
        return build(weights)
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_model(name: str, weights: Optional[str] = "default", device=None) -> FeatvisModel:
    """A zoo model by name, in eval mode, on ``device`` (CUDA when present if ``None``).

    ``weights``: ``"default"`` for the model's canonical pretrained weights (downloaded once into
    the torch hub cache), a path to a local state dict, or ``None`` for random initialization.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise NotFound(f"no model {name!r}{hint} (see: featvis models, or featvis.list_models())")
    model = _build_weights_only(_REGISTRY[name].build, weights)
    model.name = name
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(pick_device(device))
