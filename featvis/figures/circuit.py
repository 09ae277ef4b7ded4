"""Drawing a circuit: expanded weights as heatmaps on one symmetric colour scale, and its colour bar.

Red excites, blue inhibits, white is zero (the colours of the Circuits thread). The figure that puts
these beside the units' visualizations is :func:`featvis.analysis.circuit_figure.circuit_figure`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch and PIL are imported where they are used: `featvis --help` stays fast
    import torch
    from PIL import Image

#: The colours of the heatmaps (RGB): excitation, zero, inhibition.
RED, WHITE, BLUE = (0.84, 0.15, 0.16), (1.0, 1.0, 1.0), (0.13, 0.40, 0.67)
#: Smallest block (px) one weight gets in a figure's heatmap.
HEATMAP_MIN_PX = 3
#: Smallest side (px) of a heatmap PNG written by ``--record`` (weights are drawn as square blocks).
RECORD_PX = 64


def heatmap(weights: "torch.Tensor", scale: float, px: Optional[int] = None) -> "Image.Image":
    """A (kh, kw) weight map as an RGB image: ``+scale`` red, 0 white, ``-scale`` blue, linear
    in between. With ``px`` the image is ``px`` x ``px``: each weight a square block of a whole
    number of pixels, centred on white (or the map averaged down when it has more than ``px``
    weights a side); else 1 px per weight."""
    import torch
    from PIL import Image

    w = weights.detach().double().cpu()
    if w.dim() != 2:
        raise ValueError(f"heatmap() needs a (kh, kw) map, got shape {tuple(w.shape)}")
    t = (w / scale).clamp(-1, 1) if scale > 0 else torch.zeros_like(w)  # (kh, kw) in [-1, 1]
    white = torch.tensor(WHITE, dtype=torch.float64)
    pos, neg = torch.tensor(RED, dtype=torch.float64), torch.tensor(BLUE, dtype=torch.float64)
    a = t.abs()[..., None]
    rgb = torch.where(t[..., None] >= 0, white + a * (pos - white), white + a * (neg - white))  # (kh, kw, 3)
    im = Image.fromarray((rgb * 255).round().to(torch.uint8).numpy(), "RGB")
    if not px:
        return im
    f = px // max(im.size)
    if f >= 1:  # whole-pixel blocks, so that no resampling blurs one weight into the next
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    else:
        s = px / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BOX)
    cell = Image.new("RGB", (px, px), (255, 255, 255))
    cell.paste(im, ((px - im.width) // 2, (px - im.height) // 2))
    return cell


def colour_bar(scale: float, px: int) -> "Image.Image":
    """A ``px`` x ``px`` legend: the blue-white-red bar from ``-scale`` to ``+scale``, labelled."""
    import torch
    from PIL import Image, ImageDraw

    from .grid import load_font

    im = Image.new("RGB", (px, px), (255, 255, 255))
    ramp = torch.linspace(-scale, scale, max(2, px - 8))[None]  # (1, n)
    bar = heatmap(ramp, scale).resize((max(2, px - 8), max(4, px // 6)), Image.NEAREST)
    top = px // 2 - bar.height
    im.paste(bar, (4, top))
    draw = ImageDraw.Draw(im)
    font = load_font(max(8, px // 10))
    for text, x, anchor in ((f"-{scale:.2g}", 4, "la"), ("0", px // 2, "ma"), (f"+{scale:.2g}", px - 4, "ra")):
        draw.text((x, top + bar.height + 3), text, fill=(0, 0, 0), font=font, anchor=anchor)
    return im


def circuit_mpl(visualizations, weights, scale: float, col_titles, captions, cell_in: float = 1.2):
    """The circuit figure as a matplotlib ``Figure``: the unit's and its inputs' visualizations on
    top; under each input its expanded weights drawn as values (blue-white-red on one symmetric
    scale, ``[-scale, +scale]``) with a real colour bar; titles and captions are text in a PDF/SVG
    (:func:`featvis.figures.mpl.save`)."""
    from matplotlib import cm
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    from .mpl import image_axes, new_figure

    n = len(visualizations)
    fig = new_figure((cell_in * n + 0.8, cell_in * 2.4 + 0.4))
    gs = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [0.08], hspace=0.45, wspace=0.15)
    cmap = LinearSegmentedColormap.from_list("circuit", [BLUE, WHITE, RED])
    norm = Normalize(-scale, scale) if scale > 0 else Normalize(-1, 1)
    for i, vis in enumerate(visualizations):
        image_axes(fig.add_subplot(gs[0, i]), vis, col_titles[i], fontsize="small")
        if i == 0:
            fig.axes[-1].set_xlabel(captions[0][0], fontsize="x-small")
            continue
        ax = fig.add_subplot(gs[1, i])
        w = weights[i - 1].detach().double().cpu().numpy()
        ax.imshow(w, cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{captions[0][i]}\n{captions[1][i]}", fontsize="x-small")
    bar = fig.colorbar(cm.ScalarMappable(norm, cmap), cax=fig.add_subplot(gs[1, n]))
    bar.set_label("expanded weight", fontsize="x-small")
    bar.ax.tick_params(labelsize="x-small")
    return fig
