"""The model zoo and the wrapper that makes any ``nn.Module`` a featvis model."""
from .listing import LayerInfo, layers
from .registry import list_models, load_model, pick_device, register
from .wrap import IMAGENET_MEAN, IMAGENET_STD, FeatvisModel, as_model, wrap
from . import toy  # noqa: F401,E402  (registers "toy")

__all__ = [
    "FeatvisModel", "wrap", "as_model", "load_model", "list_models", "register", "layers",
    "LayerInfo", "pick_device", "IMAGENET_MEAN", "IMAGENET_STD",
]
