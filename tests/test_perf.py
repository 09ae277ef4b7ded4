"""The render loop does no work the objective does not need, and its speed-ups change no result."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis import accel
from featvis import transforms as T
from featvis.hooks import capture
from featvis.objectives import channel, objective, total_variation
from featvis.param import fourier, pixel
from featvis.render import CPU_BATCH, auto_batch, batch_for_memory
from featvis.rng import RandomSource
from featvis.transforms.geometric import Geometric, chain_matrix


class Counting(nn.Module):
    """Identity that counts its calls (to see whether a layer ran)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, stride=2),
                         nn.ReLU(), nn.Conv2d(8, 6, 3), Counting(), nn.Conv2d(6, 4, 1))


def render_tiny(model, obj, **kw):
    kw.setdefault("param", fourier(16, batch=2))
    return featvis.render(model, obj, steps=kw.pop("steps", 3), seed=0, progress=False, **kw)


def probe(layer, seen):
    """channel(layer, 0), which also records the model's state while the loop runs."""
    @objective([layer], f"probe({layer})")
    def fn(acts):
        seen.append(acts)
        return acts[layer][:, 0].flatten(1).mean(1)
    return fn


def test_hooks_only_on_the_modules_read_and_none_left_after():
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    hooked = []

    @objective(["2"], "probe")
    def fn(acts):
        hooked.append(sorted(name for name, m in model.net.named_modules() if m._forward_hooks))
        return acts["2"].mean((1, 2, 3))

    render_tiny(model, fn + 0.1 * total_variation())
    assert hooked and all(h == ["2"] for h in hooked)
    assert not any(m._forward_hooks for m in model.modules())


def test_forward_stops_after_the_last_layer_read():
    net = tiny_net()
    model = featvis.wrap(net, normalize="imagenet")
    render_tiny(model, channel("4", 0), steps=3)
    assert net[5].calls == 0  # runs after layer "4": never called
    render_tiny(model, channel("5", 0), steps=3)
    assert net[5].calls == 1 + 3 + 1  # the pass that binds the bare maps, each step, and the final evaluation


def test_weights_get_no_gradient_and_their_flags_come_back():
    net = tiny_net()
    model = featvis.wrap(net, normalize="imagenet")
    flags = []

    @objective(["2"], "probe")
    def fn(acts):
        flags.append([p.requires_grad for p in net.parameters()])
        return acts["2"].mean((1, 2, 3))

    render_tiny(model, fn)
    assert flags and not any(any(f) for f in flags)
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())  # as before render()


def test_a_chain_draws_one_block_equal_to_one_draw_per_transform():
    """The fused chain's single block of draws gives the matrices of separate per-transform draws."""
    chain = T.standard().transforms
    unknown = [_Undeclared(t) for t in chain]  # no `draws`: the chain falls back to one draw per transform
    seeds = [3, 1, 4, 1, 5]
    fused, size = chain_matrix(chain, RandomSource(seeds), 5, (20, 24))
    single, size2 = chain_matrix(unknown, RandomSource(seeds), 5, (20, 24))
    assert size == size2 == (32, 36)
    np.testing.assert_array_equal(fused, single)


class _Undeclared(Geometric):
    def __init__(self, inner):
        self.inner, self.label = inner, repr(inner)

    def matrices(self, rng, B, size, device=None):
        return self.inner.matrices(rng, B, size, device)


def test_uniform_of_a_sum_is_the_draws_side_by_side():
    a, b = RandomSource([7, 8]), RandomSource([7, 8])
    torch.testing.assert_close(a.uniform(6), torch.cat([b.uniform(2), b.uniform(1), b.uniform(3)], 1), rtol=0, atol=0)


def test_each_image_of_a_batch_is_transformed_as_if_alone():
    x = torch.rand(3, 3, 20, 20)
    seeds = [11, 22, 33]
    batch = T.standard()(x, RandomSource(seeds))
    for i, s in enumerate(seeds):
        alone = T.standard()(x[i:i + 1], RandomSource([s]))
        torch.testing.assert_close(batch[i:i + 1], alone, rtol=0, atol=1e-6)


