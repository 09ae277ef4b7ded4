"""topk: dataset examples per channel, streamed with bounded memory, cropped to the receptive field."""
import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis.analysis import topk as tk
from featvis.errors import UsageError
from featvis.figures.grid import figure_layout
from featvis.jobs.folder import RenderFolder

SIZE = 48


def colour_net() -> featvis.FeatvisModel:
    """conv 5x5 (3 known filters) -> ReLU -> maxpool 2 -> ``pool``: channel 0 sees red (R - G),
    channel 1 blue (B - R), channel 2 a vertical dark-to-light edge in luminance."""
    conv = nn.Conv2d(3, 3, 5, bias=False)
    with torch.no_grad():
        w = torch.zeros(3, 3, 5, 5)
        w[0, 0], w[0, 1] = 1 / 25, -1 / 25
        w[1, 2], w[1, 0] = 1 / 25, -1 / 25
        w[2, :, :, :2], w[2, :, :, 3:] = -1 / 30, 1 / 30
        conv.weight.copy_(w)
    net = nn.Sequential()
    net.add_module("conv", conv)
    net.add_module("relu", nn.ReLU())
    net.add_module("pool", nn.MaxPool2d(2))
    return featvis.wrap(net, normalize=None, name="colour_net")


def gray_noise(rng, h=SIZE, w=SIZE):
    return (rng.uniform(0.4, 0.6, (h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """12 noise images in nested folders (one not square), one with a red square, one with a blue
    square, a broken .jpg and a text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for i in range(12):
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gray_noise(rng, w=SIZE + 16 if i == 3 else SIZE)).save(sub / f"noise{i:02d}.png")
    red = gray_noise(rng)
    red[30:40, 10:20] = (255, 0, 0)
    Image.fromarray(red).save(root / "b" / "red.png")
    blue = gray_noise(rng)
    blue[4:14, 30:40] = (0, 0, 255)
    Image.fromarray(blue).save(root / "a" / "blue.jpg", quality=95)
    (root / "a" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_find_images_walks_any_depth_and_ignores_other_files(folder):
    names = [p.name for p in tk.find_images(folder)]
    assert len(names) == 15 and "notes.txt" not in names and "broken.jpg" in names
    assert names == [p.name for p in sorted(tk.find_images(folder))]


def test_topk_finds_the_built_image_first_and_skips_unreadable_files(folder):
    reported = []
    result = tk.topk(colour_net(), "pool", folder, k=3, size=SIZE, batch=4, device=None, progress=False,
                     report=lambda p, why: reported.append(p.name))
    assert reported == ["broken.jpg"] and [p.name for p, _ in result.skipped] == ["broken.jpg"]
    red, blue = result.entries(0)[0], result.entries(1)[0]
    assert red["path"].name == "red.png" and blue["path"].name == "blue.jpg"
    # the maximum's receptive field (5x5 conv, then 2x2 pool: 6x6 px) lies on the square
    left, top, right, bottom = red["box"]
    assert right - left == 6 and bottom - top == 6
    assert 10 <= left and right <= 20 and 30 <= top and bottom <= 40
    left, top, right, bottom = blue["box"]
    assert 30 <= left and right <= 40 and 4 <= top and bottom <= 14
    assert result.values[0, 0] > result.values[0, 1] >= result.values[0, 2]


def test_topk_memory_is_bounded_by_k_and_batch_not_by_the_folder(tmp_path):
    rng = np.random.default_rng(1)
    peaks = []
    for n in (10, 40):
        root = tmp_path / f"n{n}"
        root.mkdir()
        for i in range(n):
            Image.fromarray(gray_noise(rng, 16, 16)).save(root / f"{i}.png")
        result = tk.topk(colour_net(), "pool", root, k=3, size=16, batch=4, device=None, progress=False)
        assert result.values.numel() == result.images.numel() == 3 * 3  # channels x k, whatever n is
        peaks.append(result.peak_items)
    assert peaks[0] == peaks[1] == 3 * 3 * (3 + 4)  # (values, images, positions) x C x (k + batch)


def test_running_topk_matches_a_full_sort():
    torch.manual_seed(0)
    scores = torch.randint(0, 20, (50, 4)).float()  # ties on purpose
    tracker = tk.RunningTopK(4, 5)
    for start in range(0, 50, 7):
        chunk = scores[start:start + 7]
        tracker.update(chunk, torch.zeros_like(chunk, dtype=torch.long), torch.arange(start, start + len(chunk)))
    order = torch.sort(scores.T, dim=1, descending=True, stable=True).indices[:, :5]  # earlier image wins a tie
    assert torch.equal(tracker.images, order)
    assert torch.equal(tracker.values, scores.T.gather(1, order))


def test_receptive_field_of_known_layers():
    net = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))
    model = featvis.wrap(net, normalize=None)
    rf = tk.receptive_field(model, "0", size=32, device=None)
    assert rf.extent == (5, 5) and rf.stride == (1.0, 1.0) and rf.origin == (2.5, 2.5)
    rf = tk.receptive_field(model, "5", size=32, device=None)  # 5 + 2*1 + 1*2 + 2*4 = 17 px, stride 4
    assert rf.extent == (17, 17) and rf.stride == (4.0, 4.0) and rf.map_size == (6, 6)
    assert rf.box(0, 0) == (0, 0, 17, 17) and rf.box(5, 5) == (15, 15, 32, 32)


def test_channel_specs_use_the_render_syntax():
    assert tk._channel_list(None, 4) == [0, 1, 2, 3]
    assert tk._channel_list("0:3,7,1", 8) == [0, 1, 2, 7]
    assert tk._channel_list([5, 2], 8) == [2, 5]
    with pytest.raises(ValueError, match="out of range"):
        tk._channel_list("9", 8)
    with pytest.raises(ValueError, match="expected"):
        tk._channel_list("x", 8)


def test_write_topk_keeps_the_render_records_and_writes_crops(folder, tmp_path):
    out = tmp_path / "render"
    rf = RenderFolder(out)
    from featvis.models.weights import weights_digest
    with rf.lock():  # the renders' weights digest is the top-k network's: the folder takes its examples
        rf.claim({"model": "colour_net", "weights": {"spec": "none", "sha256": weights_digest(colour_net())},
                  "settings": {"size": 8}})
        sha = rf.save_image("pool/0.png", torch.zeros(3, 8, 8))
        rf.record_images("pool", {"0": {"channel": 0, "k": 0, "seed": 1, "value": 0.5, "file": "pool/0.png",
                                        "sha256": sha, "run": 0}}, sheet=False)
    result = tk.topk(colour_net(), "pool", folder, channels=[0, 1], k=2, size=SIZE, batch=8, device=None,
                     progress=False, report=lambda *a: None)
    tk.write_topk(result, out, model_name="colour_net")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {**rf.read(), "derived": manifest["derived"]}  # manifest.json is the merge of the parts
    assert manifest["featvis_manifest"] == 2 and manifest["model"] == "colour_net"
    assert list(manifest["layers"]["pool"]["images"]) == ["0"]
    entry = manifest["topk"]["pool"]
    assert set(entry["channels"]) == {"0", "1"} and entry["k"] == 2
    assert [s["path"].endswith("broken.jpg") for s in entry["skipped"]] == [True]
    first = entry["channels"]["0"][0]
    assert first["image"] == "b/red.png" and first["rank"] == 0
    crop = np.asarray(Image.open(out / first["crop"]))
    assert crop.shape == (6, 6, 3) and (crop[..., 0] > 200).mean() > 0.5 and (crop[..., 1] < 50).mean() > 0.5
    assert not [p for p in out.rglob(".*") if "fvtmp" in p.name]  # atomic writes leave nothing behind


def test_examples_sheet_puts_each_visualization_beside_its_crops(folder, tmp_path):
    out = tmp_path / "render"
    result = tk.topk(colour_net(), "pool", folder, channels=[0, 2], k=3, size=SIZE, device=None,
                     progress=False, report=lambda *a: None)
    tk.write_topk(result, out)
    Image.new("RGB", (SIZE, SIZE), (0, 128, 0)).save(out / "pool" / "0.png")  # channel 2 is "not rendered"
    sheet = tk.examples_sheet(out, cell=32, pad=4, out=tmp_path / "sheet.png")
    layout = figure_layout(2, 4, (32, 32), 4, ["pool:0", "pool:2"], ["optimized", "top 1", "top 2", "top 3"],
                           captions=True)
    assert sheet.size == layout.size == Image.open(tmp_path / "sheet.png").size
    x, y = layout.cells[0, 0]
    assert sheet.getpixel((x + 16, y + 16)) == (0, 128, 0)
    x, y = layout.cells[1, 0]
    assert sheet.getpixel((x + 16, y + 16)) == (255, 255, 255)  # no visualization: blank cell
    with pytest.raises(UsageError, match="no top-k records for layer"):
        tk.examples_sheet(out, "conv")


def test_cli_run(folder, tmp_path, capsys):
    featvis.models.register("colour_net_for_tests", "test model")(lambda weights=None: colour_net())
    parser = argparse.ArgumentParser()
    tk.add_arguments(parser)
    args = parser.parse_args(["colour_net_for_tests", "pool", "--images", str(folder), "--k", "2", "--size", str(SIZE),
                              "--out", str(tmp_path / "o"), "--device", "auto", "--quiet"])
    assert tk.run(args) == 0
    assert "14 images read, 1 skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["topk"]["pool"]["model"] == "colour_net_for_tests"
    args.layer = "nope"
    with pytest.raises(UsageError, match="no layer 'nope'"):
        tk.run(args)


def test_crop_overrides_the_receptive_field(folder):
    result = tk.topk(colour_net(), "pool", folder, channels=[0], k=1, size=SIZE, crop=4, device=None,
                     progress=False, report=lambda *a: None)
    left, top, right, bottom = result.entries(0)[0]["box"]
    assert (right - left, bottom - top) == (4, 4) and 10 <= left and right <= 20 and 30 <= top and bottom <= 40
    with pytest.raises(ValueError, match="crop"):
        tk.topk(colour_net(), "pool", folder, crop=0, device=None, progress=False, report=lambda *a: None)
