"""``featvis faithfulness DIR``: is each rendered unit processed like its own dataset examples?

For every channel of a render folder that has both visualizations (``featvis render``) and top-k
dataset examples (``featvis topk``), :func:`featvis.metrics.faithfulness_matrix` scores each
visualization against its own channel's examples ("own") and against every other recorded
channel's examples of the layer ("others", their mean; "rank", 1 when its own examples are the
closest). Scores are only comparable with each other, which is why the others are there: a
visualization that the network processes more like some other unit's photos than like its own
reached its unit another way (Geirhos et al. 2023). The examples are the whole source images of
``featvis topk`` (resized and centre-cropped as it read them), or its saved crops where a source
image is no longer readable. Nothing in DIR is written; ``--json FILE`` saves the numbers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UsageError, device_argument
from ..jobs.folder import MANIFEST, RenderFolder


def add_arguments(p) -> None:
    p.add_argument("dir", metavar="DIR", help="a render folder with renders and top-k records (featvis topk ... --out DIR)")
    p.add_argument("--layer", help="only this layer (default: every layer with both)")
    p.add_argument("--weights", default=None, metavar="default|none|PATH",
                   help="the network's weights (default: those the renders were made with)")
    device_argument(p)
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE")


def _examples(folder: RenderFolder, section: dict, records: List[dict]):
    """(k, 3, S, S) in [0, 1]: a channel's top-k images read as ``featvis topk`` read them; the
    crop kept in the folder where the source image is gone (the dataset moved)."""
    import torch

    from .topk import load_image
    root, size = Path(section.get("images", "")), int(section["size"])
    sources = [Path(r["image"]) if Path(r["image"]).is_absolute() else root / r["image"] for r in records]
    # A source image is read through the bounded loader (regular file, bounded pixels); the saved
    # crop through the folder's opener (contained, no symlink).
    return torch.stack([load_image(src if src.is_file() else folder.load_image(r["crop"], f"a top-k crop of {r['crop']}"),
                                   size) for src, r in zip(sources, records)])


def folder_scores(path, layer: Optional[str] = None, weights: Optional[str] = None, device="auto") -> Dict[str, dict]:
    """``{layer: {"channels": {c: {"images": {name: {"own", "others", "rank"}}}}, "compared": n}}``
    for the render folder at ``path`` (see the module docstring). Raises :class:`UsageError` when
    the folder has no layer with both renders and top-k records."""
    import torch

    from ..models import pick_device
    from ..models.open import open_model
    from ..objectives import channel
    from ..param import image_tensor
    from .metrics import faithfulness_matrix

    folder = RenderFolder(path)
    data = folder.read()
    if not data:
        raise UsageError(f"{folder.root} has no {MANIFEST}; render into it first (featvis render MODEL LAYER --out {path})")
    rendered = {n: sec for n, sec in data.get("layers", {}).items() if sec.get("images")}
    examples = data.get("topk", {})
    both = [n for n in rendered if n in examples and examples[n].get("channels")]
    if layer is not None:
        if layer not in both:
            raise UsageError(f"layer {layer!r} of {folder.root} has no renders and top-k records together "
                             f"(both: {', '.join(both) or 'none'}); run featvis topk MODEL {layer} --images DIR --out {path}")
        both = [layer]
    if not both:
        raise UsageError(f"{folder.root} has no layer with both renders and top-k dataset examples; "
                         f"run featvis topk MODEL LAYER --images DIR --out {path} for a rendered layer")
    from ..jobs.folder.records import made_by_differences
    renders_by = {"model": data.get("model"), "weights": data.get("weights") or {}}
    for name in both:  # pair only what one network made (records older than made_by are taken as they are)
        diffs = made_by_differences(renders_by, examples[name].get("made_by") or {})
        if diffs:
            raise UsageError(f"{folder.root}: the top-k examples of {name} were chosen by another network than its "
                             f"renders ({'; '.join(diffs)}); run featvis topk again with the renders' model and weights")
    spec = weights or (data.get("weights") or {}).get("spec") or "default"
    dev = pick_device(device)
    model = open_model(data["model"], spec, dev, int((data.get("settings") or {}).get("seed", 0)))
    out = {}
    for name in both:
        section = examples[name]
        chans = sorted(int(c) for c, recs in section["channels"].items() if recs)
        images = {k: rec for k, rec in rendered[name]["images"].items() if int(k.split("_")[0]) in chans}
        if not images:
            continue
        sets = [_examples(folder, section, section["channels"][str(c)]) for c in chans]
        keys = sorted(images, key=lambda k: tuple(map(int, k.split("_"))))
        pics = []
        for k in keys:
            pics.append(image_tensor(folder.load_image(images[k]["file"], f"{name}:{k}").convert("RGB"))[0])
        scores = faithfulness_matrix(model, channel(name, chans[0]), torch.stack(pics), sets)  # (images, channels)
        result: Dict[str, dict] = {}
        for i, k in enumerate(keys):
            j = chans.index(int(k.split("_")[0]))
            own, row = float(scores[i, j]), scores[i]
            others = [float(v) for jj, v in enumerate(row) if jj != j]
            entry = {"own": own, "others": sum(others) / len(others) if others else None,
                     "rank": 1 + sum(v > own for v in others)}
            result.setdefault(k.split("_")[0], {"images": {}})["images"][k] = entry
        out[name] = {"channels": result, "compared": len(chans)}
    return out


def run(args) -> int:
    scores = folder_scores(args.dir, args.layer, args.weights, args.device)
    for name, sec in scores.items():
        n = sec["compared"]
        print(f"{name}: each visualization against its own channel's top-k examples and the other {n - 1} channels'")
        print(f"  {'image':>8}  {'own':>6}  {'others':>6}  rank")
        rows = [e for c in sec["channels"].values() for e in c["images"].items()]
        for k, e in rows:
            others = "-" if e["others"] is None else f"{e['others']:.3f}"
            print(f"  {k:>8}  {e['own']:6.3f}  {others:>6}  {e['rank']}/{n}")
        own = [e["own"] for _, e in rows]
        firsts = sum(e["rank"] == 1 for _, e in rows)
        print(f"  mean own {sum(own) / len(own):.3f}; closest to its own examples: {firsts}/{len(rows)}")
    if args.json:
        from ..io import atomic_write
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(scores, indent=1)))
        print(f"scores -> {args.json}", file=sys.stderr)
    return 0
