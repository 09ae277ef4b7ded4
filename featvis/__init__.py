"""featvis: feature visualization for convolutional image models in PyTorch.

The package is laid out by concern, each room importing only from the rooms before it
(``tests/test_structure.py`` checks the direction; DESIGN.md draws it):

- ``featvis`` itself: the engine and the public API (``render``, ``step``, ``accel``, ``hooks``,
  ``rng``, ``units``, ``presets``, ``recipes``, ``objectives/``, ``param/``, ``transforms/``,
  ``models/``), over the core helpers ``errors``, ``io``, ``lazy``;
- ``featvis.figures``: drawing (contact sheets, labelled figures, circuit heatmaps, figure specs);
- ``featvis.jobs``: the render folder and the whole-model render job (shards, launchers, plans);
- ``featvis.analysis``: measuring units (metrics, circuits, dataset examples, faithfulness, ...);
- ``featvis.site``: the static atlas website; ``featvis.cli``: the command line.

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
    "show": "figures.show",
}
__all__ = [
    "render", "evaluate", "auto_batch", "Result", "load_model", "list_models", "wrap", "layers", "activations",
    "capture", "Unit", "show", "objectives", "param", "transforms", "metrics", "recipes", "presets", "circuits", "FeatvisModel",
    "__version__",
]


#: modules that moved into the rooms above, still importable by their old names
_MOVED = {
    "metrics": "analysis.metrics", "circuits": "analysis.circuits", "topk": "analysis.topk",
    "circuit_figure": "analysis.circuit_figure", "selfcheck": "analysis.selfcheck", "spectrum": "analysis.spectrum",
    "faithful": "analysis.faithful", "folder": "jobs.folder", "job": "jobs.job", "shard": "jobs.shard",
    "figure_spec": "figures.spec",
}

# Submodules (featvis.metrics, featvis.presets, ...) are imported when first named; featvis.render
# stays the function, though featvis/render.py is also a submodule.
make_lazy(__name__, _API, functions=["render"], moved=_MOVED)
