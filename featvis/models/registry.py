"""Named models: ``load_model(name)`` and ``list_models()``.

The zoo's models are declared here by name, description and the dotted path of their builder,
so that listing them (``featvis models``) imports neither torch nor torchvision; the builder's
module is imported on the first :func:`load_model`. Plugins add models with :func:`register`; a
builder takes ``weights`` ("default", a path, or None) and returns a
:class:`~featvis.models.wrap.FeatvisModel`.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

from ..errors import NotFound, UsageError, one_line

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .wrap import FeatvisModel


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, one-line description and builder (a callable, or
    ``"module:function"`` imported on first use; ``args`` go before ``weights``)."""

    name: str
    description: str
    build: Union[Callable[..., "FeatvisModel"], str]
    args: Tuple = ()

    def builder(self) -> Callable[..., "FeatvisModel"]:
        """The builder, importing its module if it is given by name."""
        build = self.build
        if isinstance(build, str):
            module, attr = build.split(":")
            build = getattr(importlib.import_module(module), attr)
        return functools.partial(build, *self.args) if self.args else build


#: torchvision's models and the name of their ``DEFAULT`` weights enum member (torchvision 0.15+;
#: tests/test_startup.py checks these against torchvision itself).
TORCHVISION = {
    "googlenet": ("GoogLeNet / Inception v1 as trained by torchvision (ImageNet-1k, BatchNorm; not Lucid's)", "IMAGENET1K_V1"),
    "resnet18": ("ResNet-18 (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
    "resnet34": ("ResNet-34 (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
    "resnet50": ("ResNet-50 (torchvision, ImageNet-1k)", "IMAGENET1K_V2"),
    "resnet101": ("ResNet-101 (torchvision, ImageNet-1k)", "IMAGENET1K_V2"),
    "resnet152": ("ResNet-152 (torchvision, ImageNet-1k)", "IMAGENET1K_V2"),
    "convnext_tiny": ("ConvNeXt-T (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
    "convnext_small": ("ConvNeXt-S (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
    "convnext_base": ("ConvNeXt-B (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
    "convnext_large": ("ConvNeXt-L (torchvision, ImageNet-1k)", "IMAGENET1K_V1"),
}

_ZOO = [
    ModelEntry("inceptionv1", "Lucid's InceptionV1 (GoogLeNet, TF inception5h graph, 1008 classes): the circuits model",
               "featvis.models.inception:build_inceptionv1"),
    *(ModelEntry(name, f"{description}; default weights {default}", "featvis.models.torchvision_models:build_torchvision",
                 (name,)) for name, (description, default) in TORCHVISION.items()),
    ModelEntry("handcoded", "hand-coded ground truth: oriented line detectors (edges) and curve detectors (curves); "
               "no download", "featvis.models.handcoded:build"),
    ModelEntry("toy", "tiny random-weight convnet (conv1..conv3, fc) for smoke tests; no pretrained weights",
               "featvis.models.toy:build"),
]

_REGISTRY: Dict[str, ModelEntry] = {e.name: e for e in _ZOO}

#: Model families named by a prefix and the library's own model name (``timm:convnext_tiny``): the
#: prefix and the builder ``build(name, weights)``, imported on first use.
FAMILIES = {"timm:": "featvis.models.timm_models:build_timm"}


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


def pick_device(device=None) -> "torch.device":
    """The one device chooser. ``None`` or ``"auto"``: ``$FEATVIS_DEVICE`` if set, else CUDA when
    present, else CPU; anything else as given (a :class:`~featvis.errors.UsageError` for CUDA where
    torch sees none, or a string that names no device)."""
    import torch

    if device is None or device == "auto":
        device = os.environ.get(DEVICE_ENV, "").strip() or None
        if device is None or device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"device {device!r}: {one_line(e)}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {str(device)!r}: torch sees no CUDA device here; use cpu (or auto, which picks "
                         "CUDA only where there is one)")
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


def load_model(name: str, weights: Optional[str] = "default", device=None) -> "FeatvisModel":
    """A zoo model by name, in eval mode, on ``device`` (CUDA when present if ``None``).

    ``weights``: ``"default"`` for the model's canonical pretrained weights (downloaded once into
    the torch hub cache), a path to a local state dict (``.pth`` or ``.safetensors``), ``hf-hub:ORG/REPO``
    (a checkpoint on the Hugging Face Hub), or ``None`` for random initialization.

    ``timm:NAME`` is timm's model NAME (``pip install featvis[timm]``; :mod:`featvis.models.timm_models`).
    """
    for prefix, build in FAMILIES.items():  # timm:NAME: the library's own names
        if name.startswith(prefix):
            entry = ModelEntry(name, "", build, (name[len(prefix):],))
            return _ready(_build_weights_only(entry.builder(), weights), name, device)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise NotFound(f"no model {name!r}{hint} (see: featvis models, or featvis.list_models())")
    return _ready(_build_weights_only(_REGISTRY[name].builder(), weights), name, device)


def _ready(model, name: str, device) -> "FeatvisModel":
    """A built model named, in eval mode, frozen, on its device."""
    model.name = name
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(pick_device(device))


def models_command(args) -> int:
    """``featvis models``: the zoo, one line each."""
    zoo = list_models()
    if not zoo:
        print("no models registered")
        return 0
    width = max(len(name) for name, _ in zoo)
    for name, description in zoo:
        print(f"{name:<{width}}  {description}")
    print("\ntimm:NAME  any timm model by its timm name, e.g. timm:convnext_tiny (pip install featvis[timm])")
    return 0
