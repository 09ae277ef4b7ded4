"""The render folder (featvis.jobs.folder): contained paths, schema-checked records, the writer lock,
kills at every write point, derived files rebuilt, nothing deleted or written outside --out.

Subprocess tests run ``python -m featvis`` on ``tiny`` (tests/cli_plugin.py) like tests/test_cli.py.
"""
import errno
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

from featvis.cli import main
from featvis.errors import UsageError
from featvis.jobs import folder as fo
from featvis.jobs.folder import files as folder_files
from featvis.jobs.folder import RenderFolder

from . import cli_plugin  # noqa: F401  (registers "tiny" in this process too)
from .test_cli import SIX, env, featvis, files, images_table, reference, wait_for  # noqa: F401  (reference: a fixture)


def header(**settings):
    return {"model": "m", "weights": {"spec": "none", "sha256": "0" * 64}, "settings": {"size": 8, **settings}}


def record(rf: RenderFolder, layer: str, c: int, value: float = 1.0):
    rel = rf.image_rel(layer, str(c))
    sha = rf.save_image(rel, torch.full((3, 8, 8), c / 10))
    return {str(c): {"channel": c, "k": 0, "seed": c, "value": value, "file": rel, "sha256": sha, "run": 0}}


def temp_files(folder: Path):
    return sorted(p for p in folder.rglob(".*") if "fvtmp" in p.name)


# --- paths ------------------------------------------------------------------------------------------

def test_paths_stay_inside_the_folder(tmp_path):
    rf = RenderFolder(tmp_path / "out")
    (tmp_path / "out").mkdir()
    assert rf.path("conv2/3.png") == tmp_path / "out" / "conv2" / "3.png"
    for bad in ("../x.png", "conv2/../../x.png", "/etc/passwd", "~/x", "", "a//b", "a\\b"):
        with pytest.raises(UsageError, match="absolute|leaves the folder|plain relative"):
            rf.path(bad)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "conv2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="outside the folder"):
        rf.path("conv2/3.png")


def test_symlinked_layer_folder_is_never_written_through(tmp_path, capsys):
    out, elsewhere = tmp_path / "renders", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "conv2").symlink_to(elsewhere)
    assert main([*SIX, "--out", str(out)]) == 2
    assert "outside the folder" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


# --- the schema ---------------------------------------------------------------------------------------

GOOD_ENTRY = {"channel": 0, "k": 0, "seed": 1, "value": 0.5, "file": "conv2/0.png", "sha256": "a" * 64, "run": 0}


def v1(**over):
    m = {"featvis_manifest": 1, "model": "tiny", "weights": {"spec": "default", "sha256": "0" * 64},
         "settings": {"size": 32}, "runs": [], "layers": {"conv2": {"images": {"0": dict(GOOD_ENTRY)}}}}
    m.update(over)
    return m


def entry(**over):
    return {"conv2": {"images": {"0": {**GOOD_ENTRY, **over}}}}


MALFORMED = [
    ("[]", "expected a JSON object"),
    ('{"featvis_manifest": "two"}', "featvis_manifest: expected one of 1, 2"),
    (json.dumps({"featvis_manifest": 1, "model": "tiny"}), "missing 'weights'"),
    (json.dumps(v1(layers=[])), "layers: expected an object"),
    (json.dumps(v1(layers={"conv2": []})), "layers.conv2: expected an object"),
    (json.dumps(v1(layers={"conv2": {}})), "layers.conv2.images: expected an object"),
    (json.dumps(v1(layers=entry(file="../../x.png"))), "leaves the folder"),
    (json.dumps(v1(layers=entry(file="/etc/passwd"))), "absolute path"),
    (json.dumps(v1(layers=entry(file=3))), "expected a relative path"),
    (json.dumps(v1(layers=entry(sha256="xyz"))), "expected 64 hex digits"),
    (json.dumps(v1(layers=entry(value="big"))), "expected a finite number"),
    (json.dumps(v1(layers=entry(channel=-1))), "expected a non-negative integer"),
    (json.dumps(v1(runs={})), "runs: expected a list"),
    (json.dumps(v1(weights="default")), "weights: expected"),
    (json.dumps(v1(topk={"conv2": {"channels": []}})), "topk.conv2.channels: expected an object"),
    (json.dumps(v1(topk={"conv2": {"channels": {"0": [{"crop": "../c.png", "value": 1}]}}})), "leaves the folder"),
    (json.dumps(v1()).replace("0.5", "Infinity"), "not valid JSON"),
    ("{not json", "not valid JSON"),
]


