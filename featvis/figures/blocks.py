"""Drawing building blocks (Olah et al. 2018) with matplotlib: neuron groups, where they are on the
photo, their renders, and their attribution to classes; and the semantic dictionary.

The analysis is :mod:`featvis.analysis.blocks`; these functions only draw what they are given and
return a matplotlib ``Figure`` (write it with :func:`featvis.figures.mpl.save`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

#: One colour per group (matplotlib's tab10, which is readable in print and for most colour-blind readers).
PALETTE = "tab10"


def group_colours(k: int) -> List[Tuple[float, float, float]]:
    """``k`` distinct RGB colours, one per group."""
    from matplotlib import colormaps
    cmap = colormaps[PALETTE]
    return [tuple(cmap(i % cmap.N)[:3]) for i in range(k)]


def _upsample(m: "np.ndarray", size: Tuple[int, int]) -> "np.ndarray":
    """A (h, w) map bilinearly resized to ``size`` (H, W)."""
    import numpy as np
    import torch
    t = torch.as_tensor(np.asarray(m, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(maps: "np.ndarray", size: Tuple[int, int], colours) -> "np.ndarray":
    """An (H, W, 4) RGBA layer: each pixel in the colour of its strongest group, opaque in
    proportion to that group's strength (relative to the strongest value of any group)."""
    import numpy as np
    up = np.stack([_upsample(m, size) for m in maps])  # (k, H, W)
    top = max(float(up.max()), 1e-12)
    which = up.argmax(0)
    rgba = np.zeros((*size, 4), np.float32)
    rgba[..., :3] = np.asarray(colours, np.float32)[which]
    rgba[..., 3] = np.clip(up.max(0) / top, 0, 1) * 0.85
    return rgba


def blocks_figure(image, maps: "np.ndarray", renders, attribution: "np.ndarray", class_names: Sequence[str],
                  title: Optional[str] = None, cell_in: float = 1.25) -> "Figure":
    """The building-blocks figure: the photo and its groups in colour; per group its render (framed
    in its colour) and its spatial map over the photo (one colour bar for all maps); below, each
    group's attribution to each class as bars in the group's colour."""
    import numpy as np
    from matplotlib import cm
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    from .mpl import as_array, image_axes, new_figure

    k = len(maps)
    colours = group_colours(k)
    photo = as_array(image)
    H, W = photo.shape[:2]
    cols = k + 2
    fig = new_figure((cell_in * cols + 0.6, cell_in * 2 + 2.2 + 0.3 * len(class_names)))
    gs = fig.add_gridspec(3, cols + 1, height_ratios=[1, 1, 0.55 + 0.25 * len(class_names)],
                          width_ratios=[1] * cols + [0.08], hspace=0.35, wspace=0.12)
    image_axes(fig.add_subplot(gs[0, 0]), photo, "photo", fontsize="small")
    ax = fig.add_subplot(gs[0, 1])
    grey = np.repeat(photo[..., :3].mean(-1, keepdims=True), 3, -1)  # the photo without its colours, under the groups'
    image_axes(ax, (grey * 0.45 + 255 * 0.55).astype(np.uint8), "groups", fontsize="small")
    ax.imshow(overlay(maps, (H, W), colours), extent=(-0.5, W - 0.5, H - 0.5, -0.5), interpolation="nearest")
    top = max(float(np.max(maps)), 1e-12)
    for g in range(k):
        image_axes(fig.add_subplot(gs[0, g + 2]), renders[g], f"group {g + 1}", frame=colours[g], fontsize="small")
        ax = fig.add_subplot(gs[1, g + 2])
        image_axes(ax, (grey * 0.35 + 255 * 0.65).astype(np.uint8))
        cmap = LinearSegmentedColormap.from_list(f"g{g}", [(*colours[g], 0.0), (*colours[g], 1.0)])
        ax.imshow(_upsample(maps[g], (H, W)), cmap=cmap, vmin=0, vmax=top, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        if g == 0:
            ax.set_ylabel("where", fontsize="small")
    cax = fig.add_subplot(gs[1, cols])
    bar = fig.colorbar(cm.ScalarMappable(Normalize(0, top), LinearSegmentedColormap.from_list("s", ["white", "black"])),
                       cax=cax)
    bar.set_label("group strength", fontsize="x-small")
    bar.ax.tick_params(labelsize="x-small")
    ax = fig.add_subplot(gs[2, :cols])
    n = len(class_names)
    height = 0.8 / k
    y = np.arange(n)
    for g in range(k):
        ax.barh(y - 0.4 + height * (g + 0.5), attribution[g], height=height, color=colours[g], label=f"group {g + 1}")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(y)
    ax.set_yticklabels(list(class_names), fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("attribution to the class logit (gradient x activation)", fontsize="small")
    ax.tick_params(labelsize="small")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside, never over a bar
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def dictionary_figure(image, positions: Sequence[Tuple[int, int]], map_size: Tuple[int, int],
                      channels: Sequence[Sequence[int]], values: Sequence[Sequence[float]], renders: Dict[int, object],
                      layer: str, title: Optional[str] = None, cell_in: float = 1.15) -> "Figure":
    """The semantic dictionary: per row, the photo with one position outlined, then the channels that
    fire most there (their renders, labelled with the channel and its activation)."""
    from matplotlib.patches import Rectangle

    from .mpl import as_array, image_axes, new_figure

    photo = as_array(image)
    H, W = photo.shape[:2]
    h, w = map_size
    rows, top = len(positions), max((len(c) for c in channels), default=0)
    fig = new_figure((cell_in * (top + 1) + 0.3, cell_in * rows * 1.25 + 0.5))
    axes = fig.subplots(rows, top + 1, squeeze=False)
    colours = group_colours(rows)
    for i, (r, c) in enumerate(positions):
        ax = axes[i][0]
        image_axes(ax, photo)
        ax.add_patch(Rectangle((c * W / w - 0.5, r * H / h - 0.5), W / w, H / h, fill=False, edgecolor=colours[i],
                               linewidth=2))
        ax.set_ylabel(f"position {i + 1}\n(row {r}, col {c})", fontsize="x-small")
        for j in range(top):
            ax = axes[i][j + 1]
            if j >= len(channels[i]):
                ax.axis("off")
                continue
            ch = channels[i][j]
            image_axes(ax, renders[ch], f"channel {ch}", fontsize="x-small")  # the layer is in the title
            ax.set_xlabel(f"activation {values[i][j]:.3g}", fontsize="x-small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
