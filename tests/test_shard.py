"""Whole-model jobs in shards: shard detection, the batch list, and runs under torchrun, a submitit
array and ``--shard I/N`` by hand, killed and re-run, giving the same files as one process.

Subprocess tests run ``python -m featvis`` from this worktree on ``tinyshard`` (the ``toy`` convnet,
registered by tests/shard_plugin.py, which can stall one shard in its second batch on request).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featvis.cli import main
from featvis.errors import UsageError
from featvis.jobs.batches import WorkUnit, plan_batches
from featvis.jobs.job import INCOMPLETE, merge, select_layers, unit_seed
from featvis.jobs.shard import Shard, detect, device_for, parse
from featvis.units import spec_of

from . import shard_plugin  # noqa: F401  (registers "tinyshard" in this process too)
from .conftest import reaped

ROOT = Path(__file__).resolve().parents[1]
# Two layers of 6 channels, 2 per batch: 6 batches, conv2's then conv3's.
JOB = ["render", "tinyshard", "conv2", "conv3", "--channels", "0:6", "--batch", "2", "--steps", "3", "--size", "32"]


def env(**extra):
    e = dict(os.environ, PYTHONPATH=str(ROOT), FEATVIS_PLUGINS="tests.shard_plugin", OMP_NUM_THREADS="1")
    for key in ("FEATVIS_TEST_STALL", "FEATVIS_TEST_WRITES", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "JOB_COMPLETION_INDEX", "FEATVIS_SHARDS"):
        e.pop(key, None)
    e.update(extra)
    return e


def featvis(*args, **extra):
    return subprocess.run([sys.executable, "-m", "featvis", *args], env=env(**extra), capture_output=True,
                          text=True, timeout=600)


def torchrun(*args, **extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "featvis", *args]
    return subprocess.Popen(cmd, env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files(folder: Path):
    """{relative path: bytes} of the images and sheets (not the records: manifest, parts, logs)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def stamps(folder: Path):
    """Modification times of every file but the locks (which record who held them last)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if not p.name.endswith(".lock")}


def kill_when_stalled(out: Path, writer: str, stalled: Path, proc, timeout=300):
    """Wait until shard ``writer`` is stalled in its second batch, then SIGKILL it; returns its pid."""
    t0 = time.monotonic()
    while not stalled.exists():
        assert proc.poll() is None, f"the job ended before the shard stalled: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "the shard never stalled"
        time.sleep(0.05)
    pid = json.loads((out / "parts" / f"{writer}.json").read_text())["runs"][-1]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The job in one process, uninterrupted."""
    out = tmp_path_factory.mktemp("ref") / "renders"
    r = featvis(*JOB, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


# --- which shard ---------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, count, expected", [
    ({}, None, (0, 1, "single process", None)),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, None, (1, 4, "torchrun", 1)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}, None, (5, 8, "SLURM array", None)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, None, (2, 4, "SLURM array", None)),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_LOCALID": "0"}, None, (2, 3, "srun", 0)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, None, (0, 1, "single process", None)),  # sbatch, no srun
    ({"JOB_COMPLETION_INDEX": "6"}, 10, (6, 10, "Kubernetes Indexed Job", None)),
    ({"JOB_COMPLETION_INDEX": "6", "FEATVIS_SHARDS": "7"}, None, (6, 7, "Kubernetes Indexed Job", None)),
])
def test_detect_from_the_launchers_environment(environ, count, expected):
    s = detect(None, environ, count)
    assert (s.index, s.count, s.source, s.local_rank) == expected


def test_the_flag_wins_over_the_environment():
    s = detect("2/3", {"RANK": "0", "WORLD_SIZE": "8"})
    assert (s.index, s.count, s.source, s.writer) == (2, 3, "--shard", "shard-2-of-3")
    assert detect(None, {}).writer == "main"  # a job of one shard is the folder's plain writer


