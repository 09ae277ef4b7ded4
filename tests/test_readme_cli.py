"""Every command line in the README's ```bash blocks runs (in order, in one fresh folder), with
what a test cannot do substituted: ``--weights none`` for downloads, 2 steps at 64 px for renders,
a folder of three images for ``~/imagenet/val``. A line that is not a featvis command must be one
of the install/test commands listed here, so no line is skipped silently. The one block marked
``<!-- cluster block ... -->`` (whole models on GPUs and clusters: hours of work, torchrun, sbatch)
is run on the toy model by tests/test_shard.py instead; here each of its commands and options must
appear there."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featvis.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^(<!-- cluster block[^\n]*\n)?```bash\n(.*?)^```", re.S | re.M)
SHARD_TESTS = Path(__file__).resolve().parent / "test_shard.py"
#: not featvis commands: installing, and running this very test suite
OTHER = ("pip install", "python3 -m pytest")
FAST = {"render": ["--weights", "none", "--steps", "2", "--size", "64"], "topk": ["--weights", "none", "--size", "64"],
        "circuit": ["--weights", "none", "--steps", "2", "--size", "64"],
        "atlas": ["--weights", "none", "--steps", "2", "--size", "16", "--grid", "2", "--method", "pca",
                  "--photo-size", "64", "--quiet"],
        "blocks": ["--weights", "none", "--steps", "2", "--size", "64", "--render-size", "16", "--quiet"]}
#: README placeholders for files, and what stands in for them here
FILES = {"~/imagenet/val": "photos", "dog.jpg": "photos/0.png"}


def command_lines(cluster: bool = False):
    """The command lines of the README's bash blocks (comments dropped): the cluster block's with
    ``cluster=True``, every other block's without."""
    lines = []
    for marker, block in BLOCK.findall(README.read_text()):
        if bool(marker) != cluster:
            continue
        for line in block.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_the_cluster_block_is_covered_by_the_shard_tests():
    lines, covered = command_lines(cluster=True), SHARD_TESTS.read_text()
    assert len(lines) >= 6
    for line in lines:
        words = shlex.split(line)
        program = words[1] if words[0] == "featvis" else words[0]  # a subcommand, torchrun or sbatch
        wanted = [program] + [w.split("=")[0] for w in words if w.startswith("--")]
        missing = [w for w in wanted if w not in covered]
        assert not missing, f"README line {line!r}: {missing} not exercised by tests/test_shard.py"


def test_every_bash_line_is_known():
    lines = command_lines()
    assert sum(line.startswith("featvis ") for line in lines) >= 6
    for line in lines:
        assert line.startswith("featvis ") or line.startswith(OTHER), f"README command not covered: {line}"


def test_every_featvis_line_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    ran = 0
    for line in command_lines():
        if not line.startswith("featvis "):
            continue
        argv = [str(tmp_path / FILES[a]) if a in FILES else a for a in shlex.split(line)[1:]]
        # the README's worked example of your own model lives in the repository's examples/
        argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv]
        argv += FAST.get(argv[0], [])
        status = main(argv)
        assert status == 0, f"{line} -> exit {status}: {capsys.readouterr().err[-2000:]}"
        ran += 1
    assert ran >= 6
    assert (tmp_path / "renders" / "manifest.json").is_file() and (tmp_path / "renders" / "mixed4a_examples.png").is_file()
