"""The machine interpretability score (featvis.analysis.score, ``featvis score``), negative images
(``featvis render --negative``), ``--preset auto``, and the site's scores and negatives in Chromium.

The studied network is ``planted`` (tests/score_plugin.py): a 1x1 convolution whose channel 0
answers red, 1 green, 2 blue. The photos are small images of random colours; the observer is
featvis's ``toy`` convnet (another network: it was never shown these units).
"""
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featvis
from featvis.analysis.score import LEVELS, Observer, ObserverWarning, score
from featvis.cli import main
from featvis.jobs.folder import RenderFolder
from featvis.jobs.job import unit_seed
from featvis.jobs.settings import batch_objective
from featvis.models.toy import build as toy

from . import score_plugin  # noqa: F401  (registers "planted" in this process too)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
RENDER = ["render", "planted", "colour", "--steps", "32", "--size", str(SIZE), "--batch", "3"]


def photos(folder: Path, n=90, size=SIZE, seed=0) -> Path:
    """``n`` photos of one random colour each, with pixel noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.clip(rng.random(3)[None, None] + 0.15 * rng.standard_normal((size, size, 3)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def env(**extra):
    e = dict(os.environ, PYTHONPATH=str(ROOT), FEATVIS_PLUGINS="tests.score_plugin")
    e.update(extra)
    return e


def featvis_cli(*args, **extra):
    return subprocess.run([sys.executable, "-m", "featvis", *args], env=env(**extra), capture_output=True, text=True,
                          timeout=300)


def tree(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def scores_of(folder: Path):
    m = json.loads((folder / "manifest.json").read_text())
    return {layer: rec["channels"] for layer, rec in m["score"].items()}


SCORE = ["--observer", "toy", "--observer-size", str(SIZE), "--size", str(SIZE), "--k", "5", "--quiet"]


@pytest.fixture(scope="module")
def pics(tmp_path_factory):
    return photos(tmp_path_factory.mktemp("photos") / "pics")


@pytest.fixture(scope="module")
def planted():
    return featvis.load_model("planted")


def renders(model, chans, negative, k=1, steps=32):
    seeds = [unit_seed(0, "colour", c, j, negative) for c in chans for j in range(k)]
    from featvis.param import fourier
    return featvis.render(model, batch_objective("colour", chans, k=k, negative=negative), steps=steps,
                          param=fourier(SIZE, batch=len(seeds)),
                          seed=seeds, progress=False).images.detach()


# --- the score ---------------------------------------------------------------------------------------

def test_a_colour_unit_scores_near_one_with_natural_and_with_featvis_explanations(planted, pics):
    pos, neg = renders(planted, [0, 1, 2], False), renders(planted, [0, 1, 2], True)
    redness = lambda im: float(im[0].mean() - im[1:].mean())  # noqa: E731
    assert redness(pos[0]) > 0 > redness(neg[0])  # channel 0's render is reddish, its negative is not
    explanations = {"featvis": {("colour", c): (pos[c:c + 1], neg[c:c + 1]) for c in range(3)}}
    result = score(planted, {"colour": [0, 1, 2]}, pics, Observer(toy(), size=SIZE), explanations, k=5, size=SIZE,
                   progress=False)
    assert set(result.units) == {("colour", 0), ("colour", 1), ("colour", 2)}
    for per in result.units.values():
        assert set(per) == {"natural", "featvis"} and all(set(v) == set(LEVELS) for v in per.values())
        for level in ("extreme", "medium"):
            assert per["natural"][level].mean > 0.95 and per["featvis"][level].mean > 0.9, per
        assert per["natural"]["hard"].mean > 0.9 and per["featvis"]["hard"].mean > 0.75, per
        for s in per["featvis"].values():
            assert 0 <= s.low <= s.mean <= s.high <= 1 and s.n == 20
    summary = result.summary("colour")
    assert summary["natural"]["extreme"].n == 3 and summary["natural"]["extreme"].mean > 0.95


def test_noise_explanations_score_near_one_half(planted, pics):
    g = torch.Generator().manual_seed(0)
    obs = Observer(toy(), size=SIZE)
    means = []
    for draw in range(6):
        noise = {("colour", c): (torch.rand(5, 3, SIZE, SIZE, generator=g), torch.rand(5, 3, SIZE, SIZE, generator=g))
                 for c in range(3)}
        result = score(planted, {"colour": [0, 1, 2]}, pics, obs, {"noise": noise}, natural=False, k=5, size=SIZE,
                       progress=False, seed=draw)
        means += [s.mean for per in result.units.values() for s in per["noise"].values()]
    assert abs(np.mean(means) - 0.5) < 0.05, means
    assert np.std(means) < 0.2, means  # each unit near chance too, not a coin between 0 and 1


def test_the_observer_warning_fires_when_the_observer_is_the_studied_network(planted, pics):
    with pytest.warns(ObserverWarning, match="studied network itself"):
        score(planted, {"colour": [0]}, pics, Observer(planted, ["colour"], size=SIZE), k=5, size=SIZE, progress=False)
    with pytest.warns(ObserverWarning):  # the same weights in another object: the same network
        score(planted, {"colour": [0]}, pics, Observer(featvis.load_model("planted"), ["colour"], size=SIZE), k=5,
              size=SIZE, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ObserverWarning)
        score(planted, {"colour": [0]}, pics, Observer(toy(), size=SIZE), k=5, size=SIZE, progress=False)


# --- featvis render --negative ---------------------------------------------------------------------------

def test_negative_images_are_named_seeded_recorded_and_resume_onto_a_folder_without_them(tmp_path):
    once, later = tmp_path / "once", tmp_path / "later"
    assert main([*RENDER, "--negative", "--out", str(once)]) == 0
    m = RenderFolder(once).read()
    images = m["layers"]["colour"]["images"]
    assert list(images) == ["0", "0_neg", "1", "1_neg", "2", "2_neg"]
    assert images["0_neg"]["negative"] is True and "negative" not in images["0"]
    assert images["0_neg"]["seed"] == unit_seed(0, "colour", 0, 0, True) != images["0"]["seed"] == unit_seed(0, "colour", 0)
    assert all(images[f"{c}_neg"]["value"] < images[str(c)]["value"] for c in range(3))  # the unit's value, minimized
    assert m["layers"]["colour"]["negative_objective"].startswith("-channel(colour:c)")
    assert main([*RENDER, "--out", str(later)]) == 0  # the maximizing images only, then the negatives added
    assert main([*RENDER, "--negative", "--out", str(later)]) == 0
    drop = ("manifest.json",)
    a = {k: v for k, v in tree(once).items() if not k.startswith("parts/") and k not in drop and not k.startswith(".")}
    b = {k: v for k, v in tree(later).items() if not k.startswith("parts/") and k not in drop and not k.startswith(".")}
    assert a == b  # images and sheet, byte for byte
    with Image.open(once / "colour_sheet.png") as sheet:  # pairs side by side: 0 0_neg 1 1_neg / 2 2_neg
        assert sheet.width > 1.4 * sheet.height


def test_negative_images_with_diversity_are_named_c_neg_k(tmp_path):
    out = tmp_path / "div"
    assert main([*RENDER, "--channels", "0", "--diversity", "2", "--steps", "4", "--negative", "--out", str(out)]) == 0
    assert list(RenderFolder(out).read()["layers"]["colour"]["images"]) == ["0_0", "0_1", "0_neg_0", "0_neg_1"]
    assert (out / "colour" / "0_neg_1.png").is_file()


# --- --preset auto -------------------------------------------------------------------------------------

def test_preset_auto_is_resolved_per_model_recorded_and_older_folders_resume_with_theirs(tmp_path, capsys):
    from featvis import presets
    assert presets.auto("inceptionv1") == "lucid" and presets.auto("planted") == presets.AUTO_DEFAULT
    out = tmp_path / "auto"
    assert main(["render", "toy", "conv1", "--channels", "0:2", "--steps", "2", "--size", "32", "--preset", "auto",
                 "--out", str(out)]) == 0
    m = RenderFolder(out).read()
    assert m["settings"]["preset"] == presets.AUTO_DEFAULT and m["runs"][-1]["preset"] == f"auto -> {presets.AUTO_DEFAULT}"
    old = tmp_path / "old"  # rendered before --preset auto existed (and was the default): no preset
    assert main(["render", "toy", "conv1", "--channels", "0:2", "--steps", "2", "--size", "32", "--preset", "none",
                 "--out", str(old)]) == 0
    capsys.readouterr()
    for given in (["--preset", "auto"], []):  # auto, asked for or the default
        assert main(["render", "toy", "conv1", "--channels", "0:2", "--steps", "2", *given, "--out", str(old)]) == 0
        assert "nothing to do" in capsys.readouterr().out
    assert RenderFolder(old).read()["settings"]["preset"] is None


# --- featvis score DIR --images PHOTOS --------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A folder with maximizing and minimizing renders of two layers (colour, relu)."""
    out = tmp_path_factory.mktemp("scored") / "renders"
    assert main(["render", "planted", "colour", "relu", "--steps", "32", "--size", str(SIZE), "--batch", "3",
                 "--negative", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reference(rendered, pics, tmp_path_factory):
    """``rendered``, scored by an uninterrupted run."""
    import shutil
    out = tmp_path_factory.mktemp("reference") / "renders"
    shutil.copytree(rendered, out)
    r = featvis_cli("score", str(out), "--images", str(pics), *SCORE)
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_score_records_every_unit_and_prints_the_table(reference):
    out, stdout = reference
    rec = RenderFolder(out).read()["score"]
    assert set(rec) == {"colour", "relu"}
    col = rec["colour"]
    assert col["model"] == "planted" and col["weights_sha256"] == RenderFolder(out).read()["weights"]["sha256"]
    assert col["observer"]["model"] == "toy" and col["levels"] == list(LEVELS) and col["n_photos"] == 90
    assert set(col["channels"]) == {"0", "1", "2"}
    for kinds in col["channels"].values():
        assert set(kinds) == {"featvis", "natural"}
        assert kinds["natural"]["extreme"][0] > 0.95 and kinds["featvis"]["extreme"][0] > 0.9
    lines = stdout.splitlines()
    assert lines[0].startswith("colour: 3 unit(s); observer toy")
    assert any(line.split()[:1] == ["0"] and len(line.split()) >= 5 for line in lines)
    assert "featvis" in stdout and "natural" in stdout and "95% CI" in stdout


def test_a_second_score_run_reuses_the_records_and_writes_nothing(reference, pics):
    out, _ = reference
    before = tree(out)
    r = featvis_cli("score", str(out), "--images", str(pics), *SCORE)
    assert r.returncode == 0, r.stderr
    assert "(recorded before)" in r.stdout.splitlines()[0]
    assert tree(out) == before


@pytest.mark.parametrize("point", ["part:2", "manifest:1", "rename:2"])
def test_score_killed_at_a_write_point_then_rerun_equals_an_uninterrupted_run(point, rendered, reference, pics, tmp_path):
    import shutil
    out = tmp_path / "renders"
    shutil.copytree(rendered, out)
    r = featvis_cli("score", str(out), "--images", str(pics), *SCORE, FEATVIS_TEST_KILL_AT=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    RenderFolder(out).read()  # readable after any kill
    r = featvis_cli("score", str(out), "--images", str(pics), *SCORE)
    assert r.returncode == 0, r.stderr
    assert scores_of(out) == scores_of(reference[0])
    assert not list(out.rglob("*.fvtmp-*"))


def test_bad_input_is_one_line_exit_2_and_nothing_written(rendered, pics, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    few = photos(tmp_path / "few", n=10)
    not_rendered = tmp_path / "norenders"
    not_rendered.mkdir()
    before = tree(rendered)
    cases = [
        ([str(rendered), "--images", str(tmp_path / "nope")], "is not a folder"),
        ([str(rendered), "--images", str(empty)], "no .jpg, .jpeg or .png files"),
        ([str(rendered), "--images", str(few)], "too few"),
        ([str(rendered), "--images", str(pics), "--k", "60"], "too few"),
        ([str(not_rendered), "--images", str(pics)], "holds no renders"),
        ([str(tmp_path / "missing"), "--images", str(pics)], "no such folder"),
        ([str(rendered), "--images", str(pics), "--layer", "fc"], "has no renders of layer 'fc'"),
        ([str(rendered), "--images", str(pics), "--observer", "nonet"], "unknown model 'nonet'"),
    ]
    for argv, message in cases:
        r = featvis_cli("score", *SCORE, *argv)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("featvis score: error: "), r.stderr
        assert message in lines[0], lines[0]
    assert tree(rendered) == before
    assert list(not_rendered.iterdir()) == [] and not (tmp_path / "missing").exists()


# --- the site: scores and negative images, in Chromium -------------------------------------------------------

def test_the_site_shows_scores_sorts_by_them_and_shows_negative_images(reference, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from featvis import site

    from .test_site import chrome, errors_of, open_page, screenshots
    out = tmp_path / "atlas"
    site.build([reference[0]], out)
    browser = chrome(tmp_path / "profile")
    try:
        browser.set_page_load_timeout(30)
        missing, errors = open_page(browser, (out / "planted/colour/index.html").resolve().as_uri())
        assert not missing and not errors
        cells = browser.find_elements(By.CSS_SELECTOR, "#units li")
        assert [c.find_element(By.CSS_SELECTOR, ".s").text.startswith("MIS ") for c in cells] == [True] * 3
        Select(browser.find_element(By.ID, "sort")).select_by_value("score-asc")
        shown = [float(li.get_attribute("data-s")) for li in browser.find_elements(By.CSS_SELECTOR, "#units li")]
        assert shown == sorted(shown) and len(shown) == 3
        Select(browser.find_element(By.ID, "sort")).select_by_value("natural-desc")
        shown = [float(li.get_attribute("data-n")) for li in browser.find_elements(By.CSS_SELECTOR, "#units li")]
        assert shown == sorted(shown, reverse=True)
        assert not errors_of(browser)
        for folder in screenshots(tmp_path):
            browser.save_screenshot(str(folder / "score_layer.png"))
        missing, errors = open_page(browser, (out / "planted/colour/0.html").resolve().as_uri())
        assert not missing and not errors
        negs = browser.find_elements(By.CSS_SELECTOR, ".vis.neg img")
        assert len(negs) == 1 and "Negative image of planted colour:0" in negs[0].get_attribute("alt")
        assert negs[0].get_attribute("naturalWidth") == str(SIZE)
        rows = browser.find_elements(By.CSS_SELECTOR, "table.scores tr")
        assert len(rows) == 1 + 2 * len(LEVELS)
        assert "featvis" in rows[1].text and "natural" in rows[-1].text
        assert "--negative" in browser.find_element(By.CSS_SELECTOR, ".cmd code").text
        for folder in screenshots(tmp_path):
            browser.save_screenshot(str(folder / "score_unit.png"))
    finally:
        browser.quit()


def test_featvis_score_warns_when_the_observer_is_the_studied_network(rendered, pics, tmp_path, capsys):
    import shutil
    out = tmp_path / "renders"
    shutil.copytree(rendered, out)
    argv = [a for a in SCORE if a != "toy"]
    argv[argv.index("--observer") + 1:argv.index("--observer") + 1] = ["planted"]
    assert main(["score", str(out), "--images", str(pics), "--layer", "colour", *argv]) == 0
    err = capsys.readouterr().err
    assert "featvis score: warning: the observer (planted) is the studied network itself" in err
    assert RenderFolder(out).read()["score"]["colour"]["observer"]["model"] == "planted"
