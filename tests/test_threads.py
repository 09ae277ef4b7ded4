"""CPU threads: ``--threads``, ``FEATVIS_THREADS``, the load-aware default, and the count as a
setting of a render folder (recorded; a resume takes the folder's; another explicit one refused)."""
import json

import pytest
import torch

from featvis import threads
from featvis.cli import COMPUTING, main, parser
from featvis.errors import UsageError
from featvis.jobs.job import prepare_job


@pytest.fixture(autouse=True)
def keep_threads():
    """Whatever a test sets, the suite goes on with the count it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_parse_takes_counts_and_auto_and_names_the_source_of_a_bad_one():
    assert threads.parse("3") == 3 and threads.parse(2) == 2
    assert threads.parse("auto") is None and threads.parse("") is None and threads.parse(None) is None
    for bad in ("0", "-1", "two", "1.5", str(threads.MAX_THREADS + 1)):
        with pytest.raises(UsageError, match=r"^--threads .*expected a number of CPU threads from 1"):
            threads.parse(bad)
    with pytest.raises(UsageError, match=r"^FEATVIS_THREADS= lots"):
        threads.parse("lots", "FEATVIS_THREADS=")


def test_choose_order_explicit_env_folder_omp_auto(monkeypatch):
    monkeypatch.setattr(threads, "auto", lambda load_aware=True: 7)
    monkeypatch.delenv("FEATVIS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose() == (7, "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.choose() == (5, "OMP_NUM_THREADS")
    assert threads.choose(recorded=4) == (4, "the folder's")
    monkeypatch.setenv("FEATVIS_THREADS", "3")
    assert threads.choose(recorded=4) == (3, "FEATVIS_THREADS")
    assert threads.choose(2, recorded=4) == (2, "--threads")
    monkeypatch.setenv("FEATVIS_THREADS", "auto")
    assert threads.choose(recorded=4) == (4, "the folder's")
    monkeypatch.setenv("FEATVIS_THREADS", "0")
    with pytest.raises(UsageError, match="FEATVIS_THREADS"):
        threads.choose()


def test_auto_counts_idle_physical_cores(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda: 8)
    monkeypatch.setattr(threads, "available_cpus", lambda: 16)  # 2 hyperthreads per core
    for load, want in ((0.0, 8), (9.6, 6), (14.7, 1), (40.0, 1)):
        monkeypatch.setattr(threads, "machine_load", lambda load=load: load)
        assert threads.auto() == want, load
    assert threads.auto(load_aware=False) == 8  # shards: the same count whatever the load
    monkeypatch.setattr(threads, "machine_load", lambda: None)  # no load average (not Linux)
    assert threads.auto() == 8


def test_physical_cores_is_within_the_cpus_this_process_may_use():
    assert 1 <= threads.physical_cores() <= threads.available_cpus()


def test_every_computing_command_takes_threads_and_a_bad_count_is_one_line(capsys):
    commands = parser()._subparsers._group_actions[0].choices
    for name in COMPUTING:
        text = commands[name].format_help()
        assert "--threads N|auto" in text, name
    assert main(["render", "toy", "conv2", "--threads", "0", "--out", "never"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0] and "expected a number of CPU threads" in err[0]


def _job(out, **kw):
    return prepare_job("toy", ["conv2"], "0:2", out, weights="none", size=16, steps=2, batch=2, device="cpu", **kw)


def test_the_count_is_a_recorded_setting_and_a_resume_takes_the_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATVIS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "r"
    job = _job(out, threads=2)
    job.run(progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["threads"] == 2 and manifest["device"].endswith("2 threads)")
    assert manifest["runs"][0]["threads"] == 2
    # Resuming without a choice takes the folder's count, whatever the default would be now.
    monkeypatch.setattr(threads, "auto", lambda load_aware=True: 1)
    again = _job(out)
    assert again.settings.threads == 2 and torch.get_num_threads() == 2
    # An explicit other count would make images unlike those already there: refused, saying why.
    with pytest.raises(UsageError, match=r"rendered with 2 CPU thread\(s\).*changes the pixels.*drop --threads"):
        _job(out, threads=1)
    monkeypatch.setenv("FEATVIS_THREADS", "1")
    with pytest.raises(UsageError, match="FEATVIS_THREADS"):
        _job(out)
    assert _job(out, threads=1, force=True).settings.threads == 1  # --force starts over


def test_a_folder_from_before_the_setting_resumes_with_the_count_its_device_line_names(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATVIS_THREADS", raising=False)
    out = tmp_path / "r"
    _job(out, threads=1).run(progress=False)
    for name in ("manifest.json", "parts/main.json"):  # as featvis wrote it before it recorded the count
        path = out / name
        data = json.loads(path.read_text())
        del data["settings"]["threads"]
        data["device"] = "cpu (x86_64, 3 threads)"
        path.write_text(json.dumps(data))
    job = _job(out)
    assert job.settings.threads is None and torch.get_num_threads() == 3  # settings unchanged: it resumes
    with pytest.raises(UsageError, match="3 CPU thread"):
        _job(out, threads=2)


def test_cuda_records_no_thread_count():
    from featvis.jobs.job import _threads
    from featvis.jobs.shard import Shard

    class Dev:
        type = "cuda"

    assert _threads(1, None, Dev(), Shard(), "out") is None
