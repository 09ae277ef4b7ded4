"""io.figure: labelled grids with exact geometry, PNG with DPI, one-page PDF at a stated size."""
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from featvis.figures.grid import figure, figure_layout, load_font


def solid(colour, w=20, h=20):
    return Image.new("RGB", (w, h), colour)


def grid(rows, cols, w=20, h=20):
    return [[solid((10 * r, 10 * c, 200), w, h) for c in range(cols)] for r in range(rows)]


def line_height(size):
    ascent, descent = ImageFont.load_default(size=size).getmetrics()
    return ascent + descent


def pdf_pages(path):
    data = path.read_bytes()
    pages = re.findall(rb"/Type\s*/Page(?![a-z])", data)
    boxes = [tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[\s*([^\]]*)\]", data)]
    return len(pages), boxes


@pytest.mark.parametrize("rows, cols, pad, cell", [(1, 1, 0, (20, 20)), (3, 4, 8, (20, 20)), (2, 5, 3, (31, 17))])
def test_size_without_titles(rows, cols, pad, cell):
    image = figure(grid(rows, cols), cell=cell, pad=pad)
    assert image.size == (2 * pad + cols * cell[0] + (cols - 1) * pad, 2 * pad + rows * cell[1] + (rows - 1) * pad)
    assert image.mode == "RGB"


def test_titles_add_one_band_each_and_images_land_unchanged_in_their_cells():
    rows = grid(2, 3)
    fs, pad = 12, 6
    image = figure(rows, row_titles=["mixed4a:476", "neuron"], col_titles=["a", "b", "c"], pad=pad, font_size=fs)
    font = ImageFont.load_default(size=fs)
    title_w = int(np.ceil(font.getlength("mixed4a:476")))
    assert image.size == (pad + title_w + pad + 3 * 20 + 2 * pad + pad,
                          pad + line_height(fs) + pad + 2 * 20 + pad + pad)
    layout = figure_layout(2, 3, (20, 20), pad, ["mixed4a:476", "neuron"], ["a", "b", "c"], font_size=fs)
    for (r, c), (x, y) in layout.cells.items():
        assert image.crop((x, y, x + 20, y + 20)).tobytes() == rows[r][c].tobytes()


def test_long_column_titles_wrap_to_the_cell_and_captions_add_a_line_per_row():
    fs = 14
    image = figure(grid(2, 2, 40, 40), col_titles=["a very long column title", "b"], captions=[["x", "y"], ["z", ""]],
                   pad=4, font_size=fs)
    layout = figure_layout(2, 2, (40, 40), 4, col_titles=["a very long column title", "b"], captions=True, font_size=fs)
    assert len(layout.col_title_lines[0]) > 1
    assert layout.col_title_height == line_height(fs) * len(layout.col_title_lines[0])
    assert image.size == layout.size == (4 + 2 * 40 + 4 + 4,
                                         4 + layout.col_title_height + 4 + 2 * (40 + line_height(fs)) + 4 + 4)
    font = load_font(fs)
    assert all(font.getlength(line) <= 44 for line in layout.col_title_lines[0])


def test_cells_are_fitted_keeping_aspect_and_mixed_inputs_accepted():
    tensor = torch.zeros(3, 10, 40)
    tensor[0] = 1.0  # red, 4:1
    array = np.full((16, 16, 3), 255, np.uint8)
    image = figure([[tensor, array, None]], cell=20, pad=0)
    assert image.size == (60, 20)
    assert image.getpixel((10, 10)) == (255, 0, 0)  # 20x5 red strip centred vertically
    assert image.getpixel((10, 2)) == (255, 255, 255)
    assert image.getpixel((50, 10)) == (255, 255, 255)  # the empty cell


def test_scale_bar_adds_a_band_and_is_length_times_the_drawn_scale():
    pad = 5
    image = figure(grid(1, 2), cell=40, pad=pad, scale_bar=(10, ""))  # 20 px images drawn at 2x
    lh = line_height(14)
    assert image.size == (pad + 2 * 40 + pad + pad, pad + 40 + pad + lh + pad)
    row = np.asarray(image)[pad + 40 + pad: pad + 40 + pad + lh].min(axis=2).min(axis=0)  # darkest per column
    dark = np.nonzero(row < 50)[0]
    assert dark.min() == pad + 2 * 40 + pad - 20 and dark.max() == pad + 2 * 40 + pad - 1
    with pytest.raises(ValueError, match="wider than the grid"):
        figure(grid(1, 1), scale_bar=100)


