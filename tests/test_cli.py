"""The featvis command line: batch rendering, resume after SIGKILL and Ctrl-C, errors, sheets.

Subprocess tests run ``python -m featvis`` from this worktree on ``tiny`` (the random-weight
``toy`` convnet, registered by tests/cli_plugin.py, which can stall in its second batch on
request); the rest call ``featvis.cli.main`` in-process, which is faster.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featvis import io, presets
from featvis.cli import main
from featvis.errors import UsageError
from featvis.jobs.job import unit_seed
from featvis.jobs.settings import DIVERSITY_WEIGHT
from featvis.units import parse_channels

from . import cli_plugin  # noqa: F401  (registers "tiny" in this process too)
from .conftest import reaped, suite_device

ROOT = Path(__file__).resolve().parents[1]
SIX = ["render", "tiny", "conv2", "--channels", "0:6", "--batch", "4", "--steps", "8", "--size", "32"]


def env(**extra):
    e = dict(os.environ, PYTHONPATH=str(ROOT), FEATVIS_PLUGINS="tests.cli_plugin")
    e.pop("FEATVIS_TEST_STALL", None)
    e.update(extra)
    return e


def featvis(*args, **extra):
    return subprocess.run([sys.executable, "-m", "featvis", *args], env=env(**extra), capture_output=True,
                          text=True, timeout=300)


def files(folder: Path):
    """{relative path: bytes} of every image and sheet under ``folder`` (not the records: the
    manifest, the parts and the locks hold timings and process ids)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".featvis.lock") and p.parent.name != "parts"}


def images_table(folder: Path):
    """The manifest's per-image records without the timing fields."""
    m = json.loads((folder / "manifest.json").read_text())
    return {name: {k: v for k, v in e.items() if k not in ("seconds", "run")}
            for name, e in m["layers"]["conv2"]["images"].items()}


def wait_for(path: Path, proc, timeout=120):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"featvis exited early: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of six channels, four per batch."""
    out = tmp_path_factory.mktemp("ref") / "renders"
    r = featvis(*SIX, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_render_writes_pngs_manifest_and_sheet(reference):
    pngs = sorted((reference / "conv2").iterdir())
    assert [p.name for p in pngs] == [f"{c}.png" for c in range(6)]
    for p in pngs:
        with Image.open(p) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 32))
            assert np.asarray(im).std() > 0  # an image, not a blank
    m = json.loads((reference / "manifest.json").read_text())
    assert m["model"] == "tiny" and m["weights"]["spec"] == "default" and len(m["weights"]["sha256"]) == 64
    assert m["settings"] == {"neurons": False, "size": 32, "steps": 8, "lr": 0.05, "param": "fourier",
                             "diversity": 1, "diversity_weight": DIVERSITY_WEIGHT, "seed": 0, "format": "png",
                             "device": suite_device().type, "deterministic": True,
                             # no --preset: auto, the best measured channel recipe for a model that is not InceptionV1
                             "preset": "fourier-crops",
                             "preset_revision": presets.get("fourier-crops").recorded_revision(),
                             # the CPU thread count changes pixels there: FEATVIS_THREADS (1 unless set; conftest)
                             "threads": int(os.environ["FEATVIS_THREADS"]) if suite_device().type == "cpu" else None}
    assert m["featvis"] and m["torch"] == torch.__version__ and m["device"].startswith(suite_device().type)
    assert m["runs"][0]["batch"] == 4 and m["layers"]["conv2"]["channels"] == 16
    entries = m["layers"]["conv2"]["images"]
    assert list(entries) == [str(c) for c in range(6)]
    for c in range(6):
        e = entries[str(c)]
        assert e["seed"] == unit_seed(0, "conv2", c, 0) and e["file"] == f"conv2/{c}.png"
        assert e["sha256"] == hashlib.sha256((reference / e["file"]).read_bytes()).hexdigest()
        assert np.isfinite(e["value"]) and e["seconds"] > 0
    with Image.open(reference / "conv2_sheet.png") as sheet:  # 3 x 2 cells (32 px enlarged 4x) plus labels
        assert sheet.width == 3 * 128 + 4 * 4 and sheet.height > 2 * 128 + 3 * 4


