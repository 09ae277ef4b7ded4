"""Trust, second round (issue 22): nothing in a render folder can reach outside it, hang a command,
or run in a visitor's browser. One test (parametrized over several files and fields) per attack:

1 symlinked / hard-linked locks      5 pairing records of another network   9 truncated images name the unit
2 FIFOs in place of files            6 circuit --record through a symlink  10 disk full while taking a lock
3 settings fields reaching pages     7 stable site URLs                    11 hand-edited record fields
4 oversized / odd-aspect images      8 models and layers named index.html
and the notes: --serve lists nothing hidden, no local paths in a site, a newer manifest, collapsed
images (--lr 1e30), shards that claim other settings at once.

Renders are of ``tiny`` (tests/cli_plugin.py) at 32 px, a few steps, in-process.
"""
import errno
import hashlib
import json
import os
import shutil
import signal
import struct
import threading
import urllib.error
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featvis import io, site
from featvis.cli import main
from featvis.errors import UsageError
from featvis.jobs.folder import RenderFolder
from featvis.jobs.folder import locks as folder_locks

from . import cli_plugin  # noqa: F401  (registers "tiny")

SMALL = ["--batch", "4", "--steps", "4", "--size", "32"]
RENDER = ["render", "tiny", "conv2", "--channels", "0:4", *SMALL]


