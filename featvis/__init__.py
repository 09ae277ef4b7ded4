"""featvis: feature visualization for convolutional image models in PyTorch.

>>> import featvis
>>> model = featvis.load_model("inceptionv1")
>>> result = featvis.render(model, "mixed4a:476", seed=0)
>>> result.save("mixed4a_476.png")

Names and submodules are imported on first use (``featvis.render`` imports torch then;
``featvis.metrics``, ``featvis.recipes`` ... are there without an import of their own), so that
``import featvis`` and the ``featvis`` command start at once.
"""
from .lazy import make_lazy

__version__ = "0.1.0"

#: public name -> the submodule that holds it
_API = {
    "evaluate": "render", "auto_batch": "render", "Result": "render",
    "load_model": "models", "list_models": "models", "wrap": "models", "layers": "models",
    "activations": "models", "FeatvisModel": "models", "capture": "hooks", "Unit": "units",
}
__all__ = [
    "render", "evaluate", "auto_batch", "Result", "load_model", "list_models", "wrap", "layers", "activations",
    "capture", "Unit", "objectives", "param", "transforms", "metrics", "recipes", "presets", "circuits", "FeatvisModel",
    "__version__",
]


# Submodules (featvis.metrics, featvis.presets, ...) are imported when first named; featvis.render
# stays the function, though featvis/render.py is also a submodule.
make_lazy(__name__, _API, functions=["render"])
