"""``python -m featvis``: the same as the ``featvis`` command."""
import sys

from .cli import main

sys.exit(main())
