"""Rich display in Jupyter (featvis.display and the ``_repr_html_`` / ``_repr_png_`` of Result,
objectives, render folders, circuit figures), ``featvis.show``, and the progress bars' choice."""
import base64
import io
import os
import re
import warnings

import pytest
import torch
from PIL import Image

import featvis
from featvis import display
from featvis.errors import UsageError
from featvis.jobs.folder import RenderFolder
from featvis.objectives import channel, diversity, neuron, scaled, total_variation
from featvis.render import Result

from .conftest import tiny_model

URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _images_in(html: str):
    """The PNGs embedded in ``html`` as data URIs, decoded."""
    out = []
    for b64 in URI.findall(html):
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            im.load()
            out.append(im.copy())
    return out


def _png(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def _result(n=3, size=12, objective="channel(conv:[0,1,2])", labels=None):
    images = torch.stack([torch.full((3, size, size), i / max(n - 1, 1)) for i in range(n)])
    return Result(images, torch.arange(n, dtype=torch.float32) / 4, objective, list(range(n)), 5,
                  labels=labels if labels is not None else [f"conv:{i}" for i in range(n)])


# --- featvis.display -----------------------------------------------------------------------------

def test_html_grid_embeds_each_image_with_its_label_and_caption_escaped():
    imgs = [torch.zeros(3, 10, 14), torch.ones(3, 10, 14)]
    html = display.html_grid(imgs, labels=["a<b", "c&d"], captions=["0.5", "1"], title="<script>x</script>")
    pics = _images_in(html)
    assert [im.size for im in pics] == [(14, 10), (14, 10)]
    assert pics[0].getpixel((0, 0)) == (0, 0, 0) and pics[1].getpixel((3, 3)) == (255, 255, 255)
    assert "<b>a&lt;b</b>" in html and "c&amp;d" in html and "0.5" in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    # small images are shown enlarged by a whole factor (10 px -> 100, pixels kept sharp)
    assert 'width="98" height="70"' in html and "pixelated" in html


def test_html_grid_shows_at_most_the_limit_and_says_how_many_are_left_out():
    html = display.html_grid([torch.zeros(3, 4, 4)] * 7, limit=5)
    assert len(_images_in(html)) == 5 and "2 more image(s) not shown (the first 5 of 7)" in html


def test_tile_lays_out_images_without_gaps_between_rows_of_different_heights():
    a, b = Image.new("RGB", (20, 10), "red"), Image.new("RGB", (30, 40), "blue")
    out = display.tile([a, b], cols=1, pad=0)
    assert out.size == (30, 50)
    assert out.getpixel((15, 5)) == (255, 0, 0) and out.getpixel((15, 30)) == (0, 0, 255)
    with pytest.raises(ValueError):
        display.tile([])


def test_not_in_a_notebook_here():
    assert display.in_notebook() is False


# --- Result ------------------------------------------------------------------------------------------

def test_result_html_has_its_images_units_and_values():
    r = _result()
    html = r._repr_html_()
    pics = _images_in(html)
    assert len(pics) == 3 and all(im.size == (12, 12) for im in pics)
    assert [im.getpixel((5, 5))[0] for im in pics] == [0, 128, 255]
    for i in range(3):
        assert f"<b>conv:{i}</b>" in html
    assert "0.25" in html and "0.5" in html
    assert "channel(conv:[0,1,2]): 3 images, 5 steps" in html


def test_result_png_decodes_to_its_images_side_by_side():
    im = _png(_result(n=4, size=12)._repr_png_())
    assert im.size == (2 * 12 + 3 * 2, 2 * 12 + 3 * 2)  # 2 x 2, 2 px apart and around


def test_result_without_labels_and_with_terms():
    r = _result(n=2, labels=[])
    r.terms = {"objective": torch.tensor([1.0, 2.0]), "diversity": torch.tensor([-0.5, -0.25])}
    html = r._repr_html_()
    assert "<b>image 0</b>" in html and "<b>image 1</b>" in html
    assert r.captions()[1] == "0.25 (objective 2, diversity -0.25)"


def test_render_labels_each_image_with_its_units():
    model = tiny_model()
    obj = channel("conv2", [3, 5]) - 0.01 * total_variation() + neuron("conv1", 1, batch=1)
    result = featvis.render(model, obj, param=featvis.param.fourier(16, batch=2), steps=1, seed=0, progress=False)
    assert result.labels == ["conv2:3", "conv2:5 + conv1:1"]
    html = result._repr_html_()
    assert "<b>conv2:5 + conv1:1</b>" in html and len(_images_in(html)) == 2


# --- objectives --------------------------------------------------------------------------------------

def test_objective_units_follow_the_algebra():
    assert channel("l", 4).image_labels(2) == ["l:4", "l:4"]
    assert channel("l", [1, 2]).image_labels(2) == ["l:1", "l:2"]
    assert (-2 * channel("l", 7, batch=1)).image_labels(3) == ["", "l:7", ""]
    both = channel("l", 1, batch=0) + channel("l", 2, batch=0) + channel("m", 3, batch=1)
    assert both.image_labels(2) == ["l:1 + l:2", "m:3"]
    assert neuron("l", 5, x=1, y=2).image_labels(1) == ["l:5@1,2"]
    assert (channel("l", 1) + channel("l", 1)).image_labels(1) == ["l:1"]  # a unit named once
    assert total_variation().image_labels(1) == [""]  # penalties name no unit
    div = scaled(channel("l", [9] * 2), diversity("l"), 0.5, group=2, label="diversity")
    assert div.image_labels(2) == ["l:9", "l:9"]


def test_objective_html_shows_expression_layers_units_and_terms():
    obj = scaled(channel("mixed<4a", [1, 2]), diversity("mixed<4a"), 0.5, group=2, label="diversity")
    html = obj._repr_html_()
    assert "channel(mixed&lt;4a:[1,2])" in html and "mixed<4a" not in html
    assert "image 0" in html and "mixed&lt;4a:1" in html and "term diversity" in html
    assert "batch" in html


# --- render folders ----------------------------------------------------------------------------------

def _folder(tmp_path, n=3):
    rf = RenderFolder(tmp_path / "renders")
    with rf.lock("main"):
        rf.claim({"model": "m", "weights": {"spec": "none", "sha256": "0" * 64},
                  "settings": {"size": 8, "param": "fourier", "steps": 4}})
        entries = {}
        for c in range(n):
            rel = rf.image_rel("conv2", str(c))
            sha = rf.save_image(rel, torch.full((3, 8, 8), c / max(n - 1, 1)))
            entries[str(c)] = {"channel": c, "k": 0, "seed": c, "value": 1.0, "file": rel, "sha256": sha, "run": 0}
        rf.record_images("conv2", entries, section={"channels": 16}, sheet=False)
    return rf


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def test_folder_html_has_summary_and_a_preview_sheet_and_writes_nothing(tmp_path):
    rf = _folder(tmp_path)
    before = _snapshot(rf.root)
    html = rf._repr_html_()
    assert _snapshot(rf.root) == before  # display reads only: no stale sheet rebuilt, nothing written
    assert "model</th>" in html and ">m<" in html and "layer conv2" in html and "3 images (16 channels in the layer)" in html
    (sheet,) = _images_in(html)
    assert sheet.width >= 3 * 64  # three 64 px cells
    png = _png(rf._repr_png_())
    assert png.size == (sheet.width, sheet.height)


def test_folder_preview_is_bounded_and_skips_records_outside_the_folder(tmp_path):
    rf = _folder(tmp_path, n=5)
    manifest = rf.read()
    manifest["layers"]["conv2"]["images"]["1"]["file"] = "../outside.png"
    (tmp_path / "outside.png").write_bytes(b"not shown")
    small = rf.preview("conv2", manifest, limit=2)
    full = rf.preview("conv2", rf.read(), limit=2)
    assert small is not None and small.size == full.size  # still two cells: 0 and 2 (1 skipped)


def test_empty_or_damaged_folder_displays_a_line(tmp_path):
    empty = RenderFolder(tmp_path / "nothing")
    assert "none yet" in empty._repr_html_() and empty._repr_png_() is None
    rf = _folder(tmp_path)
    part = rf.root / "parts" / "main.json"
    part.write_text(part.read_text().replace('"layers"', '"layers_oops"', 1).replace('"featvis_manifest": 2', '"featvis_manifest": 9'))
    html = rf._repr_html_()
    assert "RenderFolder(" in html and "upgrade featvis" in html  # the error, in one line


# --- circuit figures ---------------------------------------------------------------------------------

def test_circuit_figure_is_still_a_pair_and_shows_itself():
    from featvis.analysis.circuit_figure import CircuitFigure
    from featvis.analysis.circuits import top_inputs
    model = tiny_model()
    inputs = top_inputs(model, "conv2:3", "conv1", k=3)
    fig = featvis.circuit_figure.circuit_figure(model, "conv2:3", "conv1", inputs=inputs, size=16, steps=1,
                                                progress=False)
    image, got = fig
    assert isinstance(fig, CircuitFigure) and got is inputs and fig.image is image and len(fig) == 2
    assert _png(fig._repr_png_()).size == image.size
    html = fig._repr_html_()
    (shown,) = _images_in(html)
    assert shown.size == image.size
    assert "conv2:3 from conv1" in html
    for inp in inputs:
        assert f"<td>conv1:{inp.channel}</td>" in html


# --- featvis.show ------------------------------------------------------------------------------------

def test_show_outside_a_notebook_writes_the_next_free_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    r = _result()
    first = featvis.show(r, notebook=False)
    second = featvis.show(torch.rand(3, 9, 9), notebook=False)
    page = featvis.show(channel("l", 1), notebook=False)  # no picture: the display as a page
    assert [p.name for p in (first, second, page)] == ["featvis-show-1.png", "featvis-show-2.png", "featvis-show-3.html"]
    assert "featvis.show: wrote featvis-show-1.png" in capsys.readouterr().err
    im = _png((tmp_path / "featvis-show-1.png").read_bytes())
    assert im.width >= 3 * 128  # one row of three labelled 128 px cells
    assert "l:1" in page.read_text()


def test_show_to_a_path_writes_picture_or_page(tmp_path):
    r = _result()
    png = featvis.show(r, tmp_path / "r.png", notebook=False)
    html = featvis.show(r, tmp_path / "r.html", notebook=False)
    pdf = featvis.show(r, tmp_path / "r.pdf", notebook=False)
    assert _png(png.read_bytes()).width > 0
    assert len(_images_in(html.read_text())) == 3 and html.read_text().startswith("<!doctype html>")
    assert pdf.read_bytes()[:4] == b"%PDF"
    again = featvis.show(png, tmp_path / "copy.png", notebook=False)  # a path of an image file
    assert _png(again.read_bytes()).size == _png(png.read_bytes()).size


def test_show_in_a_notebook_displays_and_writes_only_when_asked(tmp_path, monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    monkeypatch.chdir(tmp_path)
    r = _result()
    assert featvis.show(r, notebook=True) is None and shown == [r] and list(tmp_path.iterdir()) == []
    featvis.show([torch.zeros(3, 5, 5), torch.ones(3, 5, 5)], labels=["zero", "one"], notebook=True)
    html = shown[-1]._repr_html_()
    assert "<b>zero</b>" in html and len(_images_in(html)) == 2
    out = featvis.show(r, "r.png", notebook=True)
    assert out.name == "r.png" and out.exists() and len(shown) == 3


def test_show_says_what_it_cannot_show(tmp_path):
    with pytest.raises(UsageError, match="a folder; for a render folder give"):
        featvis.show(tmp_path, notebook=False)
    with pytest.raises(UsageError, match="no such file"):
        featvis.show(tmp_path / "missing.png", notebook=False)
    with pytest.raises(UsageError, match=r"shape \(2, 5\)"):
        featvis.show(torch.zeros(2, 5), notebook=False)
    with pytest.raises(UsageError, match="3 images but 2 labels"):
        featvis.show(torch.zeros(3, 3, 4, 4), labels=["a", "b"], notebook=False)
    with pytest.raises(UsageError, match="cannot show a dict"):
        featvis.show({}, notebook=False)
    assert list(tmp_path.iterdir()) == []  # nothing written on a mistake


# --- progress bars -----------------------------------------------------------------------------------

def test_progress_bar_is_the_text_bar_here_and_off_with_the_environment(monkeypatch):
    from tqdm.std import tqdm as std

    from featvis import progress
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.bar_class() is std
    with progress.bar(total=3, disable=False, file=io.StringIO()) as b:
        assert not b.disable
    monkeypatch.setenv(progress.ENV, "0")
    with progress.bar(total=3, disable=False) as b:
        assert b.disable


def test_progress_in_a_notebook_uses_the_widget_or_falls_back_silently(monkeypatch):
    import tqdm.notebook
    from tqdm.std import tqdm as std

    from featvis import progress
    monkeypatch.setattr(display, "in_notebook", lambda: True)
    monkeypatch.setattr(tqdm.notebook, "IProgress", None)  # no ipywidgets
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto would warn "IProgress not found" here
        assert progress.bar_class() is std
    monkeypatch.setattr(tqdm.notebook, "IProgress", object)  # ipywidgets there
    assert progress.bar_class() is tqdm.notebook.tqdm


def test_renders_stay_quiet_with_progress_off_in_the_environment(monkeypatch, capfd):
    monkeypatch.setenv("FEATVIS_PROGRESS", "0")
    featvis.render(tiny_model(), "conv2:1", param=featvis.param.fourier(16), steps=2, seed=0)  # progress=True
    assert capfd.readouterr().err == ""
    monkeypatch.delenv("FEATVIS_PROGRESS")
    featvis.render(tiny_model(), "conv2:1", param=featvis.param.fourier(16), steps=2, seed=0)
    assert "2/2" in capfd.readouterr().err


def test_featvis_show_is_lazy():
    import subprocess
    import sys
    code = "import featvis, sys; assert 'torch' not in sys.modules; f = featvis.show; print(f.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "featvis.figures.show"
