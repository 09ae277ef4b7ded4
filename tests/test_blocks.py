"""Building blocks (featvis.analysis.blocks): NMF gives back planted groups, attribution goes to the
planted class, the figures are matplotlib figures with text as text, bad input is one line."""
import numpy as np
import pytest
import torch

from featvis.analysis import blocks as B
from featvis.errors import UsageError

from .test_atlas import colour_net, pdf_text


def planted(k=3, C=12, H=10, W=10, seed=0, noise=0.0):
    """A (C, H, W) activation map made of k known channel patterns on k known spatial maps."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 1, (k, C)) * (rng.uniform(0, 1, (k, C)) > 0.5)  # sparse, non-negative
    patterns /= np.linalg.norm(patterns, axis=1, keepdims=True)
    maps = np.zeros((k, H, W))
    owner = rng.integers(0, k, (H, W))  # each position mostly one pattern, a little of the others
    for g in range(k):
        maps[g] = (owner == g) * rng.uniform(1, 2, (H, W)) + 0.1 * rng.uniform(0, 1, (H, W))
    acts = np.einsum("khw,kc->chw", maps, patterns)
    acts += noise * rng.uniform(0, 1, acts.shape)
    return acts.astype(np.float32), patterns, maps


def _match(found, truth):
    """Best cosine of each true pattern among the found ones (and whether the matching is one-to-one)."""
    f = found / np.linalg.norm(found, axis=1, keepdims=True)
    cos = truth @ f.T  # (k, k)
    return cos.max(1), len(set(cos.argmax(1))) == len(truth)


@pytest.mark.parametrize("noise, max_error", [(0.0, 0.02), (0.05, 0.1)])
def test_nmf_gives_back_planted_groups(noise, max_error):
    acts, patterns, maps = planted(noise=noise)
    f = B.factorize(acts, 3)
    best, one_to_one = _match(f.groups, patterns)
    print(f"noise {noise}: reconstruction error {f.error:.4f}, cosines to the planted patterns {np.round(best, 3)}")
    assert f.error <= max_error and f.clipped == 0
    assert one_to_one and best.min() > 0.95
    assert np.allclose(np.linalg.norm(f.groups, axis=1), 1, atol=1e-5)
    # the spatial maps follow the planted ones
    for g, j in enumerate((patterns @ (f.groups / np.linalg.norm(f.groups, axis=1, keepdims=True)).T).argmax(1)):
        assert np.corrcoef(maps[g].ravel(), f.maps[j].ravel())[0, 1] > 0.9
    # too few groups: the error says so
    assert B.factorize(acts, 1).error > 0.3
    # negative values are clipped and counted
    assert B.factorize(acts - 0.2, 3).clipped > 0
    with pytest.raises(UsageError, match="give 1 to"):
        B.factorize(acts, 13)


def test_blocks_attribute_the_planted_class(tmp_path):
    """A photo red on the left, blue on the right: two groups (red, blue), each on its own half,
    and the red logit is attributed to the red group, the blue logit to the blue one."""
    model = colour_net()
    img = torch.zeros(3, 32, 32)
    img[0, :, :16] = 1
    img[2, :, 16:] = 1
    res = B.blocks(model, img, "relu", groups=2, size=32, render_size=16, steps=4, top_classes=2, progress=False,
                   labels=["red", "blue"])
    assert res.factors.error < 0.01
    red_g = int(np.argmax(res.factors.groups[:, 0]))
    blue_g = 1 - red_g
    assert res.factors.groups[blue_g, 2] > 0.5
    assert res.factors.maps[red_g][:, :16].min() > 0.5 and res.factors.maps[red_g][:, 16:].max() < 1e-3
    j_red, j_blue = res.class_names.index("red"), res.class_names.index("blue")
    assert res.attribution[red_g, j_red] > 0.4 and abs(res.attribution[blue_g, j_red]) < 1e-3
    assert res.attribution[blue_g, j_blue] > 0.4 and abs(res.attribution[red_g, j_blue]) < 1e-3
    # the attributions add up to the logit's gradient x activation (the layer is linear in front of the logits)
    assert res.attribution[:, j_red].sum() == pytest.approx(res.logits[j_red], rel=0.02)
    fig = res.figure(title="Blocks of a planted photo")
    assert fig.__class__.__name__ == "Figure"
    from featvis.figures.mpl import save
    save(fig, tmp_path / "b.svg")
    res.save(tmp_path / "b.pdf")
    svg = (tmp_path / "b.svg").read_text()
    assert ">Blocks of a planted photo</text>" in svg and ">group strength</text>" in svg and ">red</text>" in svg
    assert "2 neuron groups (NMF, reconstruction error 0.00)" in pdf_text(tmp_path / "b.pdf")
    d = B.semantic_dictionary(model, img, "relu", positions=2, top=2, size=32, render_size=16, steps=2, progress=False)
    assert {d.channels[0][0], d.channels[1][0]} <= {0, 2, 3, 4, 5}
    for (r, c), chans in zip(d.positions, d.channels):
        assert chans[0] == (0 if c < 16 else 2) or d.values[0][0] == d.values[0][1]
    d.save(tmp_path / "d.svg")
    assert "semantic dictionary" in (tmp_path / "d.svg").read_text()


def _cli(args, capsys):
    from featvis.cli import main
    code = main(args)
    return code, capsys.readouterr()


@pytest.mark.parametrize("layer, extra, match", [
    ("fc", [], "no spatial map"),
    ("conv2", ["--groups", "999"], "give at most"),
    ("conv2", ["--image-missing"], "no such file"),
    ("conv2", ["--out-gif"], "end the name with one of them"),
])
def test_bad_input_is_one_line(tmp_path, capsys, layer, extra, match):
    from PIL import Image
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(photo)
    out = tmp_path / ("b.gif" if "--out-gif" in extra else "b.pdf")
    if "--image-missing" in extra:
        photo = tmp_path / "missing.png"
    extra = [e for e in extra if not e.startswith("--image-") and not e.startswith("--out-")]
    code, cap = _cli(["blocks", "toy", str(photo), "--layer", layer, "--out", str(out), "--steps", "2", "--size", "32",
                      "--quiet", *extra], capsys)
    assert code == 2 and len(cap.err.strip().splitlines()) == 1 and match in cap.err, cap.err
    assert not out.exists()


def test_command_writes_both_figures(tmp_path, capsys):
    from PIL import Image
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(photo)
    code, cap = _cli(["blocks", "toy", str(photo), "--layer", "conv2", "--groups", "2", "--out", str(tmp_path / "b.png"),
                      "--dictionary", str(tmp_path / "d.pdf"), "--steps", "2", "--size", "32", "--render-size", "16",
                      "--quiet"], capsys)
    assert code == 0, cap.err
    assert (tmp_path / "b.png").stat().st_size > 0 and "NMF reconstruction error" in cap.out
    assert "semantic dictionary" in pdf_text(tmp_path / "d.pdf")
