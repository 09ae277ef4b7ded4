"""featvis: feature visualization for convolutional image models in PyTorch.

>>> import featvis
>>> model = featvis.load_model("inceptionv1")
>>> result = featvis.render(model, "mixed4a:476", seed=0)
>>> result.save("mixed4a_476.png")

Names and submodules are imported on first use (``featvis.render`` imports torch then;
``featvis.metrics``, ``featvis.recipes`` ... are there without an import of their own), so that
``import featvis`` and the ``featvis`` command start at once.
"""
import importlib
import sys
import types

__version__ = "0.1.0"

#: public name -> the submodule that holds it
_API = {
    "evaluate": "render", "auto_batch": "render", "Result": "render",
    "load_model": "models", "list_models": "models", "wrap": "models", "layers": "models",
    "activations": "models", "FeatvisModel": "models", "capture": "hooks", "Unit": "units",
}
#: submodules reachable as attributes after ``import featvis``
_SUBMODULES = {
    "objectives", "param", "transforms", "models", "metrics", "recipes", "io", "hooks", "units", "errors",
    "render", "batch", "topk", "figure_spec", "selfcheck", "accel", "rng", "cli",
}

__all__ = [
    "render", "evaluate", "auto_batch", "Result", "load_model", "list_models", "wrap", "layers", "activations",
    "capture", "Unit", "objectives", "param", "transforms", "metrics", "recipes", "FeatvisModel", "__version__",
]


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


class _Package(types.ModuleType):
    """``featvis.render`` is the function, though ``featvis/render.py`` is also a submodule: the
    import system sets the package's attribute to the submodule when it is first imported (by
    whichever module imports it first), and this property keeps the function there instead."""

    @property
    def render(self):
        return importlib.import_module(f"{__name__}.render").render

    @render.setter
    def render(self, value):
        pass  # the submodule, set by the import system; the module is sys.modules["featvis.render"]


sys.modules[__name__].__class__ = _Package