def test_png_stores_dpi_and_transparent_background(tmp_path):
    figure(grid(2, 2), dpi=300, out=tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as im:
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    image = figure(grid(1, 2), background="transparent", pad=4, out=tmp_path / "t.png")
    with Image.open(tmp_path / "t.png") as im:
        assert im.mode == "RGBA" and im.getpixel((1, 1))[3] == 0 and im.getpixel((10, 10)) == (0, 0, 200, 255)
    assert image.mode == "RGBA"


def test_pdf_is_one_page_of_the_stated_size(tmp_path):
    image = figure(grid(3, 4), row_titles=["a", "b", "c"], col_titles=list("wxyz"), dpi=200, size_in=(3.5, 2.0),
                   out=tmp_path / "f.pdf")
    assert image.size == (700, 400)
    pages, boxes = pdf_pages(tmp_path / "f.pdf")
    assert pages == 1 and boxes == [pytest.approx((0, 0, 3.5 * 72, 2.0 * 72))]
    # a width alone: the height follows the figure's aspect ratio
    image = figure(grid(1, 2), pad=0, dpi=100, size_in=2.0, out=tmp_path / "g.pdf")
    assert image.size == (200, 100)
    assert pdf_pages(tmp_path / "g.pdf") == (1, [pytest.approx((0, 0, 144, 72))])
    # without size_in the page is pixels / dpi
    image = figure(grid(1, 1), pad=10, dpi=80, out=tmp_path / "h.pdf")
    assert pdf_pages(tmp_path / "h.pdf")[1] == [pytest.approx((0, 0, 40 * 72 / 80, 40 * 72 / 80))]
    transparent = figure(grid(1, 1), background="transparent", dpi=72, out=tmp_path / "t.pdf")
    assert transparent.mode == "RGBA" and pdf_pages(tmp_path / "t.pdf")[0] == 1


def test_size_in_redraws_at_the_target_resolution(tmp_path):
    small = figure(grid(2, 2), col_titles=["a", "b"], pad=4)
    big = figure(grid(2, 2), col_titles=["a", "b"], pad=4, dpi=100, size_in=(small.width * 4 / 100, small.height * 4 / 100))
    assert big.size == (small.width * 4, small.height * 4)
    # the cells grew with the page: the first cell's colour fills a 4x larger area
    assert big.getpixel((4 * 4 + 40, big.height - 4 * 4 - 40)) == (10, 0, 200)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="row titles for 1 rows"):
        figure(grid(1, 2), row_titles=["a", "b"])
    with pytest.raises(ValueError, match="background"):
        figure(grid(1, 1), background="black")
    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        figure(grid(1, 1), out=tmp_path / "f.gif")
    with pytest.raises(ValueError, match="too small"):
        figure(grid(1, 1), row_titles=["a long row title"], dpi=10, size_in=(0.1, 0.1))
    assert not list(tmp_path.iterdir())


def test_atomic_write_gives_files_the_usual_mode(tmp_path):
    import os

    from featvis.io import atomic_write
    mask = os.umask(0o022)
    try:
        p = atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o644
    assert [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_sheet_title_and_enlargement():
    import torch

    from featvis.figures.grid import sheet
    imgs = torch.rand(4, 3, 8, 8)
    plain = sheet(imgs, cols=2, pad=2)
    big = sheet(imgs, cols=2, pad=2, cell=32)
    titled = sheet(imgs, cols=2, pad=2, cell=32, title="toy conv2: channel, fourier 8 px")
    assert plain.size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)
    assert big.width == 2 * 32 + 3 * 2 and titled.width == big.width and titled.height > big.height
    # whole-pixel enlargement: each source pixel is a sharp 4x4 block
    cell = np.asarray(big)[2:34, 2:34]
    assert (cell[::4, ::4] == cell[3::4, 3::4]).all()
    # the title is drawn (dark pixels in the band above the grid)
    band = np.asarray(titled)[: titled.height - big.height]
    assert (band < 128).any()


def test_sheet_command_cell_and_title(tmp_path):
    from featvis.cli import main

    from . import cli_plugin  # noqa: F401
    out = tmp_path / "r"
    assert main(["render", "tiny", "conv2", "--channels", "0:2", "--size", "16", "--steps", "1", "--out", str(out)]) == 0
    auto = Image.open(out / "conv2_sheet.png")
    assert auto.width == 2 * 128 + 3 * 4  # 16 px renders enlarged 8x by default
    assert main(["sheet", str(out), "--cell", "48", "--no-title", "--out", str(tmp_path / "s.png")]) == 0
    s = Image.open(tmp_path / "s.png")
    assert s.width == 2 * 48 + 3 * 4
    assert main(["sheet", str(out), "--cell", "2"]) == 2