def _old_matrices(chain, rng, B, size):
    """The matrices as featvis built them before the CPU/NumPy rewrite: float32 torch ops, one
    draw per transform."""
    M = None
    for t in chain:
        H, W = size
        if isinstance(t, T.geometric.Pad):
            Mi = torch.eye(3).repeat(B, 1, 1)
            Mi[:, :2, 2] = float(t.w)
            size = (H + 2 * t.w, W + 2 * t.w)
        elif isinstance(t, T.geometric.Jitter):
            o = (rng.uniform(2) * (t.d + 1)).floor().clamp_(max=t.d)
            Mi = torch.eye(3).repeat(B, 1, 1)
            Mi[:, :2, 2] = -o
            size = (H - t.d, W - t.d)
        else:
            values = torch.tensor(t.scales if hasattr(t, "scales") else t.angles, dtype=torch.float32)
            u = rng.uniform(1)[:, 0]
            v = values[(u * len(values)).long().clamp_(max=len(values) - 1)]
            if hasattr(t, "scales"):
                A = torch.diag_embed(torch.stack([v, v], 1))
            else:
                th = v * (np.pi / 180)
                A = torch.stack([torch.stack([th.cos(), th.sin()], -1), torch.stack([-th.sin(), th.cos()], -1)], -2)
            c = torch.tensor([(W - 1) / 2, (H - 1) / 2])
            Mi = torch.eye(3).repeat(B, 1, 1)
            Mi[:, :2, :2] = A
            Mi[:, :2, 2] = c - A @ c
        M = Mi if M is None else Mi @ M
    return M, size


def test_warp_matrices_equal_the_earlier_float32_construction():
    chain = T.standard().transforms + [T.random_scale([0.5, 2.0]), T.random_rotate([-45, 90])]
    new, size = chain_matrix(chain, RandomSource([1, 2, 3, 4]), 4, (30, 26))
    old, size_old = _old_matrices(chain, RandomSource([1, 2, 3, 4]), 4, (30, 26))
    assert size == size_old
    np.testing.assert_allclose(new, old.double().numpy(), rtol=0, atol=1e-4)  # float32 rounding of ~30 px


def test_truncated_graph_computes_what_the_hooked_model_computes():
    model = featvis.wrap(tiny_net(), normalize="imagenet")  # ReLU(inplace) right after layer "0": the cut must copy it
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    prefix = accel.truncate(model, ["0", "2"])
    got = prefix(x)
    (gx,) = torch.autograd.grad(got["2"].sum() + got["0"].sum(), x)
    with capture(model, ["0", "2"]) as run:
        want = run(x)
    (wx,) = torch.autograd.grad(want["2"].sum() + want["0"].sum(), x)
    for k in ("0", "2"):
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    torch.testing.assert_close(gx, wx)
    assert "net_2" in prefix.code and "net_3" not in prefix.code  # nothing after layer "2"


def test_channels_last_does_not_change_the_images(monkeypatch, device):
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    results = {}
    for device_says in (True, False):
        monkeypatch.setitem(accel.CHANNELS_LAST, device.type, device_says)
        seen = []
        results[device_says] = render_tiny(model, probe("4", seen) + channel("4", [0, 1])).images
        assert all(a["4"].is_contiguous(memory_format=torch.channels_last) == device_says for a in seen)
        assert all(p.is_contiguous() for p in model.parameters())  # put back after the render
    torch.testing.assert_close(results[True], results[False], rtol=0, atol=1e-5)


