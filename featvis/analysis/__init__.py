"""Analyses: what a unit does and how well a picture explains it.

- :mod:`featvis.analysis.metrics`: orientation, bend, activation ratio, robustness, spectrum slope,
  saturation, faithfulness (``featvis.metrics``).
- :mod:`featvis.analysis.circuits`: expanded weights and a unit's strongest inputs
  (``featvis.circuits``); :mod:`featvis.analysis.circuit_figure`: ``featvis circuit``.
- :mod:`featvis.analysis.topk`: dataset examples (``featvis topk``).
- :mod:`featvis.analysis.score`: the machine interpretability score of a unit's explanations
  (``featvis score``).
- :mod:`featvis.analysis.faithful`: ``featvis faithfulness``; :mod:`featvis.analysis.spectrum`:
  ``featvis spectrum``; :mod:`featvis.analysis.selfcheck`: ``featvis selfcheck``.
- :mod:`featvis.analysis.atlas`: activation atlases (``featvis atlas``); :mod:`featvis.analysis.blocks`:
  building blocks and the semantic dictionary (``featvis blocks``).

A new analysis goes here: computing from the engine (``featvis.render``, ``featvis.models``),
recording into a render folder through ``featvis.jobs.folder``, drawing through ``featvis.figures``.
"""
from ..lazy import make_lazy

make_lazy(__name__, {})
