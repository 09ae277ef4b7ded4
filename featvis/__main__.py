"""``python -m featvis``: the same as the ``featvis`` command.

``python -m`` puts the current folder first on ``sys.path``; it is taken off here, before anything
else is imported, so that a file in whatever folder featvis runs from (a ``torch.py``, or a module
that ``FEATVIS_PLUGINS`` names) is never imported by accident, under torchrun too. Plugins come
from installed packages or ``PYTHONPATH``; your own model file is named explicitly
(``featvis render path/to/file.py:build LAYER``).
"""
import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from featvis.cli import main  # noqa: E402  (after the clean-up above)

sys.exit(main())
