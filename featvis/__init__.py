"""featvis: feature visualization for convolutional image models in PyTorch.

>>> import featvis
>>> model = featvis.load_model("inceptionv1")
>>> result = featvis.render(model, "mixed4a:476", seed=0)
>>> result.save("mixed4a_476.png")
"""
__version__ = "0.1.0"

from . import objectives, param, transforms  # noqa: E402
from .hooks import capture  # noqa: E402
from .models import FeatvisModel, activations, layers, list_models, load_model, wrap  # noqa: E402
from .render import Result, auto_batch, evaluate, render  # noqa: E402

__all__ = [
    "render", "evaluate", "auto_batch", "Result", "load_model", "list_models", "wrap", "layers", "activations", "capture",
    "objectives", "param", "transforms", "FeatvisModel", "__version__",
]
