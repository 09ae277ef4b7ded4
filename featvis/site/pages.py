"""The site's pages: Jinja2 templates (``featvis/site/templates/``) filled from the collected records.

Every value reaches a page through a template with autoescaping on: a model, layer, setting or
file name from a render folder is text, never markup. The functions here only choose what to show.
"""
from __future__ import annotations

import functools
import shlex
from typing import Dict, List, Optional, Tuple

from .. import __version__
from .collect import Layer, Model, RenderSet, Unit, published_path


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2
    return jinja2.Environment(loader=jinja2.PackageLoader("featvis.site", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _page(template: str, title: str, depth: int, crumbs=(), **context) -> str:
    return _environment().get_template(template).render(
        version=__version__, title=title, up="../" * depth, crumbs=list(crumbs), main_class="", **context)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _settings_line(s: dict) -> str:
    if not s:
        return "–"
    keys = [("size", "px"), ("steps", " steps"), ("lr", " lr"), ("param", ""), ("seed", "")]
    bits = [f"preset {s['preset']}"] if s.get("preset") else []
    bits += [f"{s[k]}{unit}" if k != "seed" else f"seed {s[k]}" for k, unit in keys if k in s]
    if s.get("diversity", 1) > 1:
        bits.append(f"diversity {s['diversity']}")
    if s.get("neurons"):
        bits.append("neurons")
    if s.get("device"):
        bits.append(str(s["device"]) + (f" ({s['threads']} threads)" if s.get("threads") else ""))
    return ", ".join(bits)


def _weights_label(w: dict) -> str:
    if not w:
        return "weights: not recorded"
    sha = (w.get("sha256") or "")[:12]
    return f"weights {published_path(w.get('spec', '?'))} · sha256 {sha}"


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def reproduce_command(rs: RenderSet, layer: str, channel: int) -> str:
    """The ``featvis render`` command that makes this unit's images of ``rs`` again (every setting
    spelled out, so that a change of defaults cannot change it)."""
    s, f = rs.folder.settings, rs.folder
    argv = ["featvis", "render", f.model, layer, "--channels", str(channel)]
    if s.get("neurons"):
        argv.append("--neurons")
    if s.get("preset"):  # the preset chooses the param (and the transforms no other flag names)
        argv += ["--preset", str(s["preset"])]
    for key, opt in (("size", "--size"), ("steps", "--steps"), ("lr", "--lr"), ("param", "--param"),
                     ("diversity", "--diversity"), ("seed", "--seed")):
        if key == "param" and s.get("preset"):
            continue
        if key in s:
            argv += [opt, f"{s[key]:g}" if isinstance(s[key], float) else str(s[key])]
        if key == "diversity" and int(s.get("diversity", 1)) > 1 and "diversity_weight" in s:
            argv += ["--diversity-weight", f"{s['diversity_weight']:g}"]
    if s.get("deterministic") is False:  # on by default; a folder made without it says so
        argv.append("--no-deterministic")
    if f.weights.get("spec"):
        argv += ["--weights", published_path(str(f.weights["spec"]))]
    if s.get("device"):
        argv += ["--device", str(s["device"])]
    if s.get("threads"):  # on the CPU the thread count changes the pixels
        argv += ["--threads", str(s["threads"])]
    argv += ["--out", rs.given]
    # a model registered by a plugin needs the plugin again (a path/to/file.py:build model names its file itself)
    env = [f"FEATVIS_PLUGINS={','.join(f.plugins)}"] if f.plugins else []
    return " ".join(shlex.quote(a) for a in env + argv)


def index_page(models: Dict[str, Model]) -> str:
    rows = []
    for m in models.values():
        layers = []
        for la in m.layers.values():
            rendered = sum(1 for u in la.units.values() if u.images)
            layers.append(dict(
                name=la.name, slug=la.slug, channels=_fmt(la.channels), rendered=rendered,
                pct=f" ({100 * rendered / la.channels:.0f}%)" if la.channels else "",
                with_examples=sum(1 for u in la.units.values() if u.examples),
                with_circuits=sum(1 for u in la.units.values() if u.circuit),
                settings=[_settings_line(rs.folder.settings) for rs in la.renders],
                versions=", ".join(sorted({rs.folder.versions.get("featvis", "?") for rs in la.renders})) or "–"))
        rows.append(dict(name=m.name, slug=m.slug, weights=_weights_label(m.weights), layers=layers))
    return _page("index.html", "Feature atlas", 0, models=rows,
                 n_layers=sum(len(m.layers) for m in models.values()),
                 n_units=sum(len(la.units) for m in models.values() for la in m.layers.values()))


def model_page(model: Model) -> str:
    layers = []
    for la in model.layers.values():
        renders = [dict(kind=rs.kind, objective=rs.objective or "–", settings=_settings_line(rs.folder.settings),
                        featvis=rs.folder.versions.get("featvis", "?"), torch=rs.folder.versions.get("torch", "?"),
                        device=rs.folder.versions.get("device", "?"), given=rs.given) for rs in la.renders]
        topk = [dict(k=_fmt(t.get("k")), images=str(t.get("images")), size=_fmt(t.get("size")), score=str(t.get("score")))
                for t in la.topk]
        layers.append(dict(name=la.name, slug=la.slug, channels=_fmt(la.channels), units=len(la.units),
                           rendered=sum(1 for u in la.units.values() if u.images), renders=renders, topk=topk))
    return _page("model.html", f"{model.name} · feature atlas", 1, [("atlas", "../index.html"), (model.name, None)],
                 name=model.name, weights=_weights_label(model.weights), folders=", ".join(model.folders), layers=layers)


def _unit_value(unit: Unit) -> Optional[float]:
    return unit.primary.value if unit.primary is not None else None


#: The query level the site shows and sorts by (featvis.analysis.score.LEVELS): the hardest, where
#: natural exemplars are not at ceiling, so that recipes and units differ.
SCORE_LEVEL = "hard"


def _score_of(unit: Unit, kind: str) -> Optional[float]:
    v = ((unit.score or {}).get(kind) or {}).get(SCORE_LEVEL)
    return float(v[0]) if v else None


def layer_page(model: Model, layer: Layer, thumbs: Dict[int, Tuple[str, Tuple[int, int]]]) -> str:
    units = []
    for c, unit in layer.units.items():
        v = _unit_value(unit)
        s, n = _score_of(unit, "featvis"), _score_of(unit, "natural")
        src, (w, h) = thumbs.get(c, (None, (0, 0)))
        units.append(dict(channel=c, data_v="" if v is None else repr(float(v)), thumb=src, w=w, h=h,
                          what="feature visualization" if unit.images else "top dataset example",
                          label=f"{model.name} {layer.name}:{c}", value=None if v is None else f"{v:.3g}",
                          data_s="" if s is None else repr(s), data_n="" if n is None else repr(n),
                          score=None if s is None else f"{s:.2f}"))
    scored = any(u["data_s"] or u["data_n"] for u in units)
    return _page("layer.html", f"{model.name} {layer.name} · feature atlas", 2,
                 [("atlas", "../../index.html"), (model.name, "../index.html"), (layer.name, None)],
                 model=model.name, layer=layer.name, units=units, of=f" of {layer.channels}" if layer.channels else "",
                 atlas=layer.atlas is not None, scored=scored, level=SCORE_LEVEL)


def atlas_page(model: Model, layer: Layer, names: Dict[Tuple[int, int], str]) -> str:
    """The layer's activation atlas: its cells in a grid x grid table, each linking to the page of
    the nearest unit that has one (the largest entry of the cell's direction)."""
    at = layer.atlas
    grid = int(at["grid"])
    by_place = {(c["x"], c["y"]): c for c in at["cells"]}
    px = max(24, min(96, 960 // max(grid, 1)))
    rows = []
    for y in range(grid):
        row = []
        for x in range(grid):
            c = by_place.get((x, y))
            if c is None:
                row.append(None)
                continue
            page = next((u for u in c["units"] if u in layer.units), None)
            units = ", ".join(f"{layer.name}:{u}" for u in c["units"])
            row.append(dict(src=names[(x, y)], href=f"{page}.html" if page is not None else None,
                            alt=f"cell {y},{x}: {c['n']} points; nearest units {units}", px=px))
        rows.append(row)
    cls = at.get("class")
    what = f" for class {cls}" + (f" ({at['class_name']})" if at.get("class_name") else "") if cls is not None else ""
    facts = [("photos", _fmt(at.get("photos"))), ("positions", _fmt(at.get("points"))), ("grid", f"{grid} x {grid}"),
             ("cells drawn", str(len(at["cells"]))), ("layout", _fmt(at.get("method"))),
             ("render", f"{_fmt(at.get('size'))} px, {_fmt(at.get('steps'))} steps")]
    return _page("atlas.html", f"{model.name} {layer.name} atlas · feature atlas", 2,
                 [("atlas", "../../index.html"), (model.name, "../index.html"), (layer.name, "index.html"),
                  ("activation atlas", None)],
                 model=model.name, layer=layer.name, what=what, rows=rows, facts=facts, image="img/atlas/atlas.png")


def _score_rows(unit: Unit) -> List[dict]:
    """The unit's interpretability scores, one row per explanation kind and query level."""
    rows = []
    for kind in ("featvis", "natural"):
        for level, v in ((unit.score or {}).get(kind) or {}).items():
            rows.append(dict(kind=kind, level=level, mean=f"{float(v[0]):.3f}", ci=f"{float(v[1]):.2f}–{float(v[2]):.2f}",
                             n=str(v[3])))
    return rows


def unit_page(models: Dict[str, Model], model: Model, layer: Layer, unit: Unit, names: Dict[int, str],
              prev_c: Optional[int], next_c: Optional[int]) -> str:
    c = unit.channel
    label = f"{layer.name}:{c}"
    renders = []
    for rs in [r for r in layer.renders if any(p[0] is r for p in unit.images)]:
        ims = [im for r, im in unit.images if r is rs and not im.negative]
        negs = [im for r, im in unit.images if r is rs and im.negative]
        figures = [dict(src=names[id(im)], seed=_fmt(im.seed), value=_fmt(im.value),
                        what=f"{rs.kind} objective" + (f", diversity image {im.k + 1} of {len(ims)}" if len(ims) > 1 else ""))
                   for im in ims]
        negatives = [dict(src=names[id(im)], seed=_fmt(im.seed), value=_fmt(im.value),
                          what=f"minimizing the {rs.kind} objective" + (f", image {im.k + 1} of {len(negs)}" if len(negs) > 1 else ""))
                     for im in negs]
        s = rs.folder.settings
        renders.append(dict(heading=f"{rs.kind.capitalize()} visualization{'s' if len(ims) > 1 else ''}",
                            figures=figures, negatives=negatives, objective=rs.objective or "–", steps=_fmt(s.get("steps")),
                            settings=_settings_line(s), featvis=rs.folder.versions.get("featvis", "?"),
                            device=rs.folder.versions.get("device", "?"), command=reproduce_command(rs, layer.name, c) + (" --negative" if negs else "")))
    examples = [dict(src=names[id(ex)], rank=ex.rank + 1, value=f"{ex.value:.4g}", image=ex.image, short=_short(ex.image))
                for ex in unit.examples]
    return _page("unit.html", f"{model.name} {label} · feature atlas", 2,
                 [("atlas", "../../index.html"), (model.name, "../index.html"), (layer.name, "index.html"), (str(c), None)],
                 model=model.name, layer=layer.name, label=label, prev=prev_c, next=next_c, renders=renders,
                 examples=examples, scores=_score_rows(unit),
                 score_note=(f"observer {unit.score.get('observer')}, {unit.score.get('photos')} photos, "
                             f"k {unit.score.get('k')}") if unit.score else "", circuit=_circuit(model, unit, names) if unit.circuit else None)


def _circuit(model: Model, unit: Unit, names: Dict[int, str]) -> dict:
    circ = unit.circuit
    src = model.layers.get(circ.source)
    inputs: List[dict] = []
    for u in circ.inputs:
        target = src.units.get(u.channel) if src is not None else None
        has_vis = target is not None and target.primary is not None
        inputs.append(dict(name=f"{circ.source}:{u.channel}", norm=f"{u.norm:.3g}", sign=u.sign,
                           cls="inh" if u.sign.startswith("inh") else "exc", heat=names.get(id(u)),
                           vis=f"../{src.slug}/thumb/{u.channel}.jpg" if has_vis else None,
                           href=f"../{src.slug}/{u.channel}.html" if target is not None else None))
    return dict(source=circ.source, inputs=inputs)