@pytest.mark.parametrize("text, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_every_malformed_manifest_is_one_clear_error(text, message, tmp_path, capsys):
    out = tmp_path / "renders"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    with pytest.raises(UsageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        RenderFolder(out).read()
    for argv in ([*SIX, "--out", str(out)], ["sheet", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "manifest.json" in err and "Traceback" not in err, err
    (out / "manifest.json").write_bytes(b"\xff\xfe" + text.encode())  # not even UTF-8
    with pytest.raises(UsageError):
        RenderFolder(out).read()


def test_a_damaged_part_is_named(tmp_path):
    rf = RenderFolder(tmp_path)
    with rf.lock():
        rf.claim(header())
        rf.record_images("conv2", record(rf, "conv2", 0), sheet=False)
    part = tmp_path / "parts" / "main.json"
    part.write_text(part.read_text().replace('"channel": 0', '"channel": "zero"'))
    with pytest.raises(UsageError, match=r"parts/main\.json\.layers\.conv2\.images\.0\.channel"):
        rf.read()


def test_records_with_non_finite_numbers_are_refused_not_written_as_infinity(tmp_path):
    rf = RenderFolder(tmp_path)
    with rf.lock():
        with pytest.raises(ValueError, match="non-finite"):  # the claim itself is written now (issue 22)
            rf.claim(header(lr=float("inf")))
            rf.record_images("conv2", record(rf, "conv2", 0), sheet=False)
    assert not (tmp_path / "manifest.json").exists()


# --- hostile manifests and --force -----------------------------------------------------------------

def test_force_never_deletes_outside_the_folder(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    victim, absolute = tmp_path / "victim.txt", tmp_path / "absolute.txt"
    victim.write_text("keep me")
    absolute.write_text("keep me too")
    for part in (out / "parts" / "main.json", out / "manifest.json"):
        m = json.loads(part.read_text())
        images = m["layers"]["conv2"]["images"]
        images["0"]["file"], images["1"]["file"] = "../victim.txt", str(absolute)
        part.write_text(json.dumps(m))
    assert main([*SIX, "--steps", "9", "--out", str(out)]) == 2  # a hostile manifest is refused ...
    assert "leaves the folder" in capsys.readouterr().err
    assert main([*SIX, "--steps", "9", "--force", "--out", str(out)]) == 0  # ... and --force starts over
    assert victim.read_text() == "keep me" and absolute.read_text() == "keep me too"
    m = json.loads((out / "manifest.json").read_text())
    assert m["settings"]["steps"] == 9 and len(m["layers"]["conv2"]["images"]) == 6


def test_force_deletes_only_the_recorded_renders_and_keeps_topk_records(reference, tmp_path):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    (out / "notes.txt").write_text("mine")
    rf = RenderFolder(out)
    with rf.lock():
        rf.record_topk("conv2", {"channels": {"0": [{"rank": 0, "value": 1.0, "crop": "conv2/topk/0/0.png"}]}})
    assert main(["render", "tiny", "conv2", "--channels", "2", "--steps", "9", "--size", "32", "--force",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "conv2").iterdir() if p.is_file()) == ["2.png"]
    assert (out / "notes.txt").read_text() == "mine"
    m = RenderFolder(out).read()
    assert list(m["layers"]["conv2"]["images"]) == ["2"] and list(m["topk"]) == ["conv2"]


# --- the lock -----------------------------------------------------------------------------------------

def test_a_second_writer_waits_then_is_refused_naming_the_holder(tmp_path):
    a, b = RenderFolder(tmp_path), RenderFolder(tmp_path)
    with a.lock():
        t0 = time.monotonic()
        with pytest.raises(UsageError, match=rf"in use by process {os.getpid()} on .*featvis.*wait for it"):
            with b.lock(wait=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3
    with b.lock(wait=0):  # free again
        pass
    assert (tmp_path / "parts" / "main.lock").read_text() == ""  # the holder's note is gone with it


def test_shards_write_side_by_side_and_merge(tmp_path):
    s0, s1 = RenderFolder(tmp_path), RenderFolder(tmp_path)
    with s0.lock("shard-0-of-2"), s1.lock("shard-1-of-2"):
        s0.claim(header())
        s1.claim(header())
        s0.record_images("conv2", record(s0, "conv2", 0))
        s1.record_images("conv2", record(s1, "conv2", 1))
        s0.record_images("conv2", record(s0, "conv2", 2))
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert list(m["layers"]["conv2"]["images"]) == ["0", "1", "2"]
    assert sorted(p.name for p in (tmp_path / "parts").glob("*.json")) == ["shard-0-of-2.json", "shard-1-of-2.json"]
    assert not RenderFolder(tmp_path).sheet_is_stale("conv2")
    with pytest.raises(ValueError, match="writer id"):
        with s0.lock("../main"):
            pass


def test_shards_with_other_settings_are_refused(tmp_path):
    s0, s1 = RenderFolder(tmp_path), RenderFolder(tmp_path)
    with s0.lock("shard-0-of-2"):
        s0.claim(header())
        s0.record_images("conv2", record(s0, "conv2", 0), sheet=False)
    with s1.lock("shard-1-of-2"):
        with pytest.raises(UsageError, match="other settings .*size 8 -> 9"):
            s1.claim(header(size=9))


def test_two_renders_at_once_keep_every_record(tmp_path):
    out = tmp_path / "renders"
    first = ["render", "tiny", "conv2", "--channels", "0:8", "--batch", "4", "--steps", "8", "--size", "32"]
    second = ["render", "tiny", "conv3", "--channels", "0:4", "--batch", "4", "--steps", "8", "--size", "32"]
    third = ["render", "tiny", "conv2", "--channels", "8:16", "--batch", "4", "--steps", "8", "--size", "32"]
    procs = [subprocess.Popen([sys.executable, "-m", "featvis", *argv, "--out", str(out)],
                              env=env(FEATVIS_LOCK_WAIT="240"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv in (first, second, third)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert list(m["layers"]["conv2"]["images"]) == [str(c) for c in range(16)]
    assert list(m["layers"]["conv3"]["images"]) == [str(c) for c in range(4)]
    assert len(m["runs"]) == 3
    rf = RenderFolder(out)
    assert all(rf.image_ok(e) for sec in m["layers"].values() for e in sec["images"].values())
    assert not rf.sheet_is_stale("conv2") and not rf.sheet_is_stale("conv3")


def test_two_renders_with_different_settings_at_once_one_is_refused_nothing_lost(tmp_path):
    out = tmp_path / "renders"
    procs = [subprocess.Popen([sys.executable, "-m", "featvis", *SIX, "--steps", steps, "--out", str(out)],
                              env=env(FEATVIS_LOCK_WAIT="240"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for steps in ("8", "9")]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    winner = [i for i, (rc, _) in enumerate(results) if rc == 0][0]
    loser_err = results[1 - winner][1].splitlines()[-1]
    assert "holds renders made with other settings" in loser_err
    m = json.loads((out / "manifest.json").read_text())
    assert m["settings"]["steps"] == (8, 9)[winner] and len(m["layers"]["conv2"]["images"]) == 6


def test_merge_rebuilds_the_manifest_from_the_parts(tmp_path):
    s0 = RenderFolder(tmp_path)
    with s0.lock("shard-0-of-2"):
        s0.claim(header())
        s0.record_images("conv2", record(s0, "conv2", 0))
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "conv2_sheet.png").write_bytes(b"junk")
    m = fo.merge(tmp_path)
    assert list(m["layers"]["conv2"]["images"]) == ["0"] and (tmp_path / "manifest.json").is_file()
    assert not RenderFolder(tmp_path).sheet_is_stale("conv2")
    with pytest.raises(UsageError, match="holds no featvis records"):
        fo.merge(tmp_path / "empty")


def test_a_writer_that_cannot_wait_exits_2_and_the_holder_finishes(tmp_path):
    out = tmp_path / "renders"
    stalled = tmp_path / "stalled"
    holder = subprocess.Popen([sys.executable, "-m", "featvis", *SIX, "--out", str(out)],
                              env=env(FEATVIS_TEST_STALL=str(out / "manifest.json"), FEATVIS_TEST_STALLED=str(stalled)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(stalled, holder)
        pics = tmp_path / "pics"
        pics.mkdir()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(pics / "0.png")
        for argv in (["render", "tiny", "conv2", "--channels", "6:8", "--steps", "8", "--size", "32"],
                     ["topk", "tiny", "conv2", "--images", str(pics), "--k", "1", "--size", "32", "--quiet"]):
            r = featvis(*argv, "--out", str(out), FEATVIS_LOCK_WAIT="0.2")
            last = r.stderr.splitlines()[-1]
            assert r.returncode == 2 and last.startswith(f"featvis {argv[0]}: error: "), r.stderr
            assert f"is in use by process {holder.pid}" in last and "render tiny conv2" in last
    finally:
        holder.kill()
        holder.wait()
    assert list(images_table(out)) == ["0", "1", "2", "3"]  # the holder's records are intact


# --- kills at each write point ----------------------------------------------------------------------

# In the second batch (channels 4, 5): after its first image; after its records (part) but before the
# sheet; after the sheet before manifest.json; after manifest.json; and inside an atomic write, between
# fsync and rename (leaving a temporary file).
KILLS = ["image:5", "part:2", "sheet:2", "manifest:2", "rename:9"]


@pytest.mark.parametrize("point", KILLS)
def test_kill_at_each_write_point_then_rerun_equals_an_uninterrupted_run(point, reference, tmp_path):
    out = tmp_path / "renders"
    r = featvis(*SIX, "--out", str(out), FEATVIS_TEST_KILL_AT=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    m = RenderFolder(out).read()  # readable after any kill
    assert set(m["layers"]["conv2"]["images"]) >= {"0", "1", "2", "3"}
    r = featvis(*SIX, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert files(out) == files(reference)  # images and sheet, byte for byte
    assert images_table(out) == images_table(reference)
    assert temp_files(out) == []
    rf = RenderFolder(out)
    assert not rf.manifest_is_stale() and not rf.sheet_is_stale("conv2")


def test_a_stale_or_damaged_sheet_is_rebuilt_even_with_nothing_to_render(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    sheet = out / "conv2_sheet.png"
    sheet.write_bytes(b"\x89PNG damaged")
    assert main([*SIX, "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert sheet.read_bytes() == (reference / "conv2_sheet.png").read_bytes()
    sheet.unlink()
    assert main(["sheet", str(out)]) == 0
    assert sheet.read_bytes() == (reference / "conv2_sheet.png").read_bytes()


def test_stale_temp_files_are_cleaned_by_their_writer_only(reference, tmp_path):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    ours = [out / "conv2" / ".0.png.fvtmp-main-abc123", out / "parts" / ".main.json.fvtmp-main-x1"]
    folder_tmp = out / ".manifest.json.fvtmp-folder-zz"
    other = out / "conv2" / ".0.png.fvtmp-shard-1-of-2-abc"
    for p in ours + [folder_tmp, other]:
        p.write_bytes(b"half")
    (out / "conv2" / "5.png").unlink()  # so that the render writes
    assert main([*SIX, "--out", str(out)]) == 0
    assert not any(p.exists() for p in ours + [folder_tmp])
    assert other.exists()  # another writer's, perhaps still running


def test_a_write_error_names_the_file(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_files.os, "replace", full)
    with pytest.raises(UsageError, match=r"cannot write .*x\.json \(No space left on device\); free some space"):
        fo.atomic_write(tmp_path / "x.json", lambda tmp: Path(tmp).write_text("{}"))
    assert list(tmp_path.iterdir()) == []


# --- versions and other writers' folders ---------------------------------------------------------------

def test_a_version_1_folder_resumes_and_becomes_version_2(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    m = json.loads((out / "manifest.json").read_text())
    m["featvis_manifest"] = 1
    del m["derived"], m["topk"]
    shutil.rmtree(out / "parts")
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "conv2" / "5.png").unlink()
    assert main([*SIX, "--out", str(out)]) == 0
    assert "resuming: 5 of 6 channels are done" in capsys.readouterr().err
    new = json.loads((out / "manifest.json").read_text())
    assert new["featvis_manifest"] == 2 and (out / "parts" / "main.json").is_file()
    assert files(out) == files(reference)


def test_topk_first_then_render_then_force_keeps_the_topk_records(tmp_path, capsys):
    out = tmp_path / "renders"
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8)).save(pics / f"{i}.png")
    assert main(["topk", "tiny", "conv2", "--images", str(pics), "--channels", "0:2", "--k", "2", "--size", "32",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["featvis_manifest"] == 2
    assert main([*SIX, "--out", str(out)]) == 0
    assert main([*SIX, "--steps", "9", "--force", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["topk"]["conv2"]["channels"]) == {"0", "1"} and m["settings"]["steps"] == 9
    assert main(["sheet", str(out), "--with-examples"]) == 0


def test_an_old_topk_only_manifest_without_a_version_is_read(tmp_path, capsys):
    out = tmp_path / "renders"
    (out / "conv2" / "topk" / "0").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "conv2" / "topk" / "0" / "0.png")
    (out / "manifest.json").write_text(json.dumps({"topk": {"conv2": {"k": 1, "channels": {
        "0": [{"rank": 0, "value": 2.0, "crop": "conv2/topk/0/0.png"}]}}}}))
    assert main(["render", "tiny", "conv2", "--channels", "0:2", "--steps", "4", "--size", "32",
                 "--out", str(out)]) == 0
    m = RenderFolder(out).read()
    assert list(m["layers"]["conv2"]["images"]) == ["0", "1"] and "conv2" in m["topk"]


def test_a_failed_first_batch_claims_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "renders"
    monkeypatch.setenv("FEATVIS_TEST_FAIL", "1")
    assert main([*SIX, "--out", str(out)]) == 1  # the first batch fails (as a NaN would)
    assert "non-finite" in capsys.readouterr().err
    monkeypatch.delenv("FEATVIS_TEST_FAIL")
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.json"))
    assert main([*SIX, "--out", str(out)]) == 0  # the advised fix is not refused


@pytest.mark.parametrize("argv, message", [
    (["--lr", "inf"], "--lr inf: must be a positive finite number"),
    (["--lr", "nan"], "--lr nan: must be a positive finite number"),
    (["--seed", "-1"], "--seed -1: must be at least 0"),
    (["--seed", str(2**64)], f"--seed {2**64}: must be at least 0 and at most {2**63 - 1}"),
    (["--size", "100000"], "--size 100000: must be at least 8 and at most 4096"),
    (["--channels", "0:50000000"], "channel 16 is out of range: conv2 of tiny has 16 channels"),
    (["--channels", "0:16,40:500000"], "channel 40 is out of range: conv2 of tiny has 16 channels"),
    (["--weights", "{tmp}"], "is a folder; pass the state dict file in it"),
])
def test_bad_arguments_fail_fast_with_the_right_message(argv, message, tmp_path, capsys):
    out = tmp_path / "renders"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["render", "tiny", "conv2", "--steps", "8", "--size", "32", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_layer_folder_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "renders"
    out.mkdir()
    (out / "conv2").write_text("a file")
    assert main([*SIX, "--out", str(out)]) == 2
    assert "is a file, but featvis keeps layer conv2's images in a folder" in capsys.readouterr().err


def test_atomic_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(folder_files.os, "fsync", spy)
    fo.atomic_write(tmp_path / "a" / "x.json", lambda tmp: Path(tmp).write_text("{}"))
    assert len(synced) == 2 and ".fvtmp-main-" in synced[0] and synced[1] == str((tmp_path / "a").resolve())
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]
