"""How fast a 2,000-unit layer page of ``featvis site`` loads in headless Chromium.

Writes a render folder of 2,000 tiny PNGs (random noise, 32 px) with its manifest, builds the site,
then opens the layer page ``--runs`` times in a fresh headless Chromium (file://), reading the
browser's Navigation Timing: the time to the load event (thumbnails below the fold load lazily and
do not count, as a reader would see it), and the time for sorting by value and for filtering. The
target: under 2 s to the load event. Also prints the build time, and the time of a re-run that has
nothing to do.

    python3 benchmarks/site_load.py                 # needs chromium + chromedriver + selenium
    python3 benchmarks/site_load.py --units 5000 --runs 9
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from featvis import site  # noqa: E402

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


def make_folder(root: Path, n: int, size: int = 32) -> Path:
    """A render folder as ``featvis render`` writes it (through :class:`featvis.jobs.folder.RenderFolder`):
    ``big/<c>.png`` of random noise and its records."""
    from featvis.jobs.folder import RenderFolder
    rng = np.random.default_rng(0)
    folder = RenderFolder(root)
    header = {"model": "bench", "weights": {"spec": "none", "sha256": "0" * 64}, "featvis": "bench",
              "settings": {"neurons": False, "size": size, "steps": 1, "lr": 0.05, "param": "fourier",
                           "diversity": 1, "seed": 0, "format": "png", "device": "cpu"}}
    with folder.lock():
        folder.claim(header)
        entries = {}
        for c in range(n):
            rel = folder.image_rel("big", str(c))
            pic = Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))
            sha = folder.save_image(rel, pic)
            entries[str(c)] = {"channel": c, "k": 0, "seed": c, "value": float(rng.normal()), "file": rel, "sha256": sha}
        folder.record_images("big", entries, section={"objective": "channel(big:c)", "channels": n}, sheet=False)
    return root


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_folder(tmp / "renders", args.units)
        t0 = time.perf_counter()
        summary = site.build([folder], tmp / "site")
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = site.build([folder], tmp / "site")
        rebuilt = time.perf_counter() - t0
        assert again.written == 0
        page = (tmp / "site/bench/big/index.html")
        print(f"build: {summary.units} units in {built:.2f} s; re-run with nothing to do: {rebuilt:.2f} s; "
              f"layer page {page.stat().st_size / 1e3:.0f} kB")
        drv = browser(tmp / "profile")
        loads, ready, sorts, filters = [], [], [], []
        try:
            for _ in range(args.runs):
                drv.get("about:blank")
                drv.get(page.as_uri())
                nav = drv.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                         "return [n.domContentLoadedEventEnd, n.loadEventEnd, document.querySelectorAll('#units li').length]")
                assert nav[2] == args.units, nav
                ready.append(nav[0] / 1e3)
                loads.append(nav[1] / 1e3)
                sorts.append(drv.execute_script(
                    "const s = document.getElementById('sort'), t = performance.now(); s.value = 'value-desc';"
                    "s.dispatchEvent(new Event('change')); document.body.offsetHeight; return performance.now() - t") / 1e3)
                filters.append(drv.execute_script(
                    "const f = document.getElementById('filter'), t = performance.now(); f.value = '100-199';"
                    "f.dispatchEvent(new Event('input')); document.body.offsetHeight; return performance.now() - t") / 1e3)
        finally:
            drv.quit()
    med = statistics.median
    print(f"{args.units}-unit layer page in headless Chromium, median of {args.runs}: "
          f"load event {med(loads):.3f} s (DOM ready {med(ready):.3f} s; min {min(loads):.3f}, max {max(loads):.3f}); "
          f"sort by value {med(sorts) * 1e3:.0f} ms, filter {med(filters) * 1e3:.0f} ms")
    print(f"target: load under 2 s -> {'met' if med(loads) < 2 else 'NOT met'} ({med(loads) / 2:.2f} of the budget)")


if __name__ == "__main__":
    main()
