"""The CUDA paths' logic, checked on whatever device the suite runs on (``pytest --device``):
wrappers and caches follow the device, deterministic mode, the three warp samplers, and the
static-buffer step that a CUDA graph replays."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import featvis
from featvis import accel
from featvis import transforms as T
from featvis._cache import DeviceCopies
from featvis.models.inception import LRN, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
from featvis.models.registry import DEVICE_ENV, pick_device
from featvis.objectives import channel
from featvis.param import fourier
from featvis.rng import RandomSource
from featvis.step import StaticFeed, Stepper
from featvis.transforms.geometric import sampling

from .conftest import tiny_model


def test_a_wrapper_lives_where_its_module_lives():
    net = nn.Conv2d(3, 4, 3).to("meta")  # any device but the CPU, without a GPU
    assert featvis.wrap(net, normalize="imagenet").mean.device.type == "meta"


def test_wrapper_statistics_follow_the_images_when_the_module_moved_alone():
    model = featvis.wrap(nn.Identity(), normalize="imagenet")
    x = torch.rand(1, 3, 4, 4, device="meta")
    model.preprocess(x)
    assert model.mean.device.type == "meta" and model.std.device.type == "meta"


def test_render_gives_the_users_model_back_on_its_device(device):
    model = tiny_model()
    where = next(model.parameters()).device
    featvis.render(model, channel("conv2", 0), param=fourier(16), steps=2, seed=0, progress=False, device=device)
    assert next(model.parameters()).device == where and model.net.conv1.weight.requires_grad


def test_compiled_prefixes_are_keyed_by_device_precision_and_memory_format():
    keys = {accel.cache_key(("a",), True, d, p, cl)
            for d in ("cpu", "meta") for p in ("fp32", "bf16") for cl in (False, True)}
    assert len(keys) == 8


def test_constant_copies_are_keyed_by_memory_format_too():
    c = DeviceCopies(torch.rand(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous())
    nhwc = torch.rand(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert c.like(nhwc).is_contiguous(memory_format=torch.channels_last)
    assert c.like(torch.rand(2, 3, 4, 4)).is_contiguous()
    assert c.like(nhwc) is not c.like(torch.rand(2, 3, 4, 4))


def test_featvis_device_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device(None) == torch.device("cpu") and pick_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "meta")
    assert pick_device(None) == torch.device("meta")


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_the_three_samplers_warp_alike_forward_and_backward(mode, device):
    chain = T.compose(T.pad(5, mode=mode), T.jitter(3), T.random_scale([0.9, 1.1]), T.random_rotate([-10, 7]))
    x = torch.rand(3, 3, 20, 22, device=device)
    w = torch.rand(3, 3, 27, 29, device=device)  # the output: padded by 5, jittered by 3
    got = {}
    for s in ("kornia", "grid", "gather"):
        xs = x.clone().requires_grad_(True)
        with sampling(s):
            y = chain(xs, RandomSource([1, 2, 3]))
        (g,) = torch.autograd.grad((y * w).sum(), xs)
        got[s] = (y.detach(), g)
    for s in ("grid", "gather"):
        torch.testing.assert_close(got[s][0], got["kornia"][0], rtol=0, atol=2e-5)
        torch.testing.assert_close(got[s][1], got["kornia"][1], rtol=0, atol=5e-5)


def test_lrn_equals_torchs_local_response_norm():
    x = torch.randn(2, 64, 9, 11) * 30
    want = F.local_response_norm(x, LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
    torch.testing.assert_close(LRN()(x), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(LRN()(x.contiguous(memory_format=torch.channels_last)), want, rtol=1e-6, atol=1e-6)


def test_deterministic_mode_sets_and_restores_the_flags(device):
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    with accel.deterministic_mode(device, True):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        with accel.model_runner(featvis.wrap(nn.Conv2d(3, 3, 1), normalize="imagenet"), ["logits"], device, autotune=False):
            assert not torch.backends.cudnn.benchmark  # autotuning stays off inside
    with accel.deterministic_mode(device, "warn"):
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before
    with pytest.raises(ValueError, match="deterministic='yes'"):
        accel.deterministic_mode(device, "yes")


def test_an_op_without_a_deterministic_kernel_is_named_with_the_way_out():
    with pytest.raises(accel.NondeterministicError, match="grid_sampler_2d_backward_cuda.*--no-deterministic"):
        with accel.deterministic_mode(torch.device("cuda"), True):  # only flags: no GPU needed
            raise RuntimeError("grid_sampler_2d_backward_cuda does not have a deterministic implementation, "
                               "but you set 'torch.use_deterministic_algorithms(True)'")
    assert not torch.are_deterministic_algorithms_enabled()


def _render(model, graph, **kw):
    kw.setdefault("param", fourier(16, batch=2))
    return featvis.render(model, channel("conv2", [0, 3]) , steps=7, seed=0, progress=False, graph=graph, **kw)


@pytest.mark.parametrize("alpha", [False, True])
def test_the_static_buffer_step_gives_the_plain_loops_images(alpha):
    model = tiny_model()
    kw = {"param": fourier(16, batch=2, alpha=alpha)} if alpha else {}
    plain = _render(model, False, **dict(kw, param=fourier(16, batch=2, alpha=alpha)))
    static = _render(model, True, **dict(kw, param=fourier(16, batch=2, alpha=alpha)))  # graph=True off CUDA: static
    torch.testing.assert_close(static.images, plain.images, rtol=0, atol=0 if pick_device(None).type == "cpu" else 1e-5)


def test_a_transform_that_draws_by_itself_cannot_be_captured_and_runs_eagerly():
    def shaky(image, rng):  # draws outside featvis's feed
        return image + 0.01 * rng.uniform(1, device=image.device).view(-1, 1, 1, 1)

    model = tiny_model()
    plain = _render(model, False, transforms=[T.jitter(2), shaky])
    with pytest.warns(RuntimeWarning, match="shaky.*draws its own random numbers.*eagerly"):
        fallback = _render(model, True, transforms=[T.jitter(2), shaky])
    torch.testing.assert_close(fallback.images, plain.images, rtol=0, atol=0)


def test_static_feed_refills_its_buffers_in_order():
    draws = iter(range(100))
    feed = StaticFeed()
    a = feed(lambda: torch.tensor([float(next(draws))]), torch.device("cpu"))
    b = feed(lambda: torch.tensor([float(next(draws))]), torch.device("cpu"))
    feed.freeze()
    assert (a.item(), b.item()) == (0, 1)
    feed.refill()
    assert feed(None, None) is a and feed(None, None) is b and (a.item(), b.item()) == (2, 3)


def test_stepper_modes_are_checked():
    with pytest.raises(ValueError, match="mode='fast'"):
        Stepper(lambda feed: None, torch.device("cpu"), "fast")
    with pytest.raises(ValueError, match="graph='yes'"):
        featvis.render(tiny_model(), channel("conv2", 0), param=fourier(8), steps=1, progress=False, graph="yes")


def test_the_job_records_determinism_and_a_folder_of_before_it_resumes(tmp_path):
    import json

    from featvis.jobs.folder import MANIFEST
    from featvis.jobs.job import prepare
    job = prepare("toy", "conv2", channels="0:2", out=tmp_path, weights="none", steps=1, size=16, batch=2,
                  deterministic=False, graph=True)
    assert job.settings.deterministic is False and job.graph is True
    assert job.run(progress=False) == 2
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["settings"]["deterministic"] is False
    with pytest.raises(featvis.errors.UsageError, match="deterministic False -> True"):
        prepare("toy", "conv2", channels="0:2", out=tmp_path, weights="none", steps=1, size=16, batch=2)
    # A folder written before the setting existed resumes with its default (deterministic on): its
    # records (the writer's part, which the folder reads) lack the key.
    for path in (tmp_path / MANIFEST, tmp_path / "parts" / "main.json"):
        record = json.loads(path.read_text())
        del record["settings"]["deterministic"]
        path.write_text(json.dumps(record))
    assert prepare("toy", "conv2", channels="0:2", out=tmp_path, weights="none", steps=1, size=16, batch=2).pending == []


def test_bilinear_by_matmul_equals_interpolate(device):
    from featvis.param.lowres import bilinear_by_matmul
    t = torch.rand(2, 3, 5, 7, device=device)
    want = F.interpolate(t, size=(16, 21), mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear_by_matmul(t, (16, 21)), want, rtol=0, atol=1e-6)


def test_collapse_alpha_inside_the_transforms_can_be_captured():
    chain = T.compose(T.collapse_alpha(), T.jitter(2), T.blur(3))
    assert T.why_not_capturable(chain) is None
    model = tiny_model()
    kw = dict(transforms=chain)
    plain = _render(model, False, param=fourier(16, batch=2, alpha=True), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        static = _render(model, True, param=fourier(16, batch=2, alpha=True), **kw)
    torch.testing.assert_close(static.images, plain.images, rtol=0, atol=0 if pick_device(None).type == "cpu" else 1e-5)


def test_the_gpu_check_script_runs_here(device):
    """benchmarks/gpu_check.py is run once per lent GPU, with no second try: its quick form runs
    here on the suite's device (without the test suite inside it), table and job included."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--skip-tests", "--device", device.type],
                       cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| 1 |" in r.stdout and "| 2 |" in r.stdout
    assert "default (deterministic, eager):" in r.stdout and "4 PNGs, ok" in r.stdout
