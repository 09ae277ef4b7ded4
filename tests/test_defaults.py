"""Defaults that follow the thing they belong to: the CLI's learning rate is the param's own."""
import json

import pytest

from featvis.cli import main
from featvis.jobs.job import prepare
from featvis.param.cppn import CPPN_LR

from . import cli_plugin  # noqa: F401  (registers "tiny")


@pytest.mark.parametrize("param, lr", [("cppn", CPPN_LR), ("fourier", 0.05), ("pixel", 0.05)])
def test_lr_default_is_the_params_own(tmp_path, param, lr):
    job = prepare("tiny", "conv2", "0:1", tmp_path / "out", param=param, size=16, steps=1)
    assert job.settings.lr == lr
    assert job.header["settings"]["lr"] == lr


def test_cli_records_the_effective_lr(tmp_path):
    out = tmp_path / "r"
    assert main(["render", "tiny", "conv2", "--channels", "0:1", "--param", "cppn", "--size", "16",
                 "--steps", "1", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["lr"] == CPPN_LR == 0.005
    # an explicit --lr wins, and a different one is a different setting
    assert main(["render", "tiny", "conv2", "--channels", "0:1", "--param", "cppn", "--size", "16",
                 "--steps", "1", "--lr", "0.005", "--out", str(out)]) == 0
    assert main(["render", "tiny", "conv2", "--channels", "0:1", "--param", "cppn", "--size", "16",
                 "--steps", "1", "--lr", "0.05", "--out", str(out)]) == 2


def test_one_batch_job_shows_progress_over_steps(tmp_path, capsys, monkeypatch):
    job = prepare("tiny", "conv2", "0:2", tmp_path / "out", size=16, steps=6, batch=8)
    assert job.batch == 8 and len(job.channels(done=False)) == 2 and len(job.pending) == 1  # one batch
    calls = []
    import featvis.progress as B  # the job makes its bar through featvis.progress.bar when it runs
    real = B.bar_class()

    class Spy(real):
        def update(self, n=1):
            if not self.disable:  # render's own bar is off inside a job (the job's bar counts its steps)
                calls.append(n)
            return super().update(n)

    monkeypatch.delenv(B.ENV, raising=False)
    monkeypatch.setattr(B, "bar_class", lambda: Spy)
    job.run(progress=True)
    assert sum(calls) == 6  # every step of the one batch moved the bar
    err = capsys.readouterr().err
    assert "6/6" in err and "step" in err and "images=2/2" in err
