"""Every notebook in examples/notebooks runs top to bottom in a real Jupyter kernel (nbclient), at
tiny sizes, so that a change that breaks one fails here (marker: notebooks).

The notebooks read ``FEATVIS_NOTEBOOK_TINY=1`` (a few steps on 32 px images) and the kernels run
with ``FEATVIS_PROGRESS=0`` (no bars in the outputs). The kernel is ipykernel's ``python3``: the
``ipykernel`` wheel (in the ``test`` extra) installs its kernel spec into the environment, and
jupyter_client falls back to ipykernel's own spec for the running interpreter even where none is
installed, so no ``python -m ipykernel install`` step is needed on a fresh machine.
"""
import base64
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

nbformat = pytest.importorskip("nbformat", reason="pip install featvis[test] (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install featvis[test] (nbformat, nbclient, ipykernel)")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
#: The tour, then one notebook per classic figure (what the README links to).
EXPECTED = ["00_tour", "01_objectives", "02_diversity", "03_interpolation", "04_parameterizations",
            "05_layer_sheet", "06_dataset_examples", "07_circuit"]
#: Seconds one cell may run at the tiny sizes before the notebook counts as broken.
CELL_TIMEOUT = 300

pytestmark = pytest.mark.notebooks


def _ids(paths):
    return [p.stem for p in paths]


def test_the_notebooks_are_there_and_the_readme_links_each():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    readme = (ROOT / "README.md").read_text()
    for p in NOTEBOOKS:
        assert f"](examples/notebooks/{p.name})" in readme, f"README.md does not link {p.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stripped_and_opens_with_the_install_line(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:  # committed without outputs: diffs stay readable, nothing stale is shown
        assert c.outputs == [] and c.execution_count is None, f"{path.name}: outputs not stripped"
        assert not c.metadata.get("execution"), f"{path.name}: execution metadata not stripped"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "%pip install" in code[0].source and "featvis" in code[0].source
    assert "FEATVIS_NOTEBOOK_TINY" in code[1].source  # the sizes cell says how CI shrinks it


def _execute(path: Path, workdir: Path):
    nb = nbformat.read(str(path), as_version=4)
    workdir.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - reported by the notebook's own test below
        return e
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook run once (two kernels at a time: CI has two cores), each in its own folder:
    ``{name: executed notebook, or the exception}``."""
    env = {"FEATVIS_NOTEBOOK_TINY": "1", "FEATVIS_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernels inherit this process's environment (FEATVIS_DEVICE too: conftest)
    try:
        base = tmp_path_factory.mktemp("notebooks")
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = {p.name: pool.submit(_execute, p, base / p.stem) for p in NOTEBOOKS}
            return {name: run.result() for name, run in runs.items()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pngs(nb):
    """Every PNG the notebook displayed: image/png outputs and data URIs inside HTML outputs."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "image/png" in data:
                out.append(base64.b64decode(data["image/png"]))
            for chunk in data.get("text/html", "").split('src="data:image/png;base64,')[1:]:
                out.append(base64.b64decode(chunk.split('"', 1)[0]))
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(path, executed):
    nb = executed[path.name]
    if isinstance(nb, Exception):
        pytest.fail(f"{path.name} failed:\n{nb}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # quiet: no warnings, no progress bars, nothing on stderr
    stderr = [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, stderr
    pngs = _pngs(nb)
    assert pngs, f"{path.name} displayed no image"
    for data in pngs:  # each decodes to an image
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.width > 8 and im.height > 8


def test_the_kernel_runs_this_interpreter():
    """The python3 kernel spec resolves to this Python (its ``python`` is replaced by
    ``sys.executable`` where the spec names a bare ``python``), so the notebooks see this featvis."""
    from jupyter_client.kernelspec import KernelSpecManager
    argv = KernelSpecManager().get_kernel_spec("python3").argv
    assert argv[0] in ("python", "python3", sys.executable) or Path(argv[0]).resolve() == Path(sys.executable).resolve()
    assert argv[1:3] == ["-m", "ipykernel_launcher"]