def test_sigkill_in_second_batch_then_resume_equals_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "renders"
    stalled = tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, "-m", "featvis", *SIX, "--out", str(out)],
                            env=env(FEATVIS_TEST_STALL=str(out / "manifest.json"), FEATVIS_TEST_STALLED=str(stalled)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(stalled, proc)  # the first batch is recorded and the second is running
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (out / "conv2").iterdir()) == ["0.png", "1.png", "2.png", "3.png"]
    assert list(images_table(out)) == ["0", "1", "2", "3"]

    r = featvis(*SIX, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "resuming: 4 of 6 channels are done" in r.stderr
    assert files(out) == files(reference)  # PNGs and sheet, byte for byte
    assert images_table(out) == images_table(reference)


def test_ctrl_c_stops_after_the_complete_batch_with_status_130(tmp_path):
    out = tmp_path / "renders"
    stalled = tmp_path / "stalled"
    # Ctrl-C's default action in the child even where this suite runs with SIGINT ignored (a shell
    # starts background jobs so, and the ignore is inherited): Python then raises no KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "featvis", *SIX, "--out", str(out)],
                            env=env(FEATVIS_TEST_STALL=str(out / "manifest.json"), FEATVIS_TEST_STALLED=str(stalled)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with reaped(proc):
        wait_for(stalled, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: 4 of 6 channels are written" in err.splitlines()[-1]
    assert list(images_table(out)) == ["0", "1", "2", "3"]
    with Image.open(out / "conv2_sheet.png") as sheet:  # the sheet of what is complete: 2 x 2
        assert sheet.width == 2 * 128 + 3 * 4


def test_rerun_skips_done_channels_and_redoes_a_damaged_one(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    def stamps():  # every file but the locks, which record who held them last
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if not p.name.endswith(".lock")}

    before = stamps()
    assert main([*SIX, "--out", str(out)]) == 0
    assert "nothing to do: all 6 channels" in capsys.readouterr().out
    assert stamps() == before  # not even the manifest

    (out / "conv2" / "4.png").write_bytes(b"\x89PNG truncated")
    (out / "conv2" / "1.png").unlink()
    assert main([*SIX, "--out", str(out)]) == 0
    assert "resuming: 4 of 6 channels are done; rendering 2" in capsys.readouterr().err
    assert files(out) == files(reference)
    m = json.loads((out / "manifest.json").read_text())
    assert [e["run"] for e in m["layers"]["conv2"]["images"].values()] == [0, 1, 0, 0, 1, 0]


def test_a_changed_setting_is_refused_unless_force(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    before = files(out), (out / "manifest.json").read_bytes()
    assert main([*SIX, "--steps", "9", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds renders made with other settings (steps 8 -> 9)" in err and "--force" in err
    assert main([*SIX, "--weights", "none", "--seed", "3", "--out", str(out)]) == 2
    assert "weights default -> none (a different network); seed 0 -> 3" in capsys.readouterr().err
    assert (files(out), (out / "manifest.json").read_bytes()) == before

    assert main(["render", "tiny", "conv2", "--channels", "2", "--steps", "9", "--size", "32", "--force", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "conv2").iterdir()) == ["2.png"]  # the old renders are gone
    m = json.loads((out / "manifest.json").read_text())
    assert m["settings"]["steps"] == 9 and list(m["layers"]["conv2"]["images"]) == ["2"] and len(m["runs"]) == 1


def test_a_channel_does_not_depend_on_its_batch(reference, tmp_path):
    out = tmp_path / "renders"
    assert main(["render", "tiny", "conv2", "--channels", "5,1", "--batch", "1", "--steps", "8", "--size", "32",
                 "--out", str(out)]) == 0
    for c in (1, 5):
        a = np.asarray(Image.open(out / f"conv2/{c}.png"), dtype=int)
        b = np.asarray(Image.open(reference / f"conv2/{c}.png"), dtype=int)
        assert np.abs(a - b).max() <= 1  # float rounding across batch sizes moves a pixel by 1/255 at most


def test_diversity_and_neurons(tmp_path):
    out = tmp_path / "renders"
    assert main(["render", "tiny", "conv3", "--channels", "0,7", "--diversity", "2", "--neurons", "--batch", "2",
                 "--steps", "4", "--size", "32", "--param", "pixel", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    entries = m["layers"]["conv3"]["images"]
    assert list(entries) == ["0_0", "0_1", "7_0", "7_1"]
    assert [e["seed"] for e in entries.values()] == [unit_seed(0, "conv3", c, k) for c in (0, 7) for k in (0, 1)]
    assert m["layers"]["conv3"]["objective"].startswith(
        f"neuron(conv3:c) + {DIVERSITY_WEIGHT:g} * |neuron(conv3:c)| * diversity(conv3)")
    assert all(e["diversity"] <= 0 for e in entries.values())
    assert sorted(p.name for p in (out / "conv3").iterdir()) == ["0_0.png", "0_1.png", "7_0.png", "7_1.png"]
    with Image.open(out / "conv3_sheet.png") as sheet:  # one row per channel
        assert sheet.width == 2 * 128 + 3 * 4


BAD = [
    (["render", "nosuch", "conv2"], "unknown model 'nosuch'"),
    (["render", "tiny", "conv9"], "no layer 'conv9' in tiny; close matches: conv3, conv2, conv1"),
    (["render", "tiny", "conv2", "--channels", "0:8,16"], "channel 16 is out of range: conv2 of tiny has 16 channels (0..15)"),
    (["render", "tiny", "conv2", "--channels", "3-5"], "bad channel spec '3-5'"),
    (["render", "tiny", "conv2", "--channels", "5:5"], "range '5:5' is empty"),
    (["render", "tiny", "conv2", "--weights", "{tmp}/missing.pt"], "missing.pt: no such file"),
    (["render", "tiny", "conv2", "--weights", "{tmp}/garbage.pt"], "garbage.pt: cannot load it into tiny"),
    (["render", "tiny", "conv2", "--weights", "{tmp}/wrong.pt"], "wrong.pt: cannot load it into tiny (Error(s) in loading state_dict"),
    (["render", "tiny", "conv2", "--out", "{tmp}/garbage.pt/renders"], "garbage.pt is a file, not a folder; choose another --out"),
    (["render", "tiny", "conv2", "--out", "{tmp}/garbage.pt"], "it is a file, not a folder"),
    (["render", "tiny", "fc", "--neurons"], "--neurons needs a spatial layer"),
    (["render", "tiny", "conv2", "--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["render", "tiny", "conv2", "--batch", "0"], "argument --batch: expected a positive number"),
    (["sheet", "{tmp}"], "has no"),
    (["render", "tiny", "conv2", "--preset", "maco", "--param", "pixel"],
     "--preset maco chooses its own image param (maco); drop --param pixel, or drop --preset"),
    (["render", "tiny", "conv2", "--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[1:3]) + f" ({m[:20]})" for a, m in BAD])
def test_bad_input_is_one_line_status_2_and_writes_nothing(argv, message, tmp_path, capsys):
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv and argv[0] == "render":
        argv += ["--out", str(tmp_path / "renders")]
    assert main(argv + ["--size", "32"] * (argv[0] == "render")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert message in captured.err and "error:" in captured.err
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_input_as_a_process(tmp_path):
    r = featvis("render", "tiny", "conv9", "--out", str(tmp_path / "renders"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("featvis render: error: no layer 'conv9' in tiny; close matches: conv3, conv2, conv1 "
                                "(see: featvis layers tiny, or featvis.layers(model) in Python)")
    assert not (tmp_path / "renders").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["render", "tiny", "conv9", "--out", str(tmp_path / "renders"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UsageError" in err and err.endswith("close matches: conv3, conv2, conv1 "
                                                                                "(see: featvis layers tiny, or featvis.layers(model) in Python)\n")


def test_models_and_layers(capsys):
    assert main(["models"]) == 0
    assert any(line.split()[0] == "toy" for line in capsys.readouterr().out.splitlines())
    assert main(["layers", "toy", "--size", "32"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:3] == ["layer", "type", "channels"]
    assert ["conv2", "Conv2d", "16", "16x16x16"] in rows and ["fc", "Linear", "10", "10"] in rows


def test_sheet_command_png_and_pdf(reference, tmp_path, capsys):
    assert main(["sheet", str(reference), "--cols", "6", "--no-labels", "--cell", "32", "--no-title", "--out", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (6 * 32 + 7 * 4, 32 + 2 * 4)
        cell = np.asarray(im)[4:36, 4 + 2 * 36:36 + 2 * 36]
    assert np.array_equal(cell, np.asarray(Image.open(reference / "conv2/2.png")))  # channel 2 is the third cell
    assert main(["sheet", str(reference), "--layer", "conv2", "--out", str(tmp_path / "s.pdf")]) == 0
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
    assert main(["sheet", str(reference), "--layer", "conv3"]) == 2
    assert "has no renders of layer 'conv3'; it has: conv2" in capsys.readouterr().err


@pytest.mark.parametrize("spec, count, expected", [
    ("all", 5, [0, 1, 2, 3, 4]), ("0:3", 10, [0, 1, 2]), ("3,17,4", 20, [3, 4, 17]),
    ("0:2,7,1", 10, [0, 1, 7]), ("8:", 10, [8, 9]), (":2", 10, [0, 1]), (" 4 ", None, [4]),
])
def test_parse_channels(spec, count, expected):
    assert parse_channels(spec, count) == expected


@pytest.mark.parametrize("spec", ["", "a", "1,,2", "-1", "3:1", "1.5", "0:4:2"])
def test_parse_channels_rejects(spec):
    with pytest.raises(UsageError, match="channel spec"):
        parse_channels(spec, 10)


def test_sheet_function_layout(tmp_path):
    imgs = torch.zeros(5, 3, 10, 20)
    imgs[4, 0] = 1  # a red image, the fifth: row 1, column 1 with cols=3
    s = io.sheet(imgs, cols=3, pad=2, background=(0, 0, 255))
    assert s.size == (3 * 22 + 2, 2 * 12 + 2)
    px = np.asarray(s)
    assert (px[14:24, 24:44] == [255, 0, 0]).all() and (px[0, 0] == [0, 0, 255]).all()
    labelled = io.sheet(imgs, labels=list("abcde"), path=tmp_path / "s.png")
    assert labelled.height > s.height and (tmp_path / "s.png").exists()
    with pytest.raises(ValueError, match="5 images but 2 labels"):
        io.sheet(imgs, labels=["a", "b"])


def test_topk_and_examples_sheet_through_the_cli(reference, tmp_path, capsys):
    import shutil
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    assert main(["sheet", str(out), "--with-examples"]) == 2
    assert "run featvis topk MODEL conv2" in capsys.readouterr().err
    pics = tmp_path / "pics" / "sub"
    pics.mkdir(parents=True)
    for i in range(5):
        Image.fromarray((np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8)).save(pics / f"{i}.png")
    (pics / "broken.jpg").write_bytes(b"not a jpeg")
    args = ["topk", "tiny", "conv2", "--images", str(tmp_path / "pics"), "--channels", "0:3", "--k", "2",
            "--size", "32", "--out", str(out), "--weights", "none", "--quiet"]
    assert main(args) == 0
    assert "5 images read, 1 skipped" in capsys.readouterr().out
    topk = json.loads((out / "manifest.json").read_text())["topk"]["conv2"]
    assert len(topk["channels"]) == 3
    assert main(["sheet", str(out), "--with-examples"]) == 0
    assert (out / "conv2_examples.png").exists()
    assert main(args[:2] + ["conv9"] + args[3:]) == 2
    assert "no layer 'conv9'" in capsys.readouterr().err


def test_selfcheck_and_figure_are_commands(capsys):
    assert main(["selfcheck", "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert main(["figure", "no_such_spec.json"]) == 2


def test_layers_marks_block_outputs(capsys):
    assert main(["layers", "resnet18", "--size", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "* layer3.1               BasicBlock              256  256x4x4" in out
    assert any(line.startswith("  layer3.1.conv1 ") for line in out)
    assert out[-1].startswith("* a block output")


def test_preset_renders_what_the_api_renders_and_is_a_setting(tmp_path, capsys):
    """--preset hands its param, transforms and lr schedule to every batch, is recorded, is part of
    what a folder's renders are made with, and the site's reproduce command spells it."""
    import shlex

    import featvis
    from featvis import presets, site
    from featvis.objectives import channel
    out = tmp_path / "renders"
    base = ["render", "tiny", "conv2", "--channels", "1,4", "--batch", "2", "--steps", "6", "--size", "32", "--out", str(out)]
    assert main([*base, "--preset", "fourier-crops"]) == 0
    s = json.loads((out / "manifest.json").read_text())["settings"]
    assert (s["preset"], s["param"], s["lr"], s["size"]) == ("fourier-crops", "fourier", presets.get("fourier-crops").lr, 32)
    seeds = [unit_seed(0, "conv2", c, 0) for c in (1, 4)]
    api = featvis.render(featvis.load_model("tiny"), channel("conv2", [1, 4]), preset="fourier-crops",
                         param=presets.get("fourier-crops").param(32, 2), steps=6, seed=seeds, progress=False,
                         device=suite_device())
    plain = featvis.render(featvis.load_model("tiny"), channel("conv2", [1, 4]), steps=6, seed=seeds, progress=False,
                           device=suite_device(), param=featvis.param.fourier(32, batch=2))
    for i, c in enumerate((1, 4)):
        png = np.asarray(Image.open(out / f"conv2/{c}.png"), np.int16)
        assert np.abs(png - np.asarray(io.to_pil(api.images[i:i + 1])[0], np.int16)).max() <= 1
        assert np.abs(png - np.asarray(io.to_pil(plain.images[i:i + 1])[0], np.int16)).max() > 8  # the preset mattered

    capsys.readouterr()
    assert main([*base, "--preset", "maco"]) == 2
    assert "preset fourier-crops -> maco" in capsys.readouterr().err
    assert main([*base, "--preset", "none"]) == 2  # the plain recipe is another setting
    assert "preset fourier-crops -> None" in capsys.readouterr().err
    assert main(base) == 0  # no --preset: auto, which resumes a folder with the preset it recorded

    site.build([out], tmp_path / "atlas")
    page = (tmp_path / "atlas/tiny/conv2/4.html").read_text()
    start = page.index("featvis render tiny conv2 --channels 4")
    again = shlex.split(page[start:page.index("</code>", start)].replace("&#x27;", "'"))[1:]
    assert "--preset" in again and "--param" not in again
    again[again.index("--out") + 1] = str(tmp_path / "again")
    assert main(again) == 0
    assert (tmp_path / "again/conv2/4.png").read_bytes() == (out / "conv2/4.png").read_bytes()


def test_preset_chooses_the_size_unless_given(tmp_path):
    from featvis.jobs.job import prepare_job
    assert prepare_job("tiny", ["conv2"], "0", tmp_path / "a", preset="maco", steps=1).settings.size == 224
    assert prepare_job("tiny", ["conv2"], "0", tmp_path / "b", preset="maco", size=40, steps=1).settings.size == 40
    assert prepare_job("tiny", ["conv2"], "0", tmp_path / "c", steps=1).settings.size == 128
    assert not any(tmp_path.iterdir())  # prepare writes nothing


def test_a_folder_does_not_resume_under_another_revision_of_its_preset(tmp_path, capsys, monkeypatch):
    """A preset's recipe can change between featvis versions (Preset.revision): a folder records
    the revision it was rendered with (from 2 on) and refuses to resume under another, naming it."""
    import dataclasses

    from featvis import presets
    out = tmp_path / "renders"
    base = ["render", "tiny", "conv2", "--channels", "1", "--steps", "2", "--size", "16", "--out", str(out)]
    old = presets.PRESETS["lucid"]
    assert old.recorded_revision() is None  # revision 1 is what folders from before the record hold
    assert main([*base, "--preset", "lucid"]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["preset_revision"] is None
    monkeypatch.setitem(presets.PRESETS, "lucid", dataclasses.replace(old, revision=2))
    capsys.readouterr()
    assert main([*base, "--preset", "lucid", "--channels", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "preset lucid revision 1 (or unrecorded) -> 2" in err and "--force" in err
    assert not (out / "conv2/2.png").exists()
    assert main([*base, "--preset", "lucid", "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["preset_revision"] == 2
    assert main([*base, "--preset", "lucid", "--channels", "1,2"]) == 0  # the same revision resumes
    assert (out / "conv2/2.png").exists()


def test_render_defaults_to_the_auto_preset_unless_param_or_none_is_given(tmp_path):
    """No --preset: auto (Lucid's recipe on InceptionV1, fourier-crops elsewhere); --param without
    --preset, or --preset none: the plain recipe."""
    from featvis.jobs.job import cli_preset
    assert cli_preset(None, None) == "auto"
    assert cli_preset(None, "pixel") is None and cli_preset("none", None) is None
    assert cli_preset("maco", None) == "maco"
    for extra, want in (([], ("fourier-crops", "fourier")), (["--param", "pixel"], (None, "pixel")),
                        (["--preset", "none"], (None, "fourier"))):
        out = tmp_path / str(len(extra) and extra[-1])
        assert main(["render", "tiny", "conv2", "--channels", "1", "--steps", "1", "--size", "16", "--out", str(out),
                     *extra]) == 0
        s = json.loads((out / "manifest.json").read_text())["settings"]
        assert (s["preset"], s["param"]) == want