def test_compiled_model_gives_the_plain_models_images_and_compiles_once(monkeypatch):
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    plain = render_tiny(model, channel("4", [0, 1]))
    calls, real_compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(kw) or real_compile(m, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback may happen here
        compiled = render_tiny(model, channel("4", [0, 1]), compile="eager")  # dynamo only: fast
        again = render_tiny(model, channel("4", [0, 1]), compile="eager")
    torch.testing.assert_close(compiled.images, plain.images, rtol=0, atol=1e-6)
    torch.testing.assert_close(again.images, plain.images, rtol=0, atol=1e-6)
    assert calls == [{"dynamic": False, "backend": "eager"}]  # the second render reused the first's


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    plain = render_tiny(model, channel("4", [0, 1]))

    def broken_compile(module, **kwargs):
        def run(*args):
            raise RuntimeError("simulated compiler failure")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="simulated compiler failure.*uncompiled"):
        fallback = render_tiny(model, channel("4", [0, 1]), compile=True)
    torch.testing.assert_close(fallback.images, plain.images, rtol=0, atol=0)


class _FailsBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("simulated failure compiling the backward")


def test_compile_failure_in_the_backward_also_falls_back(monkeypatch):
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    plain = render_tiny(model, channel("4", [0, 1]))

    def compile_with_broken_backward(module, **kwargs):
        return lambda x: {k: _FailsBackward.apply(v) for k, v in module(x).items()}

    monkeypatch.setattr(torch, "compile", compile_with_broken_backward)
    with pytest.warns(RuntimeWarning, match="backward.*uncompiled"):
        fallback = render_tiny(model, channel("4", [0, 1]), compile=True)
    torch.testing.assert_close(fallback.images, plain.images, rtol=0, atol=0)


def test_a_channels_last_model_stays_channels_last(monkeypatch, device):
    monkeypatch.setitem(accel.CHANNELS_LAST, device.type, True)
    model = featvis.wrap(tiny_net(), normalize="imagenet").to(memory_format=torch.channels_last)
    render_tiny(model, channel("4", 0))
    assert model.net[0].weight.is_contiguous(memory_format=torch.channels_last)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.mean() > 2:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.conv(x)


def test_untraceable_model_warns_and_renders_plain():
    model = featvis.wrap(Branchy(), normalize="imagenet")
    with pytest.warns(RuntimeWarning, match="could not trace"):
        result = render_tiny(model, channel("conv", 1), compile=True)
    torch.testing.assert_close(result.images, render_tiny(model, channel("conv", 1)).images, rtol=0, atol=0)


def test_precision_is_checked_before_any_work():
    with pytest.raises(ValueError, match="precision='fp64'.*fp32, bf16, fp16"):
        render_tiny(featvis.wrap(tiny_net(), normalize="imagenet"), channel("4", 0), precision="fp64")


def test_cuda_only_settings_leave_the_cpu_alone():
    before = torch.backends.cudnn.benchmark
    with accel.cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before
    with accel.cudnn_autotune(torch.device("cuda")):  # only flips the flag; needs no GPU
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before


def test_auto_batch_on_cpu_is_the_default_within_bounds():
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    assert auto_batch(model, "4", 32, device="cpu") == CPU_BATCH
    assert auto_batch(model, "4", 32, device="cpu", max_batch=4) == 4


def test_batch_for_memory_is_linear_and_bounded():
    # 100 MB fixed + 10 MB per image: 1 GB fits 90 images.
    mb = 1e6
    assert batch_for_memory(1000 * mb, 110 * mb, 120 * mb, 256) == 90
    assert batch_for_memory(1000 * mb, 110 * mb, 120 * mb, 32) == 32
    assert batch_for_memory(50 * mb, 110 * mb, 120 * mb, 256) == 1  # never below one
    assert batch_for_memory(1000 * mb, 110 * mb, 110 * mb, 256) == 256  # no growth measured: the cap


def test_pixel_param_and_custom_transforms_still_render():
    model = featvis.wrap(tiny_net(), normalize="imagenet")
    r = render_tiny(model, channel("4", [1, 0]), param=pixel(14, 12, batch=2),
                    transforms=[T.pad(3, mode="reflect"), T.jitter(2), T.random_rotate([30]), T.random_scale([1.2])])
    assert r.images.shape == (2, 3, 12, 14) and torch.isfinite(r.images).all()
