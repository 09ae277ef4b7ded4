"""The sheets of a render folder: ``featvis sheet DIR`` (a layer's contact sheet, PNG or PDF) and
:func:`examples_sheet` (each render beside its top-k dataset examples, as ``featvis topk`` recorded them).

A layer's own ``<layer>_sheet.png`` is a derived file of the folder (:mod:`featvis.jobs.folder`),
rebuilt under the folder lock when stale; a sheet written elsewhere (``--out``) is the user's file.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from PIL import Image

from ..errors import UsageError
from ..figures.grid import figure
from ..io import PathLike
from .folder import MANIFEST, RenderFolder


def sheet_command(args) -> int:
    """``featvis sheet DIR``: rebuild a layer's contact sheet (PNG or PDF), or with ``--with-examples``
    its renders beside their dataset examples."""
    folder = RenderFolder(args.dir)
    if not Path(args.dir).is_dir():
        raise UsageError(f"{args.dir} is not a folder; give a folder written by featvis render")
    manifest = folder.read()
    if manifest is None:
        raise UsageError(f"{args.dir} has no {Path(args.dir) / 'manifest.json'}; give a folder written by featvis render")
    layers = list(manifest["layers"])
    if args.layer is not None and args.layer not in layers and not (args.with_examples and args.layer in manifest["topk"]):
        raise UsageError(f"{args.dir} has no renders of layer {args.layer!r}; it has: {', '.join(layers) or 'none'}")
    chosen = [args.layer] if args.layer else (layers if not args.with_examples else list(manifest["topk"]) or layers)
    if args.out and len(chosen) > 1:
        raise UsageError(f"{args.dir} holds {len(chosen)} layers ({', '.join(chosen)}); with --out, pick one with --layer")
    if args.out and Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--out {args.out}: the sheet is written as .png, .pdf or .svg; end the name with one of them")
    if args.cols is not None and args.cols < 1:
        raise UsageError(f"--cols {args.cols}: must be at least 1")
    if args.cell is not None and not 8 <= args.cell <= 4096:
        raise UsageError(f"--cell {args.cell}: give a cell size in pixels between 8 and 4096")
    if args.with_examples:
        return _examples_sheet(folder, manifest, chosen, args)
    for layer in chosen:
        missing = [(name, e["file"]) for name, e in manifest["layers"][layer]["images"].items() if not folder.image_ok(e)]
        if missing:
            name, file = missing[0]
            raise UsageError(f"{Path(args.dir) / file} ({layer}:{name.split('_')[0]}) is missing or changed since it "
                             "was rendered (truncated or replaced?); re-run the featvis render command to redo it")
    if args.out and Path(args.out).suffix.lower() in (".pdf", ".svg"):
        return _vector_sheet(folder, manifest, chosen[0], args)
    for layer in chosen:
        if args.out or args.cols or not args.labels or args.cell or not args.title or not folder.part_names():
            path = folder.write_sheet(layer, manifest, cols=args.cols, labels=args.labels, path=args.out,
                                      cell=args.cell, title=args.title)
        else:  # the folder's own sheet: a derived file, rebuilt under the folder lock when stale
            folder.merge(sheets=[layer])
            path = folder.root / folder.sheet_rel(layer)
        print(path if path else f"{layer}: no images yet")
    return 0


def _vector_sheet(folder, manifest: dict, layer: str, args) -> int:
    """A PDF or SVG sheet drawn with matplotlib (:func:`featvis.figures.mpl.sheet_figure`): its
    title and labels are text, the user's rcParams apply."""
    import math

    from ..figures.mpl import pyplot_free, save, sheet_figure
    from .folder import sheet_title
    pyplot_free()
    entries = list(manifest["layers"][layer]["images"].items())
    if not entries:
        raise UsageError(f"{args.dir} has no images of layer {layer!r} yet")
    K = int((manifest.get("settings") or {}).get("diversity", 1))
    cols = args.cols or (K if K > 1 else math.ceil(math.sqrt(len(entries))))
    fig = sheet_figure([folder.path(e["file"]) for _, e in entries], labels=[n for n, _ in entries] if args.labels else None,
                       cols=cols, title=sheet_title(manifest, layer) if args.title else None)
    print(save(fig, args.out))
    return 0


def _examples_sheet(folder, manifest: dict, layers: List[str], args) -> int:
    recorded = manifest.get("topk", {})
    for layer in layers:
        if layer not in recorded:
            raise UsageError(f"{args.dir} has no dataset examples of layer {layer!r}; run "
                             f"featvis topk MODEL {layer} --images DIR --out {args.dir} first")
        out = Path(args.out) if args.out else folder.path(f"{layer}_examples.png")
        examples_sheet(folder.root, layer, out=out)
        print(out)
    return 0


def examples_sheet(render_dir: PathLike, layer: Optional[str] = None, channels: Optional[Sequence[int]] = None,
                   k: Optional[int] = None, cell: int = 128, values: bool = True, out: Optional[PathLike] = None,
                   **figure_kwargs) -> Image.Image:
    """Each channel's visualization beside its top-k dataset crops, one row per channel (like OpenAI
    Microscope), from a render directory that :func:`write_topk` has written into.

    The visualization of channel c is ``<render_dir>/<layer>/<c>.png`` (left blank, captioned "not
    rendered", when missing). ``layer`` may be omitted when the manifest has top-k records for
    one layer only; ``channels`` defaults to all recorded ones, ``k`` to all recorded crops.
    ``values`` captions each crop with its activation. Other keyword arguments go to
    :func:`featvis.figures.figure` (``dpi``, ``size_in``, ``background``...); ``out`` writes PNG or PDF.
    """
    folder = RenderFolder(render_dir)
    render_dir = folder.root
    records = (folder.read() or {}).get("topk", {})
    if not records:
        raise UsageError(f"{render_dir / MANIFEST} has no top-k records; run first: "
                         f"featvis topk MODEL LAYER --images DIR --out {render_dir}")
    if layer is None:
        if len(records) > 1:
            raise UsageError(f"{render_dir} has top-k records for several layers ({', '.join(records)}); name one")
        layer = next(iter(records))
    if layer not in records:
        raise UsageError(f"no top-k records for layer {layer!r} in {render_dir / MANIFEST} (it has: {', '.join(records)})")
    entry = records[layer]
    chans = [str(c) for c in channels] if channels is not None else list(entry["channels"])
    missing = [c for c in chans if c not in entry["channels"]]
    if missing:
        raise UsageError(f"channel {missing[0]} of {layer!r} has no top-k records in {render_dir / MANIFEST}")
    k = k or max((len(entry["channels"][c]) for c in chans), default=0)
    rows, captions = [], []
    for c in chans:
        vis = folder.path(folder.image_rel(layer, c))
        there = vis.exists() or vis.is_symlink()
        row = [folder.load_image(folder.image_rel(layer, c), f"{layer}:{c}") if there else None]
        caps = ["" if there else "not rendered"]
        for rec in entry["channels"][c][:k]:
            row.append(folder.load_image(rec["crop"], f"a top-k crop of {layer}:{c}"))
            caps.append(f"{rec['value']:.3g}" if values else "")
        rows.append(row)
        captions.append(caps)
    col_titles = ["optimized"] + [f"top {i + 1}" for i in range(k)]
    return figure(rows, row_titles=[f"{layer}:{c}" for c in chans], col_titles=col_titles,
                  captions=captions if values else None, cell=cell, out=out, **figure_kwargs)
