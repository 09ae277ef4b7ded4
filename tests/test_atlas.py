"""Activation atlas (featvis.analysis.atlas): cells rendered faithfully to their own direction, the
class filter on a planted case, the cache, vector text, the record and site page, bad input."""
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.analysis import atlas as A
from featvis.errors import UsageError


def colour_net(classes=True):
    """A planted model: layer ``relu`` is (R, G, B, 1-R, 1-G, 1-B) at every pixel, so a cell's
    direction is a colour; logit 0 is the mean red, logit 1 the mean blue."""
    conv = nn.Conv2d(3, 6, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for k in range(3):
            conv.weight[k, k] = 1
            conv.weight[k + 3, k] = -1
            conv.bias[k + 3] = 1
    net = nn.Sequential()
    net.add_module("colour", conv)
    net.add_module("relu", nn.ReLU())
    if classes:
        fc = nn.Linear(6, 2)
        with torch.no_grad():
            fc.weight.zero_()
            fc.bias.zero_()
            fc.weight[0, 0] = 1
            fc.weight[1, 2] = 1
        net.add_module("pool", nn.AdaptiveAvgPool2d(1))
        net.add_module("flat", nn.Flatten())
        net.add_module("fc", fc)
    return featvis.wrap(net, normalize=None, name="colours")


def _photos(folder: Path, colours, size=32, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, c in enumerate(colours):
        im = np.clip(np.asarray(c)[None, None] + rng.normal(0, 0.03, (size, size, 3)), 0, 1)
        Image.fromarray((im * 255).astype(np.uint8)).save(folder / f"p{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def colour_photos(tmp_path_factory):
    rng = np.random.default_rng(1)
    return _photos(tmp_path_factory.mktemp("colours"), rng.uniform(0, 1, (48, 3)))


def test_cells_render_their_own_direction(colour_photos):
    """Each cell's render points to its own cell's direction more than its grid neighbours' renders
    do (and more than to the neighbours' directions); the same renders shuffled do not."""
    model = colour_net(classes=False)
    res = A.atlas(model, "relu", colour_photos, grid=3, size=24, steps=48, per_image=4, photo_size=32,
                  method="pca", min_points=2, progress=False, batch=4)
    assert len(res.cells) >= 7 and res.renders.shape == (len(res.cells), 3, 24, 24)
    vectors = np.stack([c.vector for c in res.cells])
    centre = res.points.acts.mean(0)
    scores = A.direction_scores(model, "relu", res.renders, vectors, centre=centre)
    share, margin = A.neighbour_diagonal(res.cells, scores)
    share_r, margin_r = A.neighbour_diagonal(res.cells, scores, by="render")
    print(f"diagonal against neighbours: by direction {share:.2f} (margin {margin:.3f}), by render {share_r:.2f} "
          f"(margin {margin_r:.3f})")
    assert share == 1.0 and margin > 0.2
    assert share_r >= 0.7 and margin_r > 0.2
    # the control: renders given to the wrong cells lose the diagonal
    perm = np.roll(np.arange(len(res.cells)), 1)
    shuffled = A.direction_scores(model, "relu", res.renders[perm], vectors, centre=centre)
    assert A.neighbour_diagonal(res.cells, shuffled)[1] < margin / 2
    # batch size does not change the pictures (each cell's seed comes from its place)
    again = A.render_cells(model, "relu", res.cells[:3], 3, 24, 48, seed=0, batch=2, progress=False)
    assert torch.allclose(again, res.renders[:3], atol=1e-5)


def test_class_filter_weights_the_planted_class(tmp_path):
    """Half the photos are red (logit 0 reads red), half have no red at all: the class-0 atlas puts
    all its weight on the red photos' positions, the plain atlas about half."""
    rng = np.random.default_rng(2)
    red = np.c_[rng.uniform(0.6, 1, 24), rng.uniform(0, 1, (24, 2))]
    other = np.c_[np.zeros(24), rng.uniform(0, 1, (24, 2))]
    photos = _photos(tmp_path / "photos", np.r_[red, other])
    model = colour_net()
    res = A.atlas(model, "relu", photos, grid=3, size=16, steps=4, per_image=4, photo_size=32, method="pca",
                  min_points=2, cls=0, progress=False)
    is_red = res.points.photo < 24  # the red photos come first (p000..p023)
    w = np.clip(res.points.attributions[0], 0, None)
    share = w[is_red].sum() / w.sum()
    assert share > 0.95, share  # the photos' noise (sd 0.03) gives the others a trace of red
    # the attribution is activation x gradient: red / (H W) summed over the map's positions
    assert np.allclose(res.points.attributions[0], res.points.acts[:, 0] / 32 ** 2, atol=1e-6)
    heavy = max(res.cells, key=lambda c: c.weight)
    assert heavy.vector[0] > 0.6
    reddish = sum(c.weight for c in res.cells if w[c.members][is_red[c.members]].sum() >= 0.9 * w[c.members].sum())
    assert reddish >= 0.95 * sum(c.weight for c in res.cells)
    plain = A.grid_cells(res.points, 3, min_points=2)
    counted = sum(c.n for c in plain if is_red[c.members].mean() > 0.9)
    assert counted < 0.75 * sum(c.n for c in plain)  # without the filter the other photos' cells are there too


def test_cache_reused_and_untrusted(tmp_path, colour_photos, monkeypatch):
    model = colour_net()
    cache = tmp_path / "points.npz"
    first = A.atlas(model, "relu", colour_photos, grid=3, size=16, steps=2, per_image=4, photo_size=32,
                    method="pca", min_points=2, cache=cache, progress=False)
    assert cache.is_file()

    def no_more(*a, **k):
        raise AssertionError("the points were computed again")
    monkeypatch.setattr(A, "collect_points", no_more)
    second = A.atlas(model, "relu", colour_photos, grid=4, size=16, steps=2, per_image=4, photo_size=32,
                     method="pca", min_points=2, cache=cache, progress=False)
    assert np.array_equal(first.points.acts, second.points.acts)
    assert np.array_equal(first.points.coords, second.points.coords) and second.grid == 4
    monkeypatch.undo()
    # a new class adds its attributions to the cache, keeping the vectors
    third = A.atlas(model, "relu", colour_photos, grid=3, size=16, steps=2, per_image=4, photo_size=32,
                    method="pca", min_points=2, cache=cache, cls=1, progress=False)
    assert np.array_equal(third.points.acts, first.points.acts)
    assert np.allclose(A.load_points(cache).attributions[1], first.points.acts[:, 2] / 32 ** 2, atol=1e-6)
    # damaged or foreign files are one line, not a traceback
    cache.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a featvis atlas cache"):
        A.load_points(cache)
    np.savez(cache, meta=np.array(json.dumps({"version": 1, "key": {}, "photos": ["a"], "classes": []})),
             acts=np.zeros((3, 2), np.float32), photo=np.array([0, 5, 0]), position=np.zeros((3, 2), np.int32))
    with pytest.raises(UsageError, match="wrong shape, type or range"):
        A.load_points(cache)


def _pdf_strings(content: bytes):
    """The literal strings ``(...)`` of a PDF content stream, with their escapes undone."""
    escapes = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    i, n = 0, len(content)
    while i < n:
        if content[i] != ord("("):
            i += 1
            continue
        depth, i, out = 1, i + 1, bytearray()
        while i < n and depth:
            b = content[i]
            if b == ord("\\"):
                nxt = content[i + 1]
                if nxt in escapes:
                    out += escapes[nxt]
                    i += 2
                elif 48 <= nxt <= 55:
                    digits = re.match(rb"[0-7]{1,3}", content[i + 1:i + 4]).group()
                    out.append(int(digits, 8) & 0xFF)
                    i += 1 + len(digits)
                else:
                    out.append(nxt)
                    i += 2
                continue
            depth += b == ord("(")
            depth -= b == ord(")")
            if depth:
                out.append(b)
            i += 1
        yield bytes(out)


def pdf_text(path) -> str:
    """The text drawn in a PDF written by matplotlib: every string of every text object, decoded
    (2-byte glyph strings of embedded TrueType fonts as UTF-16, others as Latin-1), one text
    object a line."""
    data = Path(path).read_bytes()
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            s = zlib.decompress(m.group(1))
        except zlib.error:
            continue
        for bt in re.findall(rb"BT(.*?)ET", s, re.S):
            parts = [raw.decode("utf-16-be", "replace") if len(raw) % 2 == 0 and raw[:1] == b"\x00"
                     else raw.decode("latin-1") for raw in _pdf_strings(bt)]
            out.append("".join(parts))
    return "\n".join(out)


def test_figures_keep_text_as_text(tmp_path, colour_photos):
    """The atlas figure and a grid figure as SVG and PDF: their labels are text, not pixels."""
    from featvis.figures.mpl import grid_figure, save
    res = A.atlas(colour_net(), "relu", colour_photos, grid=3, size=16, steps=2, per_image=4, photo_size=32,
                  method="pca", min_points=2, progress=False)
    fig = res.figure(title="Colour atlas")
    assert fig.__class__.__name__ == "Figure"
    save(fig, tmp_path / "a.svg")
    save(fig, tmp_path / "a.pdf")
    svg = (tmp_path / "a.svg").read_text()
    assert re.search(r"<text[^>]*>Colour atlas</text>", svg)
    assert "PCA of the activations" in svg and "opacity: photo positions per cell" in svg
    text = pdf_text(tmp_path / "a.pdf")
    assert "Colour atlas" in text and "PCA of the activations" in text
    g = grid_figure([[torch.rand(3, 8, 8), None]], row_titles=["row one"], col_titles=["col A", "col B"],
                    captions=[["cap A", None]], title="Grid title")
    save(g, tmp_path / "g.pdf")
    assert all(t in pdf_text(tmp_path / "g.pdf") for t in ("row one", "col A", "cap A", "Grid title"))
    with pytest.raises(UsageError, match=r"\.png, \.pdf, \.svg"):
        save(g, tmp_path / "g.jpg")


def _cli(args, capsys):
    from featvis.cli import main
    code = main(args)
    return code, capsys.readouterr()


@pytest.mark.parametrize("extra, match", [
    (["--grid", "10"], "too few photos for a 10x10 grid"),
    (["--grid", "100"], "--grid 100: too fine"),
    (["--layer-fc"], "no spatial map"),
    (["--out-jpg"], "end the name with one of them"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, match):
    photos = _photos(tmp_path / "photos", np.random.default_rng(0).uniform(0, 1, (4, 3)))
    out, rec, cache = tmp_path / "atlas.png", tmp_path / "rec", tmp_path / "c.npz"
    layer = "fc" if "--layer-fc" in extra else "conv2"
    if "--out-jpg" in extra:
        out = tmp_path / "atlas.jpg"
    extra = [e for e in extra if not e.startswith("--layer") and not e.startswith("--out-")]
    code, cap = _cli(["atlas", "toy", layer, "--images", str(photos), "--out", str(out), "--record", str(rec),
                      "--cache", str(cache), "--method", "pca", "--steps", "2", "--size", "16",
                      "--photo-size", "32", "--quiet", "--grid", "2", *extra], capsys)
    assert code == 2, cap.err
    assert len(cap.err.strip().splitlines()) == 1 and match in cap.err, cap.err
    assert not out.exists() and not rec.exists() and not cache.exists()


def test_record_and_site_page(tmp_path, colour_photos, capsys):
    """--record puts cells, atlas and cache into a render folder; featvis site makes the layer's
    atlas page, whose cells link to the nearest units' pages."""
    from featvis.site import build
    rec = tmp_path / "rec"
    code, cap = _cli(["render", "toy", "conv2", "--steps", "2", "--size", "16", "--out", str(rec)], capsys)
    assert code == 0, cap.err
    code, cap = _cli(["atlas", "toy", "conv2", "--images", str(colour_photos), "--record", str(rec), "--method", "pca",
                      "--grid", "3", "--steps", "2", "--size", "16", "--photo-size", "32", "--quiet",
                      "--min-points", "2"], capsys)
    assert code == 0, cap.err
    m = json.loads((rec / "manifest.json").read_text())
    at = m["atlas"]["conv2"]
    assert at["grid"] == 3 and at["cells"] and (rec / at["image"]).is_file()
    assert (rec / "conv2/atlas/points.npz").is_file() and all((rec / c["file"]).is_file() for c in at["cells"])
    assert m["layers"]["conv2"]["images"]  # the renders' records are untouched
    build([rec], tmp_path / "site")
    page = (tmp_path / "site/toy/conv2/atlas.html").read_text()
    links = re.findall(r'<a href="(\d+)\.html"><img src="(img/atlas/cells/[^"]+)"', page)
    assert len(links) == len(at["cells"])
    assert {int(c) for c, _ in links} == {c["units"][0] for c in at["cells"]}
    assert all((tmp_path / "site/toy/conv2" / src).is_file() for _, src in links)
    assert 'href="atlas.html"' in (tmp_path / "site/toy/conv2/index.html").read_text()


@pytest.mark.slow
def test_umap_atlas_end_to_end(tmp_path, colour_photos, capsys):
    """The default layout (UMAP, featvis[atlas]) through the command line, to a PDF."""
    pytest.importorskip("umap")
    out = tmp_path / "atlas.pdf"
    code, cap = _cli(["atlas", "toy", "conv2", "--images", str(colour_photos), "--out", str(out), "--grid", "3",
                      "--steps", "2", "--size", "16", "--photo-size", "32", "--quiet", "--min-points", "2"], capsys)
    assert code == 0, cap.err
    assert "UMAP of the activations" in pdf_text(out)