@contextmanager
def no_hang(seconds=60):
    """Fail (instead of hanging the suite) if the block blocks, e.g. on a FIFO."""
    def alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def pics(folder: Path, n=4, size=40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A render folder of tiny conv2 channels 0:4 with top-k examples and a circuit record."""
    root = tmp_path_factory.mktemp("made")
    out = root / "R"
    assert main([*RENDER, "--out", str(out)]) == 0
    assert main(["topk", "tiny", "conv2", "--channels", "0:4", "--images", str(pics(root / "pics")), "--k", "2",
                 "--size", "32", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def R(made, tmp_path):
    out = tmp_path / "R"
    shutil.copytree(made, out)
    return out


def one_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()[-1:]  # progress bars may come before
    text = err[0] if err else ""
    for n in needles:
        assert n in text, text
    assert "Traceback" not in text
    return text


def edit_part(folder: Path, edit, name="main"):
    path = folder / "parts" / f"{name}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def open_fds():
    return set(os.listdir("/proc/self/fd"))


# --- 1. locks are never followed, nor written through another name ------------------------------------

@pytest.mark.parametrize("lock", [".featvis.lock", "parts/main.lock"])
@pytest.mark.parametrize("target", ["outside", "parts/main.json", "conv2/0.png"])
@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_planted_lock_never_empties_what_it_points_at(R, tmp_path, capsys, lock, target, how):
    victim = tmp_path / "victim.txt" if target == "outside" else R / target
    if target == "outside":
        victim.write_text("precious")
    before = victim.read_bytes()
    (R / lock).unlink(missing_ok=True)
    (os.symlink if how == "symlink" else os.link)(victim, R / lock)
    command = ["merge", str(R)] if lock == ".featvis.lock" else [*RENDER, "--channels", "0:8", "--out", str(R)]
    assert main(command) == 2
    one_line(capsys, lock.split("/")[-1], "symlink" if how == "symlink" else "hard link")
    assert victim.read_bytes() == before
    with pytest.raises(UsageError, match="symlink|hard link"):
        with RenderFolder(R).lock(wait=0) if lock != ".featvis.lock" else RenderFolder(R)._folder_lock(wait=0):
            pass


# --- 2. a FIFO in place of any file hangs nothing ------------------------------------------------------

@pytest.mark.parametrize("fifo, command", [
    ("conv2/2.png", "merge"), ("conv2/2.png", "sheet"), ("conv2/2.png", "render"), ("conv2/2.png", "site"),
    ("conv2/2.png", "faithfulness"), ("parts/main.json", "merge"), ("parts/main.json", "render"),
    ("manifest.json", "merge"), ("conv2/topk/1/0.png", "site"), ("conv2/topk/1/0.png", "sheet-examples"),
])
def test_a_fifo_in_place_of_a_file_hangs_no_command(R, tmp_path, capsys, fifo, command):
    (R / fifo).unlink()
    os.mkfifo(R / fifo)
    argv = {"merge": ["merge", str(R)], "sheet": ["sheet", str(R)], "render": [*RENDER, "--out", str(R)],
            "site": ["site", str(R), "--out", str(tmp_path / "site"), "--quiet"],
            "faithfulness": ["faithfulness", str(R), "--device", "cpu"],
            "sheet-examples": ["sheet", str(R), "--with-examples"]}[command]
    with no_hang():
        rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if fifo == "conv2/2.png" and command == "render":
        assert rc == 0 and Image.open(R / fifo).size == (32, 32)  # the unit is rendered again, the FIFO replaced
    elif rc != 0:
        assert rc in (2, 3) and ("FIFO" in err or "conv2:2" in err or "missing" in err), err


# --- 3. record fields reach pages only checked and escaped -----------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("steps", "<script>alert(1)</script>"), ("param", "<img src=x onerror=alert(1)>"), ("size", "40"),
    ("diversity", "2"), ("lr", "0.05"), ("neurons", "yes"), ("seed", -1), ("device", "cpu<b>"),
    ("preset", "<i>"), ("shiny", {"nested": "<script>"}),
])
def test_hand_edited_settings_never_reach_a_page(R, tmp_path, capsys, field, value):
    edit_part(R, lambda m: m["settings"].update({field: value}))
    assert main(["site", str(R), "--out", str(tmp_path / "site"), "--quiet"]) == 2
    one_line(capsys, f"settings.{field}")
    assert not (tmp_path / "site").exists()


def test_free_text_fields_are_escaped_on_every_page(R, tmp_path):
    evil = "<script>alert(1)</script>"
    edit_part(R, lambda m: (m.update(model=f"tiny{evil}", featvis=evil),
                            m["layers"]["conv2"].update(objective=f"channel {evil}")))
    edit_part(R, lambda m: m["topk"]["conv2"].update(model=f"tiny{evil}", images=f"/data/{evil}",
                                                     made_by=dict(m["topk"]["conv2"]["made_by"], model=f"tiny{evil}")))
    site.build([R], tmp_path / "site")
    pages = list((tmp_path / "site").rglob("*.html"))
    assert len(pages) > 4
    for page in pages:
        text = page.read_text()
        assert "<script>alert" not in text and "onerror" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (tmp_path / "site/index.html").read_text()


# --- 4. images are decoded only within bounds -----------------------------------------------------------

def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG that claims w x h pixels (an empty image stream): a few dozen bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def odd_file(kind: str, path: Path) -> Path:
    if kind == "strip-1x20000":
        Image.new("RGB", (1, 20000)).save(path)
    elif kind == "strip-20000x1":
        Image.new("L", (20000, 1)).save(path)
    elif kind == "claims-100000x100000":
        png_header_only(path, 100_000, 100_000)
    elif kind == "truncated":
        Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "not-an-image":
        path.write_text("hello")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    return path


ODD = ["strip-1x20000", "strip-20000x1", "claims-100000x100000", "truncated", "not-an-image", "fifo", "folder"]
WHY = {"strip-1x20000": "longer than 32:1", "strip-20000x1": "longer than 32:1", "claims-100000x100000": "million pixels",
       "truncated": "truncated", "not-an-image": "not a readable image", "fifo": "not a regular file",
       "folder": "not a regular file"}


@pytest.mark.parametrize("kind", ODD)
def test_the_bounded_loader_refuses_before_decoding_naming_the_file(tmp_path, kind):
    path = odd_file(kind, tmp_path / "x.png")
    with no_hang(), pytest.raises(io.ImageError, match=WHY[kind]) as e:
        io.load_image(path)
    assert str(path) in str(e.value)
    assert io.load_image(Image.new("RGB", (90, 30)).save(tmp_path / "pano.png") or tmp_path / "pano.png").size == (90, 30)


@pytest.mark.parametrize("kind", ODD)
def test_topk_skips_an_odd_image_naming_why(tmp_path, capsys, kind):
    folder = pics(tmp_path / "pics", n=3)
    odd_file(kind, folder / "odd.png")
    with no_hang():
        assert main(["topk", "tiny", "conv2", "--channels", "0:2", "--images", str(folder), "--k", "2", "--size", "32",
                     "--out", str(tmp_path / "R"), "--quiet"]) == 0
    err = capsys.readouterr().err
    if kind not in ("folder", "fifo"):  # not a regular file: not an image candidate at all (nor opened)
        assert "odd.png" in err and WHY[kind] in err, err
    m = RenderFolder(tmp_path / "R").read()
    assert all("odd" not in r["image"] for recs in m["topk"]["conv2"]["channels"].values() for r in recs)


@pytest.mark.parametrize("kind", ["strip-1x20000", "strip-20000x1", "claims-100000x100000", "truncated", "not-an-image"])
def test_spectrum_refuses_an_odd_image_in_one_line(tmp_path, capsys, kind):
    folder = pics(tmp_path / "pics", n=2)
    odd_file(kind, folder / "odd.png")
    with no_hang():
        assert main(["spectrum", "--images", str(folder), "--out", str(tmp_path / "s.pt"), "--size", "16"]) == 2
    one_line(capsys, "odd.png", WHY[kind])


# --- 5. records that pair things carry and check who made them ----------------------------------------------

def other_weights_file(path: Path) -> str:
    """tiny's weights, changed: another network of the same model."""
    import torch

    from featvis.models.open import open_model
    state = open_model("tiny", "default", torch.device("cpu")).net.state_dict()
    torch.save({k: v * 2 for k, v in state.items()}, path)
    return str(path)


@pytest.mark.parametrize("model, weights", [("tiny", "other"), ("toy", "default")])
def test_topk_of_another_network_is_refused(R, tmp_path, capsys, model, weights):
    weights = other_weights_file(tmp_path / "w.pt") if weights == "other" else weights
    before = (R / "parts/main.json").read_bytes()
    assert main(["topk", model, "conv2", "--channels", "0:2", "--images", str(pics(tmp_path / "p")), "--k", "2",
                 "--size", "32", "--weights", weights, "--out", str(R), "--quiet"]) == 2
    one_line(capsys, "another network")
    assert (R / "parts/main.json").read_bytes() == before


def test_renders_of_another_network_into_a_folder_of_its_examples_are_refused(tmp_path, capsys):
    out = tmp_path / "R"
    assert main(["topk", "tiny", "conv2", "--channels", "0:2", "--images", str(pics(tmp_path / "p")), "--k", "2",
                 "--size", "32", "--weights", other_weights_file(tmp_path / "w.pt"), "--out", str(out), "--quiet"]) == 0
    assert main([*RENDER, "--out", str(out)]) == 2
    one_line(capsys, "made by another network")
    assert not list((out / "conv2").glob("*.png"))


@pytest.mark.parametrize("command", ["site", "faithfulness"])
def test_a_hand_edited_pairing_is_refused_where_it_is_read(R, tmp_path, capsys, command):
    edit_part(R, lambda m: m["topk"]["conv2"]["made_by"]["weights"].update(sha256="ab" * 32))
    argv = ["site", str(R), "--out", str(tmp_path / "s")] if command == "site" else ["faithfulness", str(R), "--device", "cpu"]
    assert main(argv) == 2
    one_line(capsys, "another network")


def test_the_record_helper_is_one_call_for_any_pairing_writer(R):
    from featvis.jobs.folder.records import made_by
    rf = RenderFolder(R)
    header = rf.read()
    rf.check_made_by(made_by("tiny", header["weights"]["sha256"]), "a score")  # the same network: fine
    with pytest.raises(UsageError, match="another network than a score"):
        rf.check_made_by(made_by("tiny", "cd" * 32), "a score")


# --- 6. circuit --record goes through the folder's owner ------------------------------------------------

CIRCUIT = ["circuit", "handcoded", "curves:2", "--from", "edges", "--top", "2", "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("link", ["curves", "curves/circuits", "curves/circuits/2.json", "curves/circuits/2_from_edges_0.png"])
def test_circuit_record_never_writes_through_a_symlink(tmp_path, capsys, link):
    out, elsewhere = tmp_path / "R", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    target = elsewhere if "." not in link.split("/")[-1] else elsewhere / "file"
    if target != elsewhere:
        target.write_text("precious")
    (out / link).symlink_to(target)
    assert main([*CIRCUIT, "--record", str(out)]) == 2
    one_line(capsys, "outside the folder")
    assert sorted(p.name for p in elsewhere.iterdir()) == ([] if target == elsewhere else ["file"])
    assert target == elsewhere or target.read_text() == "precious"


def test_circuit_record_waits_for_the_lock(tmp_path, capsys, monkeypatch):
    out = tmp_path / "R"
    monkeypatch.setenv("FEATVIS_LOCK_WAIT", "0")
    with RenderFolder(out).lock():
        assert main([*CIRCUIT, "--record", str(out)]) == 2
        one_line(capsys, "in use by")
    assert not (out / "curves").exists()
    assert main([*CIRCUIT, "--record", str(out)]) == 0
    record = json.loads((out / "curves/circuits/2.json").read_text())
    assert record["made_by"]["model"] == "handcoded" and len(record["made_by"]["weights"]["sha256"]) == 64


# --- 7, 8. the site: stable URLs, any model or layer name ---------------------------------------------------

def other_weights(folder: Path, sha="ab" * 32):
    def edit(m):
        m["weights"].update(sha256=sha)
        for sec in m.get("topk", {}).values():
            sec["made_by"]["weights"].update(sha256=sha)
    edit_part(folder, edit)


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_adding_other_weights_keeps_the_first_ones_at_the_plain_path(R, tmp_path, order):
    second = tmp_path / "R2"
    shutil.copytree(R, second)
    other_weights(second)
    out = tmp_path / "site"
    site.build([R], out)
    first_page = (out / "tiny/conv2/1.html").read_text()
    site.build([R, second] if order == "old-first" else [second, R], out)
    assert (out / "tiny/conv2/1.html").read_text() == first_page  # the published link shows the same unit
    assert (out / "tiny-abababab/conv2/1.html").is_file()


@pytest.mark.parametrize("name", ["index.html", "_static", "img", "thumb", "site.css", ".featvis-site.json"])
@pytest.mark.parametrize("what", ["model", "layer"])
def test_a_model_or_layer_named_like_a_site_file_builds(R, tmp_path, name, what):
    if what == "model":
        edit_part(R, lambda m: (m.update(model=name), m["topk"]["conv2"].update(model=name),
                                m["topk"]["conv2"]["made_by"].update(model=name)))
    else:
        edit_part(R, lambda m: (m["layers"].update({name: m["layers"].pop("conv2")}),
                                m["topk"].update({name: m["topk"].pop("conv2")})))
    out = tmp_path / "site"
    summary = site.build([R], out)
    assert summary.units == 4
    assert (out / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "_static/site.css").is_file() and json.loads((out / ".featvis-site.json").read_text())
    pages = [p for p in out.rglob("1.html")]
    assert len(pages) == 1 and name in pages[0].read_text()


# --- 9. a truncated image names its unit --------------------------------------------------------------------

def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("command", ["merge", "site", "sheet"])
def test_a_truncated_image_names_its_unit(R, tmp_path, capsys, command):
    truncate(R / "conv2/2.png")
    (R / "conv2_sheet.png").unlink()  # so that merge rebuilds the sheet from the images
    argv = {"merge": ["merge", str(R)], "site": ["site", str(R), "--out", str(tmp_path / "s"), "--quiet"],
            "sheet": ["sheet", str(R)]}[command]
    rc = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and "conv2:2" in text, text
    assert rc == {"merge": 3, "site": 0, "sheet": 2}[command]


@pytest.mark.parametrize("file", ["conv2/2.png", "conv2/topk/1/0.png"])
def test_a_truncated_image_that_matches_a_hand_edited_hash_is_one_line_exit_2(R, tmp_path, capsys, file):
    truncate(R / file)
    sha = hashlib.sha256((R / file).read_bytes()).hexdigest()
    if file.startswith("conv2/2"):
        edit_part(R, lambda m: m["layers"]["conv2"]["images"]["2"].update(sha256=sha))
    else:  # a crop is shown as a thumbnail only for a unit without a render
        edit_part(R, lambda m: m["layers"]["conv2"]["images"].pop("1"))
    assert main(["site", str(R), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    one_line(capsys, file, "tiny conv2:" + ("2" if file.startswith("conv2/2") else "1"), "truncated")


# --- 10. a lock that cannot be taken --------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["pwrite", "ftruncate"])
@pytest.mark.parametrize("lock", ["writer", "folder"])
def test_disk_full_while_taking_a_lock_is_one_line_and_leaks_nothing(R, monkeypatch, capsys, call, lock):
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    rf = RenderFolder(R)
    before = open_fds()
    monkeypatch.setattr(folder_locks.os, call, full)
    with pytest.raises(UsageError, match="cannot take the lock .*No space left on device.*free some space"):
        with (rf.lock() if lock == "writer" else rf._folder_lock()):
            pass
    assert open_fds() == before
    monkeypatch.undo()
    monkeypatch.setattr(folder_locks.os, call, full)
    assert main(["merge", str(R)] if lock == "folder" else [*RENDER, "--channels", "0:8", "--out", str(R)]) == 2
    one_line(capsys, "free some space")
    monkeypatch.undo()
    with rf.lock(wait=0):  # nothing is left locked
        pass


# --- 11. hand-edited record fields -----------------------------------------------------------------------

def _drop_shards(m):
    del m["job"]["shards"]


EDITS = {
    "job.shards = 0": lambda m: m["job"].update(shards=0),
    "job.shards missing": _drop_shards,
    "job.batch = 'x'": lambda m: m["job"].update(batch="x"),
    "job.layers spec": lambda m: m["job"]["layers"].update(conv2="0:zz"),
    "runs = [1]": lambda m: m.update(runs=[1]),
    "failed = [1]": lambda m: m.update(failed=[1]),
    "failed message 5": lambda m: m.update(failed={"conv2:0": 5}),
    "settings.diversity = '2'": lambda m: m["settings"].update(diversity="2"),
    "settings.size = -1": lambda m: m["settings"].update(size=-1),
    "objective = 5": lambda m: m["layers"]["conv2"].update(objective=5),
    "topk.k = 0": lambda m: m["topk"]["conv2"].update(k=0),
    "topk.box": lambda m: m["topk"]["conv2"]["channels"]["0"][0].update(box=[1, 2]),
    "topk.made_by": lambda m: m["topk"]["conv2"].update(made_by="me"),
    "weights.sha256": lambda m: m["weights"].update(sha256="xyz"),
    "model = 7": lambda m: m.update(model=7),
    "writer": lambda m: m.update(writer="../x"),
    "image name": lambda m: m["layers"]["conv2"]["images"].update({"a\nb": m["layers"]["conv2"]["images"]["0"]}),
}


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("command", ["merge", "site", "render"])
def test_a_hand_edited_field_is_one_line_exit_2(R, tmp_path, capsys, edit, command):
    edit_part(R, EDITS[edit])
    argv = {"merge": ["merge", str(R)], "site": ["site", str(R), "--out", str(tmp_path / "s"), "--quiet"],
            "render": [*RENDER, "--out", str(R)]}[command]
    assert main(argv) == 2
    one_line(capsys, "parts/main.json")


def test_a_hand_edited_circuit_record_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "R"
    assert main(["render", "handcoded", "curves", "--channels", "0:3", *SMALL, "--out", str(out)]) == 0
    assert main([*CIRCUIT, "--record", str(out)]) == 0
    path = out / "curves/circuits/2.json"
    for edit in ({"inputs": [{"channel": "x", "norm": 1}]}, {"inputs": 3}, {"from": "/etc"},
                 {"made_by": {"weights": "x"}}):
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
        assert main(["site", str(out), "--out", str(tmp_path / "s"), "--quiet"]) == 2
        one_line(capsys, "curves/circuits/2.json")
        assert main([*CIRCUIT, "--record", str(out)]) == 0  # recording again repairs it


# --- notes: the server, local paths, newer manifests, collapsed images, racing shards --------------------

@pytest.fixture
def served(R, tmp_path):
    out = tmp_path / "site"
    site.build([R], out)
    ready, event = {}, threading.Event()
    thread = threading.Thread(target=site.serve, args=(out, 0, lambda u, s: (ready.update(url=u, server=s), event.set())),
                              daemon=True)
    thread.start()
    assert event.wait(10)
    yield ready["url"], out
    ready["server"].shutdown()
    thread.join(10)


@pytest.mark.parametrize("path", ["tiny/conv2/img/", "tiny/conv2/thumb/", "_static/", ".featvis-site.json",
                                  "tiny/.hidden.html", "%2Efeatvis-site.json"])
def test_serve_lists_no_folder_and_no_hidden_file(served, path):
    url, out = served
    (out / "tiny/.hidden.html").write_text("x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + path, timeout=10)
    assert e.value.code == 404
    with urllib.request.urlopen(url + "tiny/conv2/1.html", timeout=10) as r:
        assert r.status == 200


def test_a_published_site_carries_no_local_path(made, tmp_path):
    src = tmp_path / "deep" / "home" / "someone" / "R"
    shutil.copytree(made, src)
    weights = tmp_path / "deep" / "w.pt"
    import torch

    from featvis.models.open import open_model
    torch.save(open_model("tiny", "default", torch.device("cpu")).net.state_dict(), weights)
    assert main([*RENDER, "--channels", "0:2", "--weights", str(weights), "--out", str(tmp_path / "deep" / "W")]) == 0
    out = tmp_path / "site"
    site.build([str(src), str(tmp_path / "deep" / "W")], out)
    for f in out.rglob("*"):
        if f.is_file():
            assert str(tmp_path).encode() not in f.read_bytes(), f


@pytest.mark.parametrize("where", ["parts/main.json", "manifest.json"])
@pytest.mark.parametrize("force", [False, True])
def test_a_manifest_from_a_newer_featvis_says_so_and_is_kept(R, capsys, where, force):
    if where == "manifest.json":
        shutil.rmtree(R / "parts")
    data = json.loads((R / where).read_text())
    data["featvis_manifest"] = 3
    (R / where).write_text(json.dumps(data))
    before = (R / where).read_bytes()
    assert main([*RENDER, "--out", str(R), *(["--force"] if force else [])]) == 2
    text = one_line(capsys, "newer featvis", "upgrade featvis")
    assert "damaged" not in text and "--force" not in text
    assert (R / where).read_bytes() == before
    for argv in (["merge", str(R)], ["sheet", str(R)]):
        assert main(argv) == 2
        one_line(capsys, "newer featvis")


@pytest.mark.parametrize("lr", ["1e30", "1e4"])
def test_a_collapsed_image_is_a_failure_not_a_render(tmp_path, capsys, lr):
    out = tmp_path / "R"
    # the plain recipe: under fourier-crops' weight decay a rate of 1e30 overflows first (a non-finite failure)
    assert main([*RENDER, "--preset", "none", "--lr", lr, "--out", str(out)]) == 1
    assert "collapsed to flat colours" in capsys.readouterr().err
    assert not list(out.rglob("*.png")) and not list(out.rglob("*.json"))  # nothing recorded, nothing claimed


def test_a_collapsed_image_beside_good_ones_is_recorded_as_failed(tmp_path, monkeypatch, capsys):
    from featvis.jobs import job as J
    real = J.saturated
    monkeypatch.setattr(J, "saturated", lambda images: [1.0 if i == 1 else s for i, s in enumerate(real(images))])
    out = tmp_path / "R"
    assert main([*RENDER, "--out", str(out)]) == 1
    m = RenderFolder(out).read()
    assert sorted(m["layers"]["conv2"]["images"]) == ["0", "2", "3"]
    assert main(["merge", str(out)]) == 3
    assert "conv2:1 failed: the image collapsed" in capsys.readouterr().out


def header(**settings):
    return {"model": "m", "weights": {"spec": "none", "sha256": "0" * 64}, "settings": {"size": 8, **settings}}


def test_shards_started_together_with_other_settings_are_refused_before_rendering(tmp_path):
    s0, s1 = RenderFolder(tmp_path), RenderFolder(tmp_path)
    with s0.lock("shard-0-of-2"):
        s0.claim(header())  # no batch recorded yet
        with s1.lock("shard-1-of-2"):
            with pytest.raises(UsageError, match=r"other settings \(a writer starting now\) \(size 8 -> 9\)"):
                s1.claim(header(size=9))
            s1.claim(header())  # the same settings: side by side
    # released without images: the claims are taken back, nothing is left claimed
    assert not list((tmp_path / "parts").glob("*.json")) and RenderFolder(tmp_path).read() is None


def test_a_claim_left_by_a_killed_writer_blocks_nothing(tmp_path):
    part = {"featvis_manifest": 2, "writer": "shard-0-of-2", **header(), "runs": [], "layers": {}, "topk": {}}
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts/shard-0-of-2.json").write_text(json.dumps(part))  # its writer holds no lock
    s1 = RenderFolder(tmp_path)
    with s1.lock("shard-1-of-2"):
        s1.claim(header(size=9))
    s0 = RenderFolder(tmp_path)
    with s0.lock("shard-0-of-2"):  # the killed shard itself, started again with other settings
        s0.claim(header(size=9))


def test_no_field_runs_in_a_visitors_browser(R, tmp_path):
    """In headless Chromium (as tests/test_site.py): a model name, objective and dataset folder
    holding markup show as text on every page, and no script of theirs runs."""
    from .test_site import chrome
    ran = "String.fromCharCode(80,87,78)"  # "PWN", a title that no page's own text holds
    evil = f'<img src=x onerror="document.title={ran}"><script>document.title={ran}</script>'
    edit_part(R, lambda m: (m.update(model=f"tiny{evil}"), m["layers"]["conv2"].update(objective=evil),
                            m["topk"]["conv2"].update(model=f"tiny{evil}", images=evil),
                            m["topk"]["conv2"]["made_by"].update(model=f"tiny{evil}")))
    out = tmp_path / "site"
    site.build([R], out)
    driver = chrome(tmp_path / "profile")
    try:
        driver.set_page_load_timeout(30)
        for page in sorted(out.rglob("*.html")):
            driver.get(page.as_uri())
            assert driver.title != "PWN", page
            assert not driver.find_elements("css selector", "img[src='x']"), page
        driver.get((out / "index.html").as_uri())
        assert evil in driver.find_element("tag name", "body").text  # shown as the text it is
    finally:
        driver.quit()
