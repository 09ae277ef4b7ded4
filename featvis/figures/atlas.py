"""Drawing an activation atlas: the cells' renders put together on the grid, and its figure.

The analysis that computes the cells is :mod:`featvis.analysis.atlas`; here only images and numbers.
A cell's opacity says how many photos' activations fell into it (its weight: a count, or in a
class-filtered atlas the summed attribution to the class), on a log scale as in Carter et al.
(2019), whose atlases fade the sparse cells out.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

#: Opacity of the sparsest cell shown, so that it is still seen (the densest is opaque).
MIN_OPACITY = 0.2
#: The weight ratio (heaviest cell / a cell) over which opacity falls to MIN_OPACITY.
RANGE = 100.0


def opacity(weights: Sequence[float]) -> "np.ndarray":
    """Each cell's opacity in [MIN_OPACITY, 1] from its weight ``w`` (any scale: counts or summed
    attributions): log(1 + R w / max w) / log(1 + R), R = :data:`RANGE`, so that a cell
    100 times lighter than the heaviest is the faintest."""
    import numpy as np
    w = np.asarray(weights, dtype=np.float64)
    top = float(w.max()) if w.size else 0.0
    if top <= 0:
        return np.ones_like(w)
    a = np.log1p(RANGE * np.clip(w, 0, None) / top) / math.log1p(RANGE)
    return MIN_OPACITY + (1 - MIN_OPACITY) * np.clip(a, 0, 1)


def compose(images, cells: Sequence[Tuple[int, int]], weights: Sequence[float], grid: int, cell_px: int,
            background=(255, 255, 255)) -> "Image.Image":
    """The atlas as one RGB image of ``grid * cell_px`` pixels a side: image i (a (3, H, W) tensor
    in [0, 1], a PIL image or an array) resized to ``cell_px`` and put at ``cells[i]`` = (column,
    row; row 0 at the top) with the opacity of its weight; empty cells stay ``background``."""
    import numpy as np
    from PIL import Image

    from .grid import _as_image

    canvas = np.empty((grid * cell_px, grid * cell_px, 3), np.float32)
    canvas[:] = np.asarray(background, np.float32)
    for item, (col, row), a in zip(images, cells, opacity(weights)):
        im = _as_image(item).convert("RGB")
        if im.size != (cell_px, cell_px):
            im = im.resize((cell_px, cell_px), Image.LANCZOS)
        y, x = row * cell_px, col * cell_px
        patch = canvas[y:y + cell_px, x:x + cell_px]
        patch[:] = a * np.asarray(im, np.float32) + (1 - a) * patch
    return Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8), "RGB")


def atlas_figure(image, weights: Sequence[float], grid: int, title: Optional[str] = None,
                 weight_label: str = "photo positions per cell", size_in: float = 7.0,
                 method: str = "UMAP") -> "Figure":
    """The atlas ``image`` (from :func:`compose`) as a matplotlib ``Figure``: the atlas, a title,
    and a colour bar of the opacity scale (white to black, labelled in cell weights); axes in grid
    cells. Returns the figure for the author to adjust; write it with
    :func:`featvis.figures.mpl.save`."""
    import numpy as np

    from .mpl import as_array, new_figure

    pyfig = new_figure((size_in + 0.9, size_in))
    ax = pyfig.add_axes([0.02, 0.04, size_in / (size_in + 0.9) * 0.94, 0.88])
    ax.imshow(as_array(image), extent=(0, grid, grid, 0), interpolation="lanczos")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{method} of the activations, {grid} x {grid} cells", fontsize="small")
    if title:
        ax.set_title(title)
    w = np.asarray(weights, dtype=np.float64)
    if w.size:
        from matplotlib import cm
        from matplotlib.colors import Normalize
        top = float(w.max())
        levels = np.linspace(0, top, 256)
        alpha = opacity(np.concatenate([levels, [top]]))[:-1]
        from matplotlib.colors import ListedColormap
        cmap = ListedColormap(np.stack([1 - alpha] * 3 + [np.ones_like(alpha)], 1))
        cax = pyfig.add_axes([size_in / (size_in + 0.9) * 0.94 + 0.04, 0.2, 0.025, 0.56])
        bar = pyfig.colorbar(cm.ScalarMappable(Normalize(0, top), cmap), cax=cax)
        bar.set_label(f"opacity: {weight_label}", fontsize="small")
    return pyfig
