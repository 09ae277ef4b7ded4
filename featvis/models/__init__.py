"""The model zoo and the wrapper that makes any ``nn.Module`` a featvis model.

Names are imported on first use (``featvis.models.load_model`` imports torch then, the
torchvision builders only when a torchvision model is loaded), so that ``featvis models`` and
``featvis --help`` start at once.
"""
from ..lazy import make_lazy

#: public name -> the submodule that holds it
_WHERE = {
    "LayerInfo": "listing", "activations": "listing", "layers": "listing",
    "list_models": "registry", "load_model": "registry", "pick_device": "registry", "register": "registry",
    "IMAGENET_MEAN": "wrap", "IMAGENET_STD": "wrap", "FeatvisModel": "wrap", "as_model": "wrap",
    "WeightsError": "weights",
    "Layout": "layout", "tokens": "layout", "detect_layouts": "layout",
}

__all__ = [
    "FeatvisModel", "wrap", "as_model", "load_model", "list_models", "register", "layers", "activations",
    "LayerInfo", "pick_device", "IMAGENET_MEAN", "IMAGENET_STD", "WeightsError", "Layout", "tokens", "detect_layouts",
]


make_lazy(__name__, _WHERE, functions=["wrap"])  # featvis.models.wrap: the function, not wrap.py
