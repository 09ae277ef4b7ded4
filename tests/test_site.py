"""featvis site: the atlas website built from render folders, checked as files and in headless Chromium.

One module-scoped fixture renders the ``toy`` model (conv1, conv2; --diversity 2; dataset examples
of conv2; circuits of conv2 from conv1 written here in the circuits helper's format; neuron renders
of a few conv2 channels in a second folder) and the ``handcoded`` model (edges, curves), small and
few steps, in-process. The browser tests skip, saying why, where no Chromium + chromedriver +
selenium is found. Screenshots of a layer page and a unit page go to the test's tmp dir and, with
``FEATVIS_SCREENSHOTS=DIR``, to DIR.
"""
import hashlib
import json
import os
import shlex
import shutil
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest
from PIL import Image

from featvis import site
from featvis.cli import main
from featvis.errors import UsageError

SMALL = ["--steps", "3", "--size", "40", "--batch", "8"]


def _pics(folder: Path, n=6, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def write_circuits(folder: Path, layer: str, source: str, channels, n_source: int, per_unit=3):
    """Circuit records as the circuits helper writes them: DIR/<layer>/circuits/<c>.json + heatmaps."""
    (folder / layer / "circuits").mkdir(parents=True, exist_ok=True)
    for c in channels:
        inputs = []
        for j in range(per_unit):
            u = (c * 3 + j * 5 + 1) % n_source
            rel = f"{layer}/circuits/{c}_from_{source}_{u}.png"
            w = np.random.default_rng(100 * c + j).normal(size=(3, 3))
            rgb = np.zeros((3, 3, 3), np.uint8)
            rgb[..., 0] = np.clip(-w * 120, 0, 255).astype(np.uint8)
            rgb[..., 1] = np.clip(w * 120, 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(folder / rel)
            inputs.append({"channel": u, "norm": round(float(np.abs(w).sum()), 3),
                           "sign": "inhibitory" if j == 1 else "excitatory", "heatmap": rel})
        record = {"unit": f"{layer}:{c}", "from": source, "inputs": inputs}
        (folder / layer / "circuits" / f"{c}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """{name: folder}: toy (conv1, conv2 x2 diversity, topk, circuits), toy neurons, handcoded."""
    root = tmp_path_factory.mktemp("renders")
    toy, neurons, hand = root / "toy", root / "toy_neurons", root / "handcoded"
    for layer in ("conv1", "conv2"):
        assert main(["render", "toy", layer, "--weights", "none", "--diversity", "2", "--out", str(toy), *SMALL]) == 0
    assert main(["topk", "toy", "conv2", "--images", str(_pics(root / "pics")), "--k", "3", "--size", "40",
                 "--weights", "none", "--out", str(toy), "--quiet"]) == 0
    write_circuits(toy, "conv2", "conv1", range(16), 8)
    assert main(["render", "toy", "conv2", "--channels", "0:4", "--neurons", "--weights", "none",
                 "--out", str(neurons), *SMALL]) == 0
    for layer in ("edges", "curves"):
        assert main(["render", "handcoded", layer, "--out", str(hand), *SMALL]) == 0
    return {"toy": toy, "neurons": neurons, "handcoded": hand}


@pytest.fixture(scope="module")
def built(renders, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "atlas"
    summary = site.build([renders["toy"], renders["neurons"], renders["handcoded"]], out)
    assert summary.models == 2 and summary.layers == 4 and summary.units == 8 + 16 + 12 + 8
    return out


# --- the files ----------------------------------------------------------------------------------

def test_pages_at_stable_urls_with_images_command_examples_and_circuits(built, renders):
    for rel in ["index.html", "toy/index.html", "toy/conv1/index.html", "toy/conv2/index.html",
                "handcoded/edges/index.html", "handcoded/curves/7.html", "toy/conv1/0.html", "toy/conv2/15.html"]:
        assert (built / rel).is_file(), rel
    assert not (built / "toy/conv2/16.html").exists()
    index = (built / "index.html").read_text()
    assert "featvis" in index and "conv2" in index and "handcoded" in index and "40px" in index
    page = (built / "toy/conv2/3.html").read_text()
    # both diversity images of the channel render, and the neuron render of the second folder
    assert page.count('alt="Feature visualization of toy conv2:3') == 3
    assert "diversity image 2 of 2" in page and "neuron objective" in page
    # rendered with the default preset (auto: fourier-crops on toy), which chooses the param
    assert (f"featvis render toy conv2 --channels 3 --preset fourier-crops --size 40 --steps 3 --lr 0.05 --diversity 2 "
            f"--diversity-weight 0.5 --seed 0 --weights none --device cpu --threads {os.environ['FEATVIS_THREADS']} --out toy") in page  # no local path (issue 22)
    assert str(renders["toy"].parent) not in page
    assert "--neurons" in page
    manifest = json.loads((renders["toy"] / "manifest.json").read_text())
    top = manifest["topk"]["conv2"]["channels"]["3"][0]
    assert f"{top['value']:.4g}" in page and 'alt="Dataset example 1 for toy conv2:3' in page
    record = json.loads((renders["toy"] / "conv2/circuits/3.json").read_text())
    for u in record["inputs"]:
        assert f'href="../conv1/{u["channel"]}.html"' in page
    assert 'rel="prev" href="2.html"' in page and 'rel="next" href="4.html"' in page
    first = (built / "toy/conv1/0.html").read_text()
    assert 'rel="prev"' not in first and 'rel="next" href="1.html"' in first
    grid = (built / "toy/conv2/index.html").read_text()
    assert grid.count('loading="lazy"') == 16 and grid.count("<li data-c=") == 16
    # images are copies, thumbnails are small JPEGs
    assert (built / "toy/conv2/img/channel/3_1.png").read_bytes() == (renders["toy"] / "conv2/3_1.png").read_bytes()
    with Image.open(built / "toy/conv2/thumb/3.jpg") as im:
        assert im.format == "JPEG" and max(im.size) <= site.THUMB


def test_the_reproduce_command_reproduces_the_image(built, renders, tmp_path):
    page = (built / "toy/conv1/5.html").read_text()
    start = page.index("featvis render toy conv1 --channels 5")
    cmd = page[start:page.index("</code>", start)]
    argv = shlex.split(cmd.replace("&#x27;", "'"))[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv) == 0
    for k in range(2):
        again = Image.open(tmp_path / "again/conv1" / f"5_{k}.png")
        original = Image.open(renders["toy"] / "conv1" / f"5_{k}.png")
        assert np.abs(np.asarray(again, np.int16) - np.asarray(original, np.int16)).max() <= 1


def test_rerun_writes_only_what_changed_and_removes_what_left(renders, tmp_path):
    src = tmp_path / "toy"
    shutil.copytree(renders["toy"], src)
    out = tmp_path / "atlas"
    first = site.build([src], out)
    assert first.written > 0 and first.unchanged == 0
    again = site.build([src], out)
    assert again.written == 0 and again.removed == 0 and again.unchanged == first.written
    # a re-rendered image (new bytes, and their record): its copy and its thumbnail are redone, no page changes
    Image.new("RGB", (40, 40), (200, 30, 30)).save(src / "conv2/4_0.png")
    sha = hashlib.sha256((src / "conv2/4_0.png").read_bytes()).hexdigest()
    edit_records(src, lambda m: m["layers"]["conv2"]["images"]["4_0"].update(sha256=sha))
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.html")}
    changed = site.build([src], out)
    assert changed.written == 2
    assert (out / "toy/conv2/img/channel/4_0.png").read_bytes() == (src / "conv2/4_0.png").read_bytes()
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    # a folder given once more adds its pages; left out again, what only it gave goes, and a
    # user's own file in the site is left alone
    more = site.build([src, renders["handcoded"], renders["neurons"]], out)
    assert more.models == 2 and (out / "handcoded/edges/0.html").is_file()
    assert (out / "toy/conv2/img/neuron/0.png").is_file()
    (out / "notes.txt").write_text("mine")
    fewer = site.build([src], out)
    assert fewer.written == 1 + 1 + 4  # the index, toy's page (its folders), the pages of the neuron units
    assert fewer.removed == more.written - fewer.written  # all that the other two folders added
    assert not (out / "handcoded").exists() and not (out / "toy/conv2/img/neuron").exists()
    assert (out / "notes.txt").read_text() == "mine" and "handcoded" not in (out / "index.html").read_text()


def test_a_run_stopped_midway_can_be_run_again(renders, tmp_path, monkeypatch):
    out = tmp_path / "atlas"
    real = site.builder._Writer.thumbnail

    def stop(self, rel, src, size, *what):
        if rel.endswith("/5.jpg"):
            raise KeyboardInterrupt
        return real(self, rel, src, size, *what)

    monkeypatch.setattr(site.builder._Writer, "thumbnail", stop)
    with pytest.raises(KeyboardInterrupt):
        site.build([renders["handcoded"]], out)
    assert any(out.rglob("*.png")) and not (out / "index.html").exists()
    monkeypatch.setattr(site.builder._Writer, "thumbnail", real)
    summary = site.build([renders["handcoded"]], out)
    assert (out / "index.html").is_file() and summary.units == 20
    assert not list(out.rglob("*.site-tmp"))


def test_link_makes_relative_symlinks(renders, tmp_path):
    out = tmp_path / "atlas"
    site.build([renders["handcoded"]], out, link=True)
    img = out / "handcoded/edges/img/channel/3.png"
    assert img.is_symlink() and not os.path.isabs(os.readlink(img))
    assert img.resolve() == (renders["handcoded"] / "edges/3.png").resolve()
    assert not (out / "handcoded/edges/thumb/3.jpg").is_symlink()
    # switching back to copies replaces the links
    site.build([renders["handcoded"]], out)
    assert not img.is_symlink() and img.read_bytes() == (renders["handcoded"] / "edges/3.png").read_bytes()


def edit_records(folder: Path, edit):
    """Change the records of a render folder behind featvis's back (its part, or a v1 manifest)."""
    for path in sorted((folder / "parts").glob("*.json")) or [folder / "manifest.json"]:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))


def test_paths_outside_the_folder_are_refused(renders, tmp_path):
    src = tmp_path / "hand"
    shutil.copytree(renders["handcoded"], src)
    (tmp_path / "secret.png").write_bytes((src / "edges/0.png").read_bytes())
    for bad, message in (("../secret.png", "leaves the folder"), (str(tmp_path / "secret.png"), "absolute path")):
        edit_records(src, lambda m: m["layers"]["edges"]["images"]["0"].update(file=bad))
        with pytest.raises(UsageError, match=message):
            site.build([src], tmp_path / "atlas")
    assert not (tmp_path / "atlas").exists()
    # a symlink inside the folder that leads out of it
    edit_records(src, lambda m: m["layers"]["edges"]["images"]["0"].update(file="edges/0.png"))
    (src / "edges/0.png").unlink()
    (src / "edges/0.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(UsageError, match="outside the folder"):
        site.build([src], tmp_path / "atlas")
    (src / "edges/0.png").unlink()
    shutil.copy(tmp_path / "secret.png", src / "edges/0.png")
    site.build([src], tmp_path / "atlas")
    # a circuit record's heatmap outside the folder
    write_circuits(src, "curves", "pool", [0], 8)
    rec = json.loads((src / "curves/circuits/0.json").read_text())
    rec["inputs"][0]["heatmap"] = "../secret.png"
    (src / "curves/circuits/0.json").write_text(json.dumps(rec))
    with pytest.raises(UsageError, match="leaves the folder"):
        site.build([src], tmp_path / "atlas")


def test_missing_files_are_warned_about_and_left_out(renders, tmp_path):
    src = tmp_path / "hand"
    shutil.copytree(renders["handcoded"], src)
    (src / "edges/2.png").unlink()
    warnings = []
    summary = site.build([src], tmp_path / "atlas", warn=warnings.append)
    assert len(warnings) == 1 and "edges/2.png is missing" in warnings[0]
    assert summary.units == 12 + 8 - 1 and not (tmp_path / "atlas/handcoded/edges/2.html").exists()


def test_out_folders_that_are_not_ours_are_refused(renders, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    assert main(["site", str(renders["handcoded"]), "--out", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert main(["site", str(renders["handcoded"]), "--out", str(renders["handcoded"] / "site")]) == 2
    assert "inside the render folder" in capsys.readouterr().err
    assert main(["site", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["site", "--out", str(tmp_path / "s")]) == 2
    assert "needs render folders" in capsys.readouterr().err
    assert main(["site", "--serve", "--out", str(tmp_path / "s")]) == 2
    assert "has no index.html" in capsys.readouterr().err
    assert main(["site", str(renders["handcoded"]), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert "2 layer(s), 20 unit page(s)" in capsys.readouterr().out


def test_same_model_other_weights_are_separate_models(renders, tmp_path):
    other = tmp_path / "toy2"
    shutil.copytree(renders["toy"], other)

    def other_weights(m):
        m["weights"].update(sha256="ab" * 32)
        for sec in m.get("topk", {}).values():  # the examples were chosen by those weights too
            sec["made_by"]["weights"].update(sha256="ab" * 32)

    edit_records(other, other_weights)
    summary = site.build([renders["toy"], other], tmp_path / "atlas")
    assert summary.models == 2
    names = sorted(p.name for p in (tmp_path / "atlas").iterdir() if p.is_dir() and p.name != site.STATIC)
    assert names == ["toy", "toy-abababab"]  # the first weights keep the plain path (stable URLs, issue 22)


def test_serve_answers_on_localhost(built):
    ready = {}
    event = threading.Event()

    def on_ready(url, server):
        ready.update(url=url, server=server)
        event.set()

    thread = threading.Thread(target=site.serve, args=(built, 0, on_ready), daemon=True)
    thread.start()
    assert event.wait(10)
    try:
        assert ready["url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(ready["url"] + "toy/conv2/3.html", timeout=10) as r:
            assert r.status == 200 and b"toy \xc2\xb7 conv2:3" in r.read()
    finally:
        ready["server"].shutdown()
        thread.join(10)


# --- in a real browser ----------------------------------------------------------------------------

CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900"]


def chrome(user_data_dir: Path):
    """A headless Chromium driven by selenium, or pytest.skip saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser tests need selenium: pip install -e '.[test]'")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("browser tests need Chromium and chromedriver: apt-get install chromium chromium-driver "
                    f"(found chromium: {binary}, chromedriver: {driver})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROME_FLAGS + [f"--user-data-dir={user_data_dir}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    drv = chrome(tmp_path_factory.mktemp("chrome-profile"))
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


ALL_IMAGES_LOADED = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(img => { img.loading = "eager"; });
window.scrollTo(0, document.body.scrollHeight);
Promise.all(imgs.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })))
  .then(() => done(imgs.filter(img => !(img.naturalWidth > 0)).map(img => img.getAttribute("src"))));
"""


def errors_of(browser):
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(browser, url):
    browser.get(url)
    browser.set_script_timeout(30)
    missing = browser.execute_async_script(ALL_IMAGES_LOADED)
    return missing, errors_of(browser)


def screenshots(tmp_path):
    folders = [tmp_path]
    if os.environ.get("FEATVIS_SCREENSHOTS"):
        folders.append(Path(os.environ["FEATVIS_SCREENSHOTS"]))
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    return folders


def test_every_page_loads_without_console_errors_or_missing_images(browser, built):
    start = built.resolve().as_uri() + "/index.html"
    seen, todo, pages = set(), [start], 0
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        missing, errors = open_page(browser, url)
        assert not missing, f"{url}: images that did not load: {missing[:5]}"
        assert not errors, f"{url}: console errors: {errors[:3]}"
        pages += 1
        for href in browser.execute_script("return Array.from(document.links).map(a => a.href)"):
            target = href.split("#")[0]
            if urlparse(target).scheme == "file" and target.endswith(".html") and target not in seen:
                assert Path(urlparse(target).path).is_file(), f"{url} links to a missing page {target}"
                todo.append(target)
    # the index, 2 model pages, 4 layer pages, every unit page
    assert pages == 1 + 2 + 4 + 44


def test_layer_grid_shows_every_unit_sorts_and_filters(browser, built, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get((built / "toy/conv2/index.html").resolve().as_uri())
    visible = lambda: [int(li.get_attribute("data-c")) for li in browser.find_elements(By.CSS_SELECTOR, "#units li")
                       if li.is_displayed()]
    assert visible() == list(range(16))
    Select(browser.find_element(By.ID, "sort")).select_by_value("value-desc")
    values = [float(browser.find_element(By.CSS_SELECTOR, f'#units li[data-c="{c}"]').get_attribute("data-v"))
              for c in visible()]
    assert values == sorted(values, reverse=True) and len(values) == 16
    assert "sort=value-desc" in browser.current_url
    box = browser.find_element(By.ID, "filter")
    box.send_keys("3, 10-12")
    assert sorted(visible()) == [3, 10, 11, 12]
    assert browser.find_element(By.ID, "shown").text == "4 of 16 units"
    box.clear()
    box.send_keys("x")
    assert box.get_attribute("aria-invalid") == "true"
    box.clear()
    box.send_keys("4:6")
    assert sorted(visible()) == [4, 5]
    box.clear()
    Select(browser.find_element(By.ID, "sort")).select_by_value("channel")
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    assert visible() == list(range(16))
    assert not errors_of(browser)
    browser.set_window_size(1100, 800)
    for folder in screenshots(tmp_path):
        browser.save_screenshot(str(folder / "site_layer.png"))


def test_links_walk_model_layer_unit_upstream_and_arrow_keys(browser, built, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    browser.get((built / "index.html").resolve().as_uri())
    browser.find_element(By.LINK_TEXT, "toy").click()
    assert browser.current_url.endswith("/toy/index.html")
    browser.find_element(By.LINK_TEXT, "conv2").click()
    assert browser.current_url.endswith("/toy/conv2/index.html")
    browser.find_element(By.CSS_SELECTOR, '#units li[data-c="5"] a').click()
    assert browser.current_url.endswith("/toy/conv2/5.html")
    imgs = browser.find_elements(By.CSS_SELECTOR, ".vis img")
    assert len(imgs) == 2 and all("toy conv2:5" in i.get_attribute("alt") for i in imgs)
    assert "featvis render toy conv2 --channels 5" in browser.find_element(By.CSS_SELECTOR, ".cmd code").text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".examples img")) == 3
    browser.set_window_size(1100, 1000)
    for folder in screenshots(tmp_path):
        browser.save_screenshot(str(folder / "site_unit.png"))
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    assert browser.current_url.endswith("/toy/conv2/6.html")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert browser.current_url.endswith("/toy/conv2/5.html")
    upstream = browser.find_elements(By.CSS_SELECTOR, ".circuit a")
    assert len(upstream) == 3
    href = upstream[0].get_attribute("href")
    upstream[0].click()
    assert browser.current_url == href and "/toy/conv1/" in href
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("toy · conv1:")
    # on a phone-sized window the grid still fits the width (no sideways scrolling)
    browser.set_window_size(390, 844)
    for page in ("index.html", "toy/conv2/index.html", "toy/conv2/3.html"):
        browser.get((built / page).resolve().as_uri())
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), page
    assert not errors_of(browser)


def test_serve_in_the_browser_has_no_console_errors(browser, built):
    ready, event = {}, threading.Event()
    thread = threading.Thread(target=site.serve, args=(built, 0, lambda u, s: (ready.update(url=u, server=s), event.set())),
                              daemon=True)
    thread.start()
    assert event.wait(10)
    try:
        for path in ("", "toy/conv2/index.html", "toy/conv2/7.html"):
            missing, errors = open_page(browser, urljoin(ready["url"], path))
            assert not missing and not errors, (path, missing, errors)
    finally:
        ready["server"].shutdown()
        thread.join(10)
