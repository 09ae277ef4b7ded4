"""Progress bars: a notebook widget in Jupyter where one can be drawn, the terminal bar elsewhere,
none at all when ``FEATVIS_PROGRESS=0`` (what the notebook tests set, so that their output stays quiet).

``tqdm.auto`` picks the widget too, but where ``ipywidgets`` is missing it warns ("IProgress not
found") the moment it is imported, which in a notebook is a red box under the first cell that
imports featvis; this falls back to the text bar silently instead (``pip install featvis[notebook]``
brings the widget).
"""
from __future__ import annotations

import os

#: ``FEATVIS_PROGRESS=0`` turns every featvis progress bar off (renders, jobs, dataset scans).
ENV = "FEATVIS_PROGRESS"


def enabled() -> bool:
    """False when the environment turns featvis's bars off (``FEATVIS_PROGRESS=0``)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def bar_class():
    """The tqdm class for this process: ``tqdm.notebook.tqdm`` in a Jupyter kernel with ipywidgets,
    else the terminal ``tqdm``."""
    from .display import in_notebook
    if in_notebook():
        try:
            from tqdm.notebook import IProgress
            from tqdm.notebook import tqdm as notebook_tqdm
        except Exception:  # noqa: BLE001 - a tqdm without its notebook module: the text bar
            IProgress = None
        if IProgress is not None:
            return notebook_tqdm
    from tqdm.std import tqdm
    return tqdm


def bar(*args, **kwargs):
    """A progress bar, ``tqdm(*args, **kwargs)`` of :func:`bar_class`, off when :func:`enabled` says so."""
    if not enabled():
        kwargs["disable"] = True
    return bar_class()(*args, **kwargs)


__all__ = ["bar", "bar_class", "enabled", "ENV"]
