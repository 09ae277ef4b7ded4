"""The model zoo and the wrapper that makes any ``nn.Module`` a featvis model."""
from .listing import LayerInfo, activations, layers
from .registry import list_models, load_model, pick_device, register
from .wrap import IMAGENET_MEAN, IMAGENET_STD, FeatvisModel, as_model, wrap
from .weights import WeightsError
from . import inception, torchvision_models, handcoded, toy  # noqa: E402,F401  (registers the zoo's models)

__all__ = [
    "FeatvisModel", "wrap", "as_model", "load_model", "list_models", "register", "layers",
    "LayerInfo", "activations", "pick_device", "IMAGENET_MEAN", "IMAGENET_STD", "WeightsError",
]
