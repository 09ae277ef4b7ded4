"""Run a notebook, export it with ``jupyter nbconvert --to html``, and screenshot the page in headless Chromium.

How docs/figures/notebook_tour.png was made (the notebook at its full sizes, on a CPU)::

    python3 docs/notebook_screenshot.py examples/notebooks/00_tour.ipynb /tmp/tour/notebook_tour.png
    cp /tmp/tour/notebook_tour.png docs/figures/

Needs nbclient, nbconvert, selenium, and Debian's chromium + chromium-driver (as tests/test_site.py).
The notebook runs in a temporary folder (its renders are not kept); the executed notebook and its
HTML are written beside the screenshot (``OUT.ipynb``, ``OUT.html``) before the browser starts, so
``--executed`` can take a new screenshot of an executed notebook without running it again.
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def execute(notebook: Path, workdir: Path):
    import nbclient
    import nbformat
    nb = nbformat.read(str(notebook), as_version=4)
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def to_html(nb) -> str:
    """What ``jupyter nbconvert --to html`` writes, with each cell's stream output coalesced and its
    carriage returns applied (a text progress bar is then its last state, as Jupyter shows it, not
    one line per update)."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor
    exporter = HTMLExporter()
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    return body


def screenshot(html: Path, out: Path, width: int, tile: int = 1000) -> None:
    """The whole page, ``width`` CSS px wide: captured ``tile`` px at a time (one capture of a long
    page can outlast Chromium's 10 s renderer timeout on a busy machine) and stitched."""
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        sys.exit("needs Chromium and chromedriver: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        browser.set_window_size(width, tile)
        browser.get(html.resolve().as_uri())
        time.sleep(1)  # fonts and images
        inner = browser.execute_script("return window.innerHeight")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        import io
        page = None
        for top in range(0, height, inner):
            browser.execute_script(f"window.scrollTo(0, {top})")
            time.sleep(0.2)
            shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
            scale = shot.height / inner  # device pixels per CSS px
            if page is None:
                page = Image.new("RGB", (shot.width, round(height * scale)), "white")
            y = browser.execute_script("return window.scrollY")  # the last tile stops at the page's end
            page.paste(shot, (0, round(y * scale)))
        # 256 colours (no dithering): a 6000 px page of text and renders is 0.5 MB instead of 1.2 MB,
        # and looks the same
        page.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    finally:
        browser.quit()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("out", type=Path, help="the screenshot (.png)")
    p.add_argument("--width", type=int, default=1000, help="browser window width in CSS px (default: 1000)")
    p.add_argument("--executed", action="store_true", help="NOTEBOOK is already executed: only export and screenshot it")
    args = p.parse_args(argv)
    import nbformat
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.executed:
        nb = nbformat.read(str(args.notebook), as_version=4)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            nb = execute(args.notebook, Path(tmp))
            print(f"executed {args.notebook} in {time.time() - start:.0f} s", file=sys.stderr)
        nbformat.write(nb, str(args.out.with_suffix(".ipynb")))
    html = args.out.with_suffix(".html")
    html.write_text(to_html(nb), encoding="utf-8")
    screenshot(html, args.out, args.width)
    beside = html.name if args.executed else f"{html.name}, {args.out.with_suffix('.ipynb').name}"
    print(f"wrote {args.out} (and {beside} beside it)", file=sys.stderr)


if __name__ == "__main__":
    main()
