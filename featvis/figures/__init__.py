"""Figures: drawing what the engine and the analyses made, for sheets and papers.

Drawing only (no model runs of its own, apart from a figure spec's one batch): give it images and
numbers, it lays them out.

- :mod:`featvis.figures.grid`: ``figure()`` (a labelled grid: row and column titles, captions, a
  scale bar; PNG with its DPI or a one-page PDF at a physical size) and ``sheet()`` (the fast
  contact sheet of a layer's renders).
- :mod:`featvis.figures.circuit`: expanded weights as heatmaps on one colour scale, the colour bar.
- :mod:`featvis.figures.spec`: ``featvis figure SPEC.json``, a declared figure rendered in one batch.
- :mod:`featvis.figures.mpl`: figures through matplotlib (``pip install featvis[figures]``): a
  ``Figure`` the author can still adjust, written as PNG/PDF/SVG with text as text.
- :mod:`featvis.figures.atlas` and :mod:`featvis.figures.blocks`: activation atlases and building
  blocks drawn.

A new kind of figure goes here as a module that draws from data; the analysis that computes the
data (``featvis.analysis``) calls it.
"""
from ..lazy import make_lazy

#: public name -> the submodule that holds it
_WHERE = {"figure": "grid", "sheet": "grid", "figure_layout": "grid", "save_figure": "grid", "load_font": "grid",
          "Layout": "grid", "heatmap": "circuit", "colour_bar": "circuit", "render_spec": "spec", "load_spec": "spec",
          "grid_figure": "mpl", "sheet_figure": "mpl"}
__all__ = list(_WHERE)

make_lazy(__name__, _WHERE)
