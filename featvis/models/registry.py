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


#: Environment variable naming the device that ``device=None`` / ``"auto"`` picks (e.g. ``cpu`` to
#: keep featvis off a GPU, as ``pytest --device cpu`` does for the test suite and its CLI runs).
DEVICE_ENV = "FEATVIS_DEVICE"


def pick_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: ``$FEATVIS_DEVICE`` if set, else CUDA when present, else CPU;
    anything else as given."""
    if device is None or device == "auto":
        device = os.environ.get(DEVICE_ENV, "").strip() or None
        if device is None or device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA device; use device='cpu' or None")
    return device


def load_model(name: str, weights: Optional[str] = "default", device=None) -> FeatvisModel:
    """A zoo model by name, in eval mode, on ``device`` (CUDA when present if ``None``).

    ``weights``: ``"default"`` for the model's canonical pretrained weights (downloaded once into
    the torch hub cache), a path to a local state dict, or ``None`` for random initialization.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise NotFound(f"no model {name!r}{hint} (see: featvis models, or featvis.list_models())")
    model = _REGISTRY[name].build(weights)
    model.name = name
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(pick_device(device))
