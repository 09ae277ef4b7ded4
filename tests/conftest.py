import contextlib
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

import featvis

torch.set_num_threads(1)  # small ops: threads cost more than they give, and CI has 2 cores
# ... and the CLI runs the tests start (in this process or as subprocesses) use 1 thread too: the
# fastest here, and one fixed count (on the CPU the count changes pixels; tests compare bytes).
os.environ.setdefault("FEATVIS_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default=None,
                     help="device for every test: cpu, cuda, cuda:1 ... (default: what featvis picks, CUDA when present)")


def pytest_configure(config):
    # Through featvis's own default (FEATVIS_DEVICE, read by pick_device), so that every render
    # without device=..., and every CLI run the tests start, lands on the chosen device.
    from featvis.models.registry import DEVICE_ENV, pick_device
    chosen = config.getoption("--device")
    os.environ[DEVICE_ENV] = str(pick_device(chosen if chosen not in (None, "auto") else None))


def suite_device() -> torch.device:
    """The device the tests run on (``pytest --device``)."""
    from featvis.models import pick_device
    return pick_device(None)


@pytest.fixture
def device() -> torch.device:
    return suite_device()


class Tiny(nn.Module):
    """A 3-layer convnet with a counter on its last layer (to see whether it ran); it declares
    ImageNet's mean and std as its input convention (``featvis.wrap`` does not guess)."""

    featvis_normalize = "imagenet"

    def __init__(self, c1=8, c2=12, c3=6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c3, 5)
        self.calls = {"conv3": 0}

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        self.calls["conv3"] += 1
        x = self.conv3(x)
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Tiny().eval()


def tiny_model():
    """A 2-conv net with logits as a featvis model on the raw [0,1] image (seeded weights)."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 10)),
    ]))
    return featvis.wrap(net, normalize=None)


@contextlib.contextmanager
def reaped(proc):
    """``with reaped(Popen(...)) as proc:``: a child process still running when the block ends
    (a failed assertion, a timeout) is killed, so a failing test leaves no stray job behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
