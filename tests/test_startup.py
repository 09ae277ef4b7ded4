"""Start-up: ``import featvis``, ``featvis --help`` and ``featvis models`` import neither torch's
heavy friends (torchvision, kornia, torch._dynamo) nor, for the CLI, torch itself; every public
name and submodule is still reachable after a bare ``import featvis``. (Wall time is measured by
benchmarks/startup.py, not asserted here.)"""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "kornia", "torch._dynamo", "scipy")


def _modules_after(code: str) -> dict:
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in %r}))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import featvis",
    "import featvis.cli as c; c.main(['models'])",
    "import featvis.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass",
    "import featvis.cli as c\ntry:\n    c.main(['render', '--help'])\nexcept SystemExit:\n    pass",
    "import featvis; featvis.list_models(); featvis.units.Unit.parse('mixed4a:1')",
    "import featvis; featvis.presets.PRESETS['maco']",
])
def test_cli_and_import_stay_light(code):
    loaded = _modules_after(code)
    assert not any(loaded.values()), {m: v for m, v in loaded.items() if v}


def test_render_pulls_neither_torchvision_nor_kornia_until_needed():
    loaded = _modules_after("import featvis, torch\nm = featvis.load_model('toy', device='cpu')\n"
                            "featvis.layers(m, 32)")
    assert not loaded["torchvision"] and not loaded["kornia"] and not loaded["torch._dynamo"]


def test_the_probe_sees_imports():
    assert _modules_after("import torch")["torch"]


def test_lazy_attributes():
    import featvis
    for name in featvis.__all__:
        assert getattr(featvis, name) is not None, name
    assert callable(featvis.metrics.robustness) and callable(featvis.recipes.caricature)
    import featvis.render as also_the_function  # noqa: F401 -- the submodule import must not shadow it
    assert callable(featvis.render) and featvis.render.__module__ == "featvis.render"
    assert featvis.wrap is featvis.models.wrap and callable(featvis.wrap)
    with pytest.raises(AttributeError):
        featvis.no_such_thing  # noqa: B018
    from pathlib import Path
    for path in Path(featvis.__file__).parent.iterdir():  # every submodule by its name, no import needed
        if path.suffix == ".py" and not path.stem.startswith("_") or (path / "__init__.py").is_file():
            value = getattr(featvis, path.stem)  # the module, or for render the function
            assert getattr(value, "__module__", value.__name__).startswith("featvis."), path.stem


def test_model_list_names_torchvision_defaults():
    """The zoo is listed without torchvision; its default-weights names must still be torchvision's."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models import get_model_weights
    from featvis.models.registry import TORCHVISION
    for name, (_, default) in TORCHVISION.items():
        assert get_model_weights(name).DEFAULT.name == default, name
    assert torchvision