@pytest.mark.parametrize("flag, environ, count, message", [
    ("3/3", {}, None, "shards are numbered from 0, so shard 3 of 3 does not exist; use 0/3 ... 2/3"),
    ("1/0", {}, None, "must be at least 1"),
    ("a/b", {}, None, "expected I/N"),
    ("-1/2", {}, None, "expected I/N"),
    (None, {"JOB_COMPLETION_INDEX": "2"}, None, "pass --shards N (the Job's completions) or set FEATVIS_SHARDS=N"),
    (None, {"JOB_COMPLETION_INDEX": "4"}, 4, "give shard 4 of 4, which does not exist"),
    (None, {"RANK": "x", "WORLD_SIZE": "2"}, None, "RANK='x' is not a whole number"),
    (None, {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, None, "step-1 array"),
    (None, {}, 3, "nothing says which one this process is"),
])
def test_bad_shards_say_what_to_do(flag, environ, count, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        detect(flag, environ, count)


def test_local_rank_picks_the_gpu_only_where_there_is_one():
    s = Shard(1, 2, "torchrun", local_rank=1)
    assert device_for(s, "auto", cuda_available=True) == "cuda:1"
    assert device_for(s, "cuda", cuda_available=True) == "cuda:1"
    assert device_for(s, "cpu", cuda_available=True) == "cpu"
    assert device_for(s, "auto", cuda_available=False) == "auto"
    assert device_for(parse("1/2"), "auto", cuda_available=True) == "auto"


# --- the batch list and the seeds ----------------------------------------------------------------

def test_shards_split_the_batches_without_overlap_and_in_a_fixed_order():
    layers = [("a", list(range(5))), ("b", [0, 3, 9])]
    batches = plan_batches(layers, batch=2, diversity=2)
    assert [(b.layer, b.channels) for b in batches] == [("a", (0, 1)), ("a", (2, 3)), ("a", (4,)), ("b", (0, 3)), ("b", (9,))]
    assert batches[1].units == [WorkUnit("a", 2, 0), WorkUnit("a", 2, 1), WorkUnit("a", 3, 0), WorkUnit("a", 3, 1)]
    for n in (1, 2, 3, 7):
        taken = [b.index for i in range(n) for b in Shard(i, n).take(batches)]
        assert sorted(taken) == list(range(len(batches)))  # each batch in exactly one shard
        assert all(Shard(i, n).owns(b.index) == (b in Shard(i, n).take(batches)) for i in range(n) for b in batches)


def test_a_units_seed_names_the_layer_channel_and_k_only():
    seeds = {unit_seed(0, layer, c, k) for layer in ("conv2", "conv3") for c in range(4) for k in range(2)}
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)
    assert unit_seed(0, "conv2", 3, 1) == unit_seed(0, "conv2", 3, 1) != unit_seed(1, "conv2", 3, 1)


def test_spec_of_reads_back():
    assert spec_of([0, 1, 2, 3, 7, 9, 10]) == "0:4,7,9:11"
    assert spec_of([5]) == "5"


def test_layer_sets():
    from featvis.models.open import open_model
    assert select_layers(open_model("resnet18", "none"), "blocks", 64, "resnet18") == [
        f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    toy = open_model("toy", "default")
    assert select_layers(toy, "all", 32, "toy")[:3] == ["conv1", "relu1", "conv2"]
    with pytest.raises(UsageError, match="toy marks no block outputs"):
        select_layers(toy, "blocks", 32, "toy")


# --- whole jobs ----------------------------------------------------------------------------------

def test_every_block_of_a_resnet_with_diverse_images(tmp_path, capsys):
    """The README's ``featvis render resnet50 --layers blocks --diversity 4``, at the smallest size:
    one channel of each of resnet18's 8 blocks, two diverse images each, one folder, one sheet per layer."""
    out = tmp_path / "microscope"
    assert main(["render", "resnet18", "--layers", "blocks", "--channels", "0:1", "--diversity", "2", "--weights",
                 "none", "--steps", "1", "--size", "32", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert list(m["layers"]) == blocks
    assert all(list(m["layers"][b]["images"]) == ["0_0", "0_1"] and (out / f"{b}_sheet.png").is_file() for b in blocks)



def test_one_process_renders_every_layer_into_one_folder(reference):
    m = json.loads((reference / "manifest.json").read_text())
    assert list(m["layers"]) == ["conv2", "conv3"] and list(m["derived"]["parts"]) == ["main"]
    part = json.loads((reference / "parts" / "main.json").read_text())
    assert part["job"] == {"layers": {"conv2": "0:6", "conv3": "0:6"}, "batch": 2, "shards": 1}
    for layer in ("conv2", "conv3"):
        entries = m["layers"][layer]["images"]
        assert list(entries) == [str(c) for c in range(6)]
        assert [e["seed"] for e in entries.values()] == [unit_seed(0, layer, c) for c in range(6)]
        assert (reference / f"{layer}_sheet.png").exists()
    assert sorted(files(reference)) == sorted([f"{layer}/{c}.png" for layer in ("conv2", "conv3") for c in range(6)]
                                              + ["conv2_sheet.png", "conv3_sheet.png"])
    r = featvis("merge", str(reference))
    assert r.returncode == 0 and "12 of 12 images of 2 layer(s) are recorded (complete)" in r.stdout


def test_torchrun_two_workers_one_killed_mid_batch_then_rerun(reference, tmp_path):
    out, stalled = tmp_path / "renders", tmp_path / "stalled"
    proc = torchrun(*JOB, "--out", str(out), FEATVIS_TEST_STALL=str(out / "parts" / "shard-1-of-2.json"),
                    FEATVIS_TEST_STALLED=str(stalled))
    with reaped(proc):
        kill_when_stalled(out, "shard-1-of-2", stalled, proc)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun reports the dead worker
    part = json.loads((out / "parts" / "shard-1-of-2.json").read_text())
    assert list(part["layers"]["conv2"]["images"]) == ["2", "3"]  # its first batch; the second was in flight
    assert part["runs"][-1]["launcher"] == "torchrun"

    proc = torchrun(*JOB, "--out", str(out))
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "shard 1/2 (torchrun): resuming: 2 of 6 channels are done; rendering 4" in err
    r = featvis("merge", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert files(out) == files(reference)  # every PNG and sheet, byte for byte
    m = json.loads((out / "manifest.json").read_text())
    assert list(m["derived"]["parts"]) == ["shard-0-of-2", "shard-1-of-2"]
    assert {r["shard"] for r in m["runs"]} == {"0/2", "1/2"} and {r["launcher"] for r in m["runs"]} == {"torchrun"}


def test_submitit_local_array_of_three_one_killed_then_rerun(reference, tmp_path):
    pytest.importorskip("submitit", reason="the submitit launcher test needs submitit (pip install featvis[slurm])")
    out, stalled = tmp_path / "renders", tmp_path / "stalled"
    cmd = [sys.executable, "-m", "featvis", *JOB, "--out", str(out), "--slurm", "cluster=local,array=3,time=20"]
    proc = subprocess.Popen(cmd, env=env(FEATVIS_TEST_STALL=str(out / "parts" / "shard-1-of-3.json"),
                                         FEATVIS_TEST_STALLED=str(stalled)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(proc):
        kill_when_stalled(out, "shard-1-of-3", stalled, proc)
        stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "1 shards failed: shard 1/3" in err
    assert "shard 1/3: 2 missing: conv3:2, conv3:3" in stdout  # shard 1 has batches 1 and 4; 4 was in flight

    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "12 of 12 images of 2 layer(s) are recorded (complete)" in r.stdout
    assert files(out) == files(reference)
    assert (out / "slurm").is_dir()  # submitit's logs stay inside --out


def test_shards_by_hand_one_left_out_then_run(reference, tmp_path, capsys):
    out = tmp_path / "renders"
    for i in (0, 2):
        assert main([*JOB, "--out", str(out), "--shard", f"{i}/3"]) == 0
    capsys.readouterr()
    assert main(["merge", str(out)]) == INCOMPLETE
    captured = capsys.readouterr()
    assert "8 of 12 images of 2 layer(s) are recorded" in captured.out
    assert "shard 1/3: 4 missing: conv2:2, conv2:3, conv3:2, conv3:3" in captured.out  # batches 1 and 4
    assert "run the same featvis render command with --shard 1/3" in captured.err

    assert main([*JOB, "--out", str(out), "--shard", "1/3"]) == 0
    assert "all shards are done: 12 images" in capsys.readouterr().out  # the last shard merged
    assert main(["merge", str(out)]) == 0
    assert files(out) == files(reference)
    # A shard with nothing left to do writes nothing.
    before = stamps(out)
    assert main([*JOB, "--out", str(out), "--shard", "1/3"]) == 0
    assert stamps(out) == before


def test_two_shards_at_once_never_write_one_file(reference, tmp_path):
    out, log = tmp_path / "renders", tmp_path / "writes"
    procs = [subprocess.Popen([sys.executable, "-m", "featvis", *JOB, "--out", str(out), "--shard", f"{i}/2"],
                              env=env(FEATVIS_TEST_WRITES=str(log)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    logs = sorted(tmp_path.glob("writes.*"))
    assert len(logs) == 2
    root = str(out.resolve()) + os.sep
    written = []
    for path in logs:
        rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()]
        rows = [(held == "1", p[len(root):]) for held, p in rows if p.startswith(root)]
        # The merged records (manifest, sheets) are written only while the folder's lock is held...
        shared = {p for held, p in rows if held}
        assert all(held for held, p in rows if p == "manifest.json" or p.endswith("_sheet.png"))
        # ... and everything else each shard writes is its own.
        written.append({p for held, p in rows if not held and not p.endswith(".lock")})
        assert shared
    assert written[0] and written[1] and not (written[0] & written[1]), written[0] & written[1]
    assert {"parts/shard-0-of-2.json", "conv2/0.png", "conv3/5.png"} - written[0] == {"conv3/5.png"}
    assert main(["merge", str(out)]) == 0
    assert files(out) == files(reference)


BAD = [
    (["--shard", "2/2"], "shards are numbered from 0"),
    (["--shard", "0/2", "--force"], "--force with shard 0/2"),
    (["--layers", "all"], "name layers (conv2 conv3) or give --layers all, not both"),
    (["--slurm", "array=0"], "array=0 must be at least 1"),
    (["--slurm", "partition=gpu"], "say how many shards with array=N"),
    (["--slurm", "nodes=2,array=2"], "unknown key 'nodes'"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[m[:24] for _, m in BAD])
def test_bad_job_options_are_one_line_and_write_nothing(extra, message, tmp_path, capsys):
    assert main([*JOB, "--out", str(tmp_path / "renders"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "renders").exists()


def test_no_layer_and_a_layer_twice(tmp_path, capsys):
    assert main(["render", "tinyshard", "--out", str(tmp_path / "r")]) == 2
    assert "no layer given: name one or more layers after the model, or pass --layers blocks|all" in capsys.readouterr().err
    assert main(["render", "tinyshard", "conv2", "conv2", "--out", str(tmp_path / "r")]) == 2
    assert "a layer is named twice" in capsys.readouterr().err
    assert main(["merge", str(tmp_path)]) == 2
    assert "holds no featvis records" in capsys.readouterr().err


def test_merge_is_safe_while_nothing_changed(reference, tmp_path):
    import shutil
    out = tmp_path / "renders"
    shutil.copytree(reference, out)
    before = stamps(out)
    report = merge(out)
    assert report.complete and (report.expected, report.recorded, report.layers) == (12, 12, 2)
    assert stamps(out) == before
    (out / "conv3_sheet.png").unlink()  # a derived file is rebuilt from the records
    (out / "conv2" / "5.png").unlink()  # a lost image is reported
    report = merge(out)
    assert report.missing == {"0/1": ["conv2:5"]}
    assert (out / "conv3_sheet.png").read_bytes() == (reference / "conv3_sheet.png").read_bytes()


def test_plan_counts_units_and_times_a_probe(capsys):
    assert main(["plan", "tinyshard", "conv2", "conv3", "--size", "32", "--steps", "100", "--batch", "8",
                 "--probe-steps", "1", "--device", "cpu", "--hours", "0.0001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tinyshard: 2 layers, 48 images (1 per channel), 6 batches of up to 8 channels, 100 steps, 32 px")
    assert "conv3     32 channels     4 batches" in out
    assert "CPU-hours on this cpu" in out
    shards = int(out.split("shards: ask for ")[1].split()[0])
    assert 1 <= shards <= 6  # never more shards than batches
    assert main(["plan", "tinyshard", "--layers", "blocks"]) == 2
    assert "marks no block outputs" in capsys.readouterr().err
    # a preset's size is the default and its own param is probed
    assert main(["plan", "tinyshard", "conv2", "--preset", "maco", "--steps", "10", "--probe-steps", "1",
                 "--device", "cpu"]) == 0
    assert ", 10 steps, 224 px" in capsys.readouterr().out
    assert main(["plan", "tinyshard", "conv2", "--preset", "maco", "--param", "cppn"]) == 2
    assert "drop --param cppn" in capsys.readouterr().err


def test_the_slurm_array_example_script(reference, tmp_path):
    """examples/slurm_array.sh as tasks 0 and 1 of ``sbatch --array=0-1`` (SLURM's environment, no SLURM)."""
    out = tmp_path / "renders"
    settings = dict(MODEL="tinyshard", LAYERS="conv2 conv3", CHANNELS="0:6", STEPS="3", SIZE="32", BATCH="2",
                    OUT=str(out), PYTHON=sys.executable)
    procs = [subprocess.Popen(["bash", str(ROOT / "examples" / "slurm_array.sh")],
                              env=env(SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_MIN="0",
                                      SLURM_ARRAY_TASK_MAX="1", SLURM_ARRAY_TASK_COUNT="2", **settings),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "(SLURM array)" in err
    assert sorted(p.name for p in (out / "parts").glob("*.json")) == ["shard-0-of-2.json", "shard-1-of-2.json"]
    assert featvis("merge", str(out)).returncode == 0
    assert files(out) == files(reference)


def test_a_failing_batch_is_reported_and_claims_nothing(tmp_path, capsys):
    out = tmp_path / "renders"
    bad = ["render", "tinyshard", "conv2", "--channels", "0:2", "--batch", "1", "--steps", "2", "--size", "32",
           "--lr", "1e300", "--out", str(out)]
    assert main(bad) == 1
    assert "2 images failed (first: conv2:0: " in capsys.readouterr().err
    assert not (out / "manifest.json").exists() and not list(out.glob("parts/*.json"))  # the folder is not claimed
    assert main(bad[:-4] + ["--out", str(out)]) == 0  # the advised fix (another --lr) is not refused
