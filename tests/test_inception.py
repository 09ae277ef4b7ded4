"""Lucid's InceptionV1: layers, padding, state-dict names, redirected ReLU, render."""
import pytest
import torch

import featvis
from featvis.models.inception import MIXED, InceptionV1, same_padding
from featvis.models.redirect import ReLU, relu_redirection, set_redirect
from featvis.param import fourier

MIXED_CHANNELS = {"mixed3a": 256, "mixed3b": 480, "mixed4a": 508, "mixed4b": 512, "mixed4c": 512,
                  "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return featvis.load_model("inceptionv1", weights=None, device=None)


def test_layers_at_224_have_the_graphs_channels_and_sizes(model):
    table = {info.name: info for info in featvis.layers(model, size=224)}
    for name, channels in MIXED_CHANNELS.items():
        assert table[name].channels == channels and table[name].block
        assert table[f"{name}_pre_relu"].channels == channels and not table[f"{name}_pre_relu"].block
    assert table["conv2d0"].shape == (64, 112, 112)
    assert table["conv2d2"].shape == (192, 56, 56)
    assert table["mixed3a"].shape[1:] == (28, 28)
    assert table["mixed4e"].shape[1:] == (14, 14)
    assert table["mixed5b"].shape[1:] == (7, 7)
    assert table["softmax2_pre_activation_matmul"].shape == (1008,)
    assert table["conv2d0_pre_relu_conv"].aliases == ("conv2d0_pre_relu",)
    assert sorted(n for n, i in table.items() if i.block) == sorted(MIXED_CHANNELS)


def test_module_names_are_the_canonical_state_dict_keys():
    keys = InceptionV1().state_dict().keys()
    assert len(keys) == 116  # 57 convs + 1 linear, weight and bias each
    assert {"conv2d0_pre_relu_conv.weight", "mixed3a_1x1_pre_relu_conv.weight",
            "mixed4d_5x5_bottleneck_pre_relu_conv.bias", "mixed5b_pool_reduce_pre_relu_conv.weight",
            "softmax2_pre_activation_matmul.weight"} <= set(keys)
    assert all(k.endswith(("_pre_relu_conv.weight", "_pre_relu_conv.bias")) or k.startswith("softmax2_")
               for k in keys)


@pytest.mark.parametrize("size, kernel, stride, pads", [
    (224, 7, 2, (2, 3)), (225, 7, 2, (3, 3)), (112, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (14, 3, 1, (1, 1)),
])
def test_same_padding_matches_tensorflow(size, kernel, stride, pads):
    assert same_padding(size, kernel, stride) == pads


def test_odd_input_sizes_follow_tf_same_output_sizes(model):
    acts = featvis.activations(model, torch.rand(1, 3, 97, 97), ["conv2d0", "maxpool0", "mixed5b"])
    assert acts["conv2d0"].shape[-2:] == (49, 49)  # ceil(97 / 2)
    assert acts["maxpool0"].shape[-2:] == (25, 25)
    assert acts["mixed5b"].shape[-2:] == (4, 4)


def test_pre_relu_hook_sees_the_concatenation_before_relu(model):
    acts = featvis.activations(model, torch.rand(2, 3, 64, 64), ["mixed4a_pre_relu", "mixed4a"])
    assert acts["mixed4a_pre_relu"].min() < 0
    torch.testing.assert_close(acts["mixed4a"], acts["mixed4a_pre_relu"].clamp(min=0))


def test_input_is_mapped_to_the_graphs_pixel_range(model):
    seen = {}
    h = model.net.conv2d0_pre_relu_conv.register_forward_pre_hook(lambda m, i: seen.setdefault("x", i[0]))
    try:
        featvis.activations(model, torch.tensor([0.0, 1.0]).view(1, 1, 2, 1).expand(1, 3, 2, 1), ["conv2d0"])
    finally:
        h.remove()
    assert seen["x"].min().item() == -117 and seen["x"].max().item() == 138


def test_redirected_relu_passes_gradient_that_raises_a_dead_unit():
    x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    relu = ReLU()
    relu(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(1, 2))  # an ordinary ReLU: nothing gets through
    relu.redirect = True
    x.grad = None
    (-relu(x).sum()).backward()  # minimizing -y pushes the unit up: let it through
    assert torch.equal(x.grad, torch.full((1, 2), -1.0))
    x.grad = None
    relu(x).sum().backward()  # pushing an off unit further down stays blocked
    assert torch.equal(x.grad, torch.zeros(1, 2))


def test_redirection_only_where_no_ordinary_gradient_gets_through():
    # image 0: one unit is on, so its ordinary gradient is kept; image 1: all off, so redirected.
    # With splits, the second branch of image 0 (all off) is redirected on its own.
    x = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    relu = ReLU(splits=(2, 1))
    relu.redirect = True
    (-relu(x).sum()).backward()
    assert torch.equal(x.grad, torch.tensor([[-1.0, 0.0, -1.0], [-1.0, -1.0, -1.0]]))


def test_redirected_relu_lets_a_dead_channel_of_inceptionv1_start(model):
    channel = 3
    bias = model.net.conv2d0_pre_relu_conv.bias
    old = bias[channel].item()
    bias.data[channel] = -1e4  # dead on any image
    try:
        image = torch.rand(1, 3, 32, 32, requires_grad=True)
        grads = {}
        for on in (False, True):
            set_redirect(model, on)
            image.grad = None
            with featvis.capture(model, ["conv2d0"]) as run:
                (-run(image)["conv2d0"][:, channel].mean()).backward()
            grads[on] = image.grad.clone()
        assert grads[False].abs().max() == 0
        assert grads[True].abs().max() > 0
        # a small descent step along the redirected gradient raises the unit's pre-ReLU value
        acts = lambda img: featvis.activations(model, img, ["conv2d0_pre_relu_conv"])["conv2d0_pre_relu_conv"]
        before = acts(image.detach())[:, channel].mean()
        after = acts(image.detach() - 1e-3 * grads[True] / grads[True].abs().max())[:, channel].mean()
        assert after > before
    finally:
        set_redirect(model, False)
        bias.data[channel] = old


def test_render_redirects_for_the_models_first_steps_only(model):
    flags = []
    relu = model.net.conv2d0
    h = relu.register_forward_hook(lambda m, i, o: flags.append(m.redirect and torch.is_grad_enabled()))
    try:
        model.redirect_steps = 2
        result = featvis.render(model, "mixed3b:5", param=fourier(32), steps=4, seed=0, progress=False, device=None)
    finally:
        h.remove()
        del model.redirect_steps  # back to the class default
    # the no-grad pass that finds the bare image's maps (where @x,y point), 4 steps, the final evaluation
    assert flags == [False, True, True, False, False, False]
    assert not any(m.redirect for m in model.modules() if isinstance(m, ReLU))
    assert result.images.shape == (1, 3, 32, 32) and torch.isfinite(result.values).all()


def test_render_runs_on_inceptionv1_with_default_redirection(model):
    assert model.redirect_steps == 16
    result = featvis.render(model, "mixed4a_pre_relu:476", param=fourier(40), steps=3, seed=1, progress=False,
                            device=None)
    assert result.images.shape == (1, 3, 40, 40)
    assert torch.isfinite(result.values).all()


def test_relu_redirection_turns_off_on_error(model):
    with pytest.raises(RuntimeError):
        with relu_redirection(model) as at:
            at(0)
            assert model.net.mixed4a.redirect
            raise RuntimeError("boom")
    assert not model.net.mixed4a.redirect


def test_mixed_spec_adds_up_to_listed_channels():
    for name, _, c1, _, c3, _, c5, cp in MIXED:
        assert c1 + c3 + c5 + cp == MIXED_CHANNELS[name]
