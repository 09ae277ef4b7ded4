"""The model zoo and the wrapper that makes any ``nn.Module`` a featvis model.

Names are imported on first use (``featvis.models.load_model`` imports torch then, the
torchvision builders only when a torchvision model is loaded), so that ``featvis models`` and
``featvis --help`` start at once.
"""
import importlib
import sys
import types

#: public name -> the submodule that holds it
_WHERE = {
    "LayerInfo": "listing", "activations": "listing", "layers": "listing",
    "list_models": "registry", "load_model": "registry", "pick_device": "registry", "register": "registry",
    "IMAGENET_MEAN": "wrap", "IMAGENET_STD": "wrap", "FeatvisModel": "wrap", "as_model": "wrap",
    "WeightsError": "weights",
}

__all__ = [
    "FeatvisModel", "wrap", "as_model", "load_model", "list_models", "register", "layers", "activations",
    "LayerInfo", "pick_device", "IMAGENET_MEAN", "IMAGENET_STD", "WeightsError",
]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``featvis.models.wrap`` is the function, though ``wrap.py`` is also a submodule (see
    ``featvis._Package``, which does the same for ``featvis.render``)."""

    @property
    def wrap(self):
        return importlib.import_module(f"{__name__}.wrap").wrap

    @wrap.setter
    def wrap(self, value):
        pass  # the submodule, set by the import system; the module is sys.modules["featvis.models.wrap"]


sys.modules[__name__].__class__ = _Package
